"""A deterministic scripted generator: steps come from a script, not a model.

Used by the engine, policy and pipeline tests, and usable by anyone wiring arbitrage into their own
code without loading a model. Costs are simulated per token, so traces and summaries have realistic
shapes and tests can check the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams
from arbitrage.errors import BackendError

# A script maps a context to the next step (text, finish reason), or is a fixed list consumed by
# step index: the i-th call for a solution with i accepted steps returns script[i].
ScriptFn = Callable[[StepContext], tuple[str, FinishReason]]


class ScriptedGenerator:
    """Returns scripted steps; records every call in ``calls`` for tests to inspect."""

    def __init__(
        self,
        name: str,
        script: Sequence[str | tuple[str, FinishReason]] | ScriptFn,
        *,
        seconds_per_token: float = 0.01,
        logprob: float = -0.5,
    ) -> None:
        self.name = name
        self._script = script
        self.seconds_per_token = seconds_per_token
        self.logprob = logprob
        self.calls: list[StepContext] = []
        self.closed = False

    def _next(self, context: StepContext) -> tuple[str, FinishReason]:
        if callable(self._script):
            return self._script(context)
        index = len(context.steps)
        if index >= len(self._script):
            return "", FinishReason.EOS
        item = self._script[index]
        if isinstance(item, tuple):
            return item
        return item, (FinishReason.EOS if index == len(self._script) - 1 else FinishReason.STEP)

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        if self.closed:
            raise BackendError(f"{self.name} is closed")
        self.calls.append(context)
        text, finish = self._next(context)
        words = text.split()
        tokens = max(1, len(words))
        if tokens > params.max_step_tokens:
            text = " ".join(words[: params.max_step_tokens])
            tokens = params.max_step_tokens
            finish = FinishReason.LENGTH
        prompt_tokens = len(context.question.split()) + sum(len(s.split()) for s in context.steps)
        return StepOutput(
            text=text,
            finish_reason=finish,
            model=self.name,
            tokens=tokens,
            token_logprobs=(self.logprob,) * tokens,
            token_entropies=(0.0,) * tokens,
            prompt_tokens=prompt_tokens,
            prefill_tokens=prompt_tokens,
            prefill_seconds=0.0,
            decode_seconds=tokens * self.seconds_per_token,
        )

    def close(self) -> None:
        self.closed = True
