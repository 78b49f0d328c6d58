"""How a question becomes a prompt, and how steps join into a solution.

Every model formats the *question* with its own chat template and then continues the same shared
*solution text*: the accepted steps joined by the step separator. Draft and target therefore never
need to share a tokenizer; each re-tokenises the shared text itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from arbitrage.errors import ConfigError

DEFAULT_SEPARATOR = "\n\n"

DEFAULT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_USER_TEMPLATE = (
    "{question}\n\n"
    "Solve this step by step. Write each step as one short paragraph, separate steps with a blank line, "
    "and give the final answer as \\boxed{ANSWER}."
)

# Turn formats for models whose GGUF carries no usable chat template (name -> (prefix, suffix)).
# The prompt is prefix + user message + suffix; the solution text follows it directly.
FALLBACK_FORMATS: dict[str, tuple[str, str]] = {
    # Gemma: no system role; the instruction goes into the user turn.
    "gemma": ("<start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n"),
    "chatml": ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
    # Plain text for base models and unknown templates.
    "plain": ("Question: ", "\nAnswer:\n"),
}


@dataclass(frozen=True, slots=True)
class PromptStyle:
    """The instruction wrapped around a question (shared by all models of a solve)."""

    system: str | None = DEFAULT_SYSTEM  # system message; None to leave it out
    user_template: str = DEFAULT_USER_TEMPLATE  # "{question}" is replaced; other braces stay as written

    def __post_init__(self) -> None:
        if "{question}" not in self.user_template:
            raise ConfigError("The prompt's user template must contain {question}")

    def user(self, question: str) -> str:
        """The user message for ``question``."""
        return self.user_template.replace("{question}", question)

    def messages(self, question: str) -> list[dict[str, str]]:
        """Chat messages for templates that support a system role."""
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.user(question)})
        return messages

    def single_turn(self, question: str) -> str:
        """The user turn with the system text folded in, for formats without a system role."""
        user = self.user(question)
        return f"{self.system}\n\n{user}" if self.system else user


def solution_text(steps: tuple[str, ...] | list[str], separator: str = DEFAULT_SEPARATOR) -> str:
    """The shared solution text a model continues: each accepted step followed by the separator."""
    return "".join(step + separator for step in steps)
