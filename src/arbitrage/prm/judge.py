"""A judge PRM on a local model: ask whether the last step is correct, read P(Yes) from its logits.

reward = P(Yes) / (P(Yes) + P(No)), where P(Yes) sums the next-token probabilities of the answer's
spellings ("Yes", " Yes", "yes", ...) that are single tokens, and likewise for No. No sampling: the
logits after the prompt are read directly (``LlamaCppGenerator.next_token_logprobs``).

Prompt layout (the order matters for speed)::

    [system: judge instructions, optional worked examples]       ← same for every call: cached
    [user:  Problem: <question>  Solution so far:               ← same for every call of a question
            Step 1: ...  Step 2: ...  ...  Step k: ...          ← grows by one step per decision
            <question to the judge about step k>]                ← re-evaluated every call
    [assistant: optional answer prefix]

The judge model keeps one KV cache (its own ``LlamaCppGenerator``, never the target's, even when it is
the same file: another role's prompts would evict its prefix). Because the steps come before the
question put to the judge, scoring step k+1 right after step k reuses everything up to step k and
prefills only step k+1 and the closing question; the oracle's second candidate for the same prefix
likewise prefills only its own step. ``StepScores.prefill_tokens`` reports what was evaluated.

Each part of the prompt is tokenised on its own (head, each step, tail) so the token prefix of a
solution never changes when a step is appended.

A prompt with ``check_tokens > 0`` first lets the judge write its own check of the step (greedy, up to
that many tokens, in the assistant turn), then asks for the verdict: slower, sometimes better.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from arbitrage.errors import ConfigError, ScorerError
from arbitrage.prm.base import StepScores, check_request
from arbitrage.prompts import PromptStyle

logger = logging.getLogger(__name__)

_SENTINEL = "\u2063STEPS\u2063"  # stands for the steps while the chat template renders the prompt
YES_SPELLINGS = ("Yes", " Yes", "yes", " yes", "YES", " YES")
NO_SPELLINGS = ("No", " No", "no", " no", "NO", " NO")


class JudgeModel(Protocol):
    """What the judge needs from a local model (``LlamaCppGenerator`` provides it)."""

    name: str
    prompt_style: PromptStyle

    def render_prompt(self, question: str) -> str: ...
    def tokenize(self, text: str, special: bool = False) -> list[int]: ...
    def tokenize_prompt(self, prompt: str) -> list[int]: ...
    def next_token_logprobs_counted(self, tokens: list[int]) -> tuple[np.ndarray, int]: ...
    def detokenize(self, tokens: list[int]) -> str: ...
    def is_end_of_generation(self, token: int) -> bool: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class JudgePrompt:
    """A judge prompt. ``{question}``, ``{n}`` (1-based step number) and ``{text}`` are filled in."""

    name: str
    system: str | None  # system message (None: the chat template's default)
    head: str  # start of the user message, with {question}
    step: str  # one step, with {n} and {text}
    ask: str  # the question to the judge after the steps, with {n}
    answer_prefix: str = ""  # what the assistant turn starts with, before Yes/No (or the check)
    check_tokens: int = 0  # > 0: the judge first writes its own check of the step, up to this many tokens
    verdict: str = "\nSo, is Step {n} correct (Yes or No)?"  # asked after the check (check_tokens > 0)

    def __post_init__(self) -> None:
        if "{question}" not in self.head:
            raise ConfigError(f"Judge prompt {self.name!r}: head must contain {{question}}")
        if "{text}" not in self.step:
            raise ConfigError(f"Judge prompt {self.name!r}: step must contain {{text}}")
        if self.check_tokens < 0:
            raise ConfigError(f"Judge prompt {self.name!r}: check_tokens must be >= 0")

    @classmethod
    def from_file(cls, path: Path) -> JudgePrompt:
        """Load a prompt from a JSON file with the dataclass's fields (``name`` defaults to the stem)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Cannot read judge prompt file {path}: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"Judge prompt file {path}: unknown keys {sorted(unknown)} (known: {sorted(known)})"
            )
        data.setdefault("name", path.stem)
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"Judge prompt file {path}: {exc}") from exc


_HEAD = "Problem: {question}\n\nSolution so far:\n\n"
_STEP = "Step {n}: {text}\n\n"
_STRICT_SYSTEM = (
    "You are a meticulous math teacher checking a student's solution one step at a time. A step is "
    "correct only if every number it uses is taken correctly from the problem or from earlier steps, "
    "every calculation in it gives the right result, and its reasoning fits the problem. A step with any "
    "error, however small, is not correct."
)
_STRICT_ASK = (
    "Check Step {n} only. Recompute every calculation in it and compare each number it uses with the "
    "problem and the earlier steps. Is Step {n} correct? Answer with one word: Yes or No."
)
_EXAMPLES = """

Examples of checking one step:

Problem: A box holds 12 pencils. Ann buys 3 boxes and gives away 7 pencils. How many are left?
Step 1: Ann buys 3 * 12 = 36 pencils.
Is Step 1 correct? Yes

Problem: A box holds 12 pencils. Ann buys 3 boxes and gives away 7 pencils. How many are left?
Step 1: Ann buys 3 * 12 = 36 pencils.
Step 2: She has 36 - 7 = 28 pencils left.
Is Step 2 correct? No (36 - 7 is 29, not 28)

Problem: Tickets cost $8 for adults and $5 for children. How much do 2 adults and 3 children pay?
Step 1: The adults pay 2 * 5 = $10.
Is Step 1 correct? No (an adult ticket costs $8, not $5)

Problem: Tickets cost $8 for adults and $5 for children. How much do 2 adults and 3 children pay?
Step 1: The adults pay 2 * 8 = $16.
Step 2: The children pay 3 * 5 = $15.
Is Step 2 correct? Yes"""

JUDGE_PROMPTS: dict[str, JudgePrompt] = {
    p.name: p
    for p in (
        # the first probe's wording: short, no instructions
        JudgePrompt("basic", None, _HEAD, _STEP, "Is the last step correct? Answer Yes or No."),
        # a grader persona that asks to recompute and compare numbers
        JudgePrompt("strict", _STRICT_SYSTEM, _HEAD, _STEP, _STRICT_ASK),
        # strict plus worked examples of both error kinds (in the system message: cached once)
        JudgePrompt("fewshot", _STRICT_SYSTEM + _EXAMPLES, _HEAD, _STEP, _STRICT_ASK),
        # the judge writes its recomputation first, then answers
        JudgePrompt(
            "recompute",
            _STRICT_SYSTEM,
            _HEAD,
            _STEP,
            "Recompute the calculations of Step {n} and check the numbers it uses against the problem, "
            "briefly. Then say whether Step {n} is correct.",
            answer_prefix="Checking Step {n}:",
            check_tokens=64,
        ),
    )
}
DEFAULT_JUDGE_PROMPT = "basic"  # the best measured on data/prm_eval (see benchmarks/results/prm_eval)


def resolve_prompt(name_or_path: str | None) -> JudgePrompt:
    """A built-in prompt by name, or a JSON prompt file by path."""
    if not name_or_path:
        return JUDGE_PROMPTS[DEFAULT_JUDGE_PROMPT]
    if name_or_path in JUDGE_PROMPTS:
        return JUDGE_PROMPTS[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.suffix == ".json" or path.exists():
        return JudgePrompt.from_file(path)
    raise ConfigError(
        f"Unknown judge prompt {name_or_path!r} (built in: {', '.join(JUDGE_PROMPTS)}; or a .json file)"
    )


def _single_token_ids(model: JudgeModel, spellings: Sequence[str]) -> list[int]:
    ids: set[int] = set()
    for word in spellings:
        tokens = model.tokenize(word)
        if len(tokens) == 1:
            ids.add(tokens[0])
    return sorted(ids)


class JudgeScorer:
    """A local model as a PRM: reward = P(Yes)/(P(Yes)+P(No)) for "is the last step correct?"."""

    def __init__(self, model: JudgeModel, prompt: JudgePrompt | None = None) -> None:
        self.model = model
        self.prompt = prompt or JUDGE_PROMPTS[DEFAULT_JUDGE_PROMPT]
        self.name = f"judge({model.name}, {self.prompt.name})"
        # the judge owns its model: its chat turns are the judge's system message and one user message
        model.prompt_style = PromptStyle(system=self.prompt.system, user_template="{question}")
        self._yes = _single_token_ids(model, YES_SPELLINGS)
        self._no = _single_token_ids(model, NO_SPELLINGS)
        if not self._yes or not self._no:
            raise ScorerError(f"{model.name}: 'Yes'/'No' are not single tokens; it cannot serve as a judge")
        self._head_cache: tuple[str, list[int], str] | None = None
        self._closed = False

    # -- prompt ----------------------------------------------------------------------------------------

    def _frame(self, question: str) -> tuple[list[int], str]:
        """Tokens before the first step, and the chat text that closes the user turn (per question)."""
        if self._head_cache is None or self._head_cache[0] != question:
            rendered = self.model.render_prompt(self.prompt.head.replace("{question}", question) + _SENTINEL)
            if rendered.count(_SENTINEL) != 1:
                raise ScorerError(f"{self.model.name}: the chat template altered the judge prompt's layout")
            head, tail = rendered.split(_SENTINEL)
            self._head_cache = (question, self.model.tokenize_prompt(head), tail)
        return list(self._head_cache[1]), self._head_cache[2]

    def head_tokens(self, question: str) -> list[int]:
        """The judge's prompt tokens before the first step (system message, problem)."""
        return self._frame(question)[0]

    def prompt_tokens(self, question: str, steps: Sequence[str]) -> list[int]:
        """The judge's full prompt for the last of ``steps``, ending where its answer begins."""
        tokens, tail = self._frame(question)
        for i, text in enumerate(steps, start=1):
            tokens += self.model.tokenize(
                self.prompt.step.replace("{n}", str(i)).replace("{text}", text.strip())
            )
        n = str(len(steps))
        closing = self.prompt.ask.replace("{n}", n) + tail + self.prompt.answer_prefix.replace("{n}", n)
        return tokens + self.model.tokenize(closing, special=True)

    # -- scoring -----------------------------------------------------------------------------------------

    def _verdict(self, logprobs: np.ndarray) -> tuple[float, float]:
        """(reward, probability mass on Yes+No) from next-token log-probabilities."""
        p_yes = float(np.exp(logprobs[self._yes]).sum())
        p_no = float(np.exp(logprobs[self._no]).sum())
        mass = p_yes + p_no
        if mass < 1e-9 or not math.isfinite(mass):
            return 0.5, mass
        return p_yes / mass, mass

    def _score_one(self, question: str, steps: Sequence[str]) -> tuple[float, int, int, dict[str, Any]]:
        tokens = self.prompt_tokens(question, steps)
        logprobs, prefill = self.model.next_token_logprobs_counted(tokens)
        info: dict[str, Any] = {}
        if self.prompt.check_tokens > 0:
            # 1. the judge writes its own check, greedily, token by token (each call evaluates one token)
            written: list[int] = []
            for _ in range(self.prompt.check_tokens):
                token = int(np.argmax(logprobs))
                if self.model.is_end_of_generation(token):
                    break
                written.append(token)
                if "\n\n" in self.model.detokenize(written[-3:]):
                    break
                logprobs, evaluated = self.model.next_token_logprobs_counted(tokens + written)
                prefill += evaluated
            # 2. then answers the verdict question
            verdict = self.model.tokenize(self.prompt.verdict.replace("{n}", str(len(steps))))
            tokens = tokens + written + verdict
            logprobs, evaluated = self.model.next_token_logprobs_counted(tokens)
            prefill += evaluated
            info["check"] = self.model.detokenize(written)
        reward, mass = self._verdict(logprobs)
        info["yes_no_mass"] = round(mass, 6)
        return reward, len(tokens), prefill, info

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        if self._closed:
            raise ScorerError(f"{self.name} is closed")
        check_request(question, steps)
        t0 = time.perf_counter()
        first = len(steps) - 1 if only_last else 0
        rewards: list[float] = []
        prompt_total = prefill_total = 0
        infos: list[dict[str, Any]] = []
        for k in range(first, len(steps)):
            reward, prompt_tokens, prefill, info = self._score_one(question, steps[: k + 1])
            rewards.append(reward)
            prompt_total += prompt_tokens
            prefill_total += prefill
            infos.append(info)
        return StepScores(
            rewards=tuple(rewards),
            first=first,
            seconds=time.perf_counter() - t0,
            scorer=self.name,
            prompt_tokens=prompt_total,
            prefill_tokens=prefill_total,
            info=infos[-1] if only_last else {"steps": infos},
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.model.close()
