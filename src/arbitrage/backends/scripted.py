"""A deterministic scripted generator: steps come from a script, not a model.

Used by the engine, policy and pipeline tests, and usable by anyone wiring arbitrage into their own
code without loading a model. Costs are simulated per token, so traces and summaries have realistic
shapes and tests can check the arithmetic.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verification
from arbitrage.errors import BackendError

_SEP, _EOS = -1, -2  # token ids of the separator and the end of the answer in scripted verification


def _word_id(word: str) -> int:
    return zlib.crc32(word.encode("utf-8"))


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
        disagree_logprob: float = -4.0,
    ) -> None:
        self.name = name
        self._script = script
        self.seconds_per_token = seconds_per_token
        self.logprob = logprob
        self.disagree_logprob = disagree_logprob  # verification: logprob of a word this model would not write
        self.calls: list[StepContext] = []
        self.verifications: list[tuple[StepContext, str]] = []  # (context, verified text) per verify call
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

    # -- verification (the Verifier role): a word is a token, the script's step is the greedy step ----

    def _own_sequence(self, context: StepContext, params: StepParams) -> tuple[list[int], FinishReason, str]:
        text, finish = self._next(context)
        words = text.split()[: params.max_step_tokens]
        ids = [_word_id(w) for w in words]
        if finish == FinishReason.STEP:
            ids.append(_SEP)
        elif finish == FinishReason.EOS:
            ids.append(_EOS)
        return ids, finish, text

    def verify_step(self, context: StepContext, step: StepOutput, params: StepParams) -> Verification:
        """Compare ``step`` word by word with this model's scripted step for the same context."""
        if self.closed:
            raise BackendError(f"{self.name} is closed")
        self.verifications.append((context, step.text))
        own, _, _ = self._own_sequence(context, params)
        given = [_word_id(w) for w in step.text.split()]
        if step.finish_reason == FinishReason.STEP:
            given.append(_SEP)
        greedy = [own[i] if i < len(own) else _EOS for i in range(len(given) + 1)]
        logprobs = tuple(
            self.logprob if g == t else self.disagree_logprob for t, g in zip(given, greedy, strict=False)
        )
        prompt_tokens = len(context.question.split()) + sum(len(s.split()) for s in context.steps)
        return Verification(
            model=self.name,
            text=step.text,
            finish_reason=step.finish_reason,
            tokens=tuple(given),
            token_logprobs=logprobs,
            greedy_tokens=tuple(greedy),
            greedy_logprobs=(self.logprob,) * len(greedy),
            entropies=(0.0,) * len(greedy),
            end_is_eos=greedy[-1] == _EOS,
            prompt_tokens=prompt_tokens,
            prefill_tokens=len(given),
            seconds=len(given) * self.seconds_per_token / 10,  # a batched pass: a tenth of decoding
        )

    def continue_step(
        self, context: StepContext, params: StepParams, verification: Verification
    ) -> StepOutput:
        """The scripted step, charged only for the words after the first divergence."""
        divergence = verification.first_divergence
        full = self.generate_step(context, params)
        kept = verification.n if divergence is None else divergence
        kept = min(kept, full.tokens)
        decode_seconds = max(0, full.tokens - kept) * self.seconds_per_token
        return StepOutput(
            text=full.text,
            finish_reason=full.finish_reason,
            model=self.name,
            tokens=full.tokens,
            token_logprobs=full.token_logprobs,
            token_entropies=full.token_entropies,
            prompt_tokens=full.prompt_tokens,
            prefill_tokens=0,
            prefill_seconds=0.0,
            decode_seconds=decode_seconds,
            extra={"kept_tokens": kept},
        )

    def close(self) -> None:
        self.closed = True
