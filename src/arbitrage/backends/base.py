"""The generator backend role: write the next reasoning step of a solution.

A backend formats the question with its own chat template, appends the shared solution text (accepted
steps joined by the separator) and generates until the separator, end of sequence, or the per-step
token cap. Everything the engine and the policies need to know about that call comes back in a
:class:`StepOutput`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from arbitrage.errors import ConfigError
from arbitrage.prompts import DEFAULT_SEPARATOR


class FinishReason(StrEnum):
    """Why a step ended."""

    STEP = "step"  # the separator was generated (it is not part of the step text)
    EOS = "eos"  # the model ended its answer (end-of-generation token)
    LENGTH = "length"  # the per-step token cap was reached


@dataclass(frozen=True, slots=True)
class StepParams:
    """Sampling and stopping parameters of one step call."""

    separator: str = DEFAULT_SEPARATOR  # text that ends a step ("\n\n" default, "\n" also common)
    max_step_tokens: int = 256  # cap on generated tokens per step
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass when temperature > 0
    seed: int | None = None  # sampling seed (temperature > 0); None = backend default

    def __post_init__(self) -> None:
        if not self.separator:
            raise ConfigError("The step separator must not be empty")
        if self.max_step_tokens <= 0:
            raise ConfigError(f"max_step_tokens must be positive, got {self.max_step_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a model continues: a question and the solution's accepted steps so far."""

    question: str
    steps: tuple[str, ...] = ()  # accepted step texts, separators excluded


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One generated step and what it cost. Read by the engine, the policies and the trace."""

    text: str  # the step, separator excluded, other whitespace kept
    finish_reason: FinishReason
    model: str  # name of the model that wrote it
    tokens: int  # generated tokens, including one that straddles the separator
    token_logprobs: tuple[float, ...] = ()  # [tokens] natural-log probability of each chosen token
    token_entropies: tuple[float, ...] = ()  # [tokens] entropy (nats) of each next-token distribution
    prompt_tokens: int = 0  # tokens in the full context (question prompt + solution so far)
    prefill_tokens: int = 0  # context tokens actually evaluated; the rest came from the KV cache
    prefill_seconds: float = 0.0  # time to evaluate the prefill tokens
    decode_seconds: float = 0.0  # time to generate the step's tokens
    extra: dict[str, object] = field(default_factory=dict)  # backend-specific diagnostics

    @property
    def seconds(self) -> float:
        """Total wall seconds of the call."""
        return self.prefill_seconds + self.decode_seconds


@runtime_checkable
class Generator(Protocol):
    """A model that can write the next step of a solution."""

    name: str

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        """Write the next step after ``context``; stop at the separator, EOS, or the token cap."""
        ...

    def close(self) -> None:
        """Release the model's resources (idempotent)."""
        ...


@dataclass(frozen=True, slots=True)
class Verification:
    """A model's view of a given step as the continuation of a context (teacher forcing, no sampling).

    The step's text is tokenised by the verifying model (in context, followed by the separator when
    the step ended with one) and evaluated in one pass; for every position the model's log-probability
    of the given token and its own greedy choice are read. Read by the ``verify`` policy, the routers'
    target-side features, collection, and the engine's prefix keeping (an escalated step keeps the
    given tokens up to :attr:`first_divergence`).
    """

    model: str  # name of the verifying model
    text: str  # the verified step text (separator excluded)
    finish_reason: FinishReason  # how the verified step ended (its separator or end token is verified too)
    tokens: tuple[int, ...]  # [n] the verified tokens in this model's vocabulary (step, then separator)
    token_logprobs: tuple[float, ...]  # [n] log π(tokens[i] | context, tokens[:i]) in nats
    greedy_tokens: tuple[int, ...]  # [n + 1] the model's argmax at each position, and after the last
    greedy_logprobs: tuple[float, ...]  # [n + 1] log-probability of that argmax
    entropies: tuple[float, ...]  # [n + 1] entropy (nats) of the model's next-token distribution there
    end_is_eos: bool = False  # greedy_tokens[n] is an end-of-generation token of this model
    prompt_tokens: int = 0  # tokens of the context (prompt and solution so far)
    prefill_tokens: int = 0  # tokens evaluated, context and step (the rest came from the KV cache)
    seconds: float = 0.0  # wall seconds of the call
    extra: dict[str, object] = field(default_factory=dict)  # backend-specific diagnostics

    @property
    def n(self) -> int:
        """Number of verified tokens."""
        return len(self.tokens)

    @property
    def first_divergence(self) -> int | None:
        """Index of the first verified token that is not the model's greedy choice; ``n`` when every
        token agrees but the model would not end the step there; None when the model's own greedy step
        would be exactly this one (every token agrees, and so does the end)."""
        for i, (token, greedy) in enumerate(zip(self.tokens, self.greedy_tokens, strict=False)):
            if token != greedy:
                return i
        if self.finish_reason == FinishReason.EOS and not self.end_is_eos:
            return self.n
        if self.finish_reason == FinishReason.LENGTH:
            return self.n  # a capped step: the model would go on writing
        return None

    @property
    def agreement(self) -> float:
        """Share of the verified tokens that are the model's greedy choice (1.0 for an empty step)."""
        if not self.tokens:
            return 1.0
        return sum(t == g for t, g in zip(self.tokens, self.greedy_tokens, strict=False)) / self.n

    @property
    def mean_logprob(self) -> float:
        """Mean log-probability per verified token (0.0 for an empty step)."""
        return math.fsum(self.token_logprobs) / self.n if self.tokens else 0.0

    @property
    def min_logprob(self) -> float:
        """Lowest log-probability of a verified token (0.0 for an empty step)."""
        return min(self.token_logprobs) if self.tokens else 0.0


@runtime_checkable
class Verifier(Protocol):
    """A generator that can also verify a given step and keep the part of it that it agrees with."""

    name: str

    def verify_step(self, context: StepContext, step: StepOutput, params: StepParams) -> Verification:
        """Evaluate ``step`` (another model's, usually) after ``context``; leave it in the KV cache."""
        ...

    def continue_step(
        self, context: StepContext, params: StepParams, verification: Verification
    ) -> StepOutput:
        """This model's own greedy step after ``context``, reusing the verified tokens it agrees with.

        The step keeps ``verification.tokens[:first_divergence]`` (already evaluated) and decodes only
        from there; for greedy decoding the text equals :meth:`Generator.generate_step`'s. The output's
        ``extra["kept_tokens"]`` counts the tokens kept (decode tokens saved).
        """
        ...


@runtime_checkable
class Replayer(Protocol):
    """A generator that can put itself where a live call would have left it, for a replayed step.

    A step cache (:mod:`arbitrage.backends.cache`) replays a stored step instead of decoding it again.
    A live call would have prefilled the context from the model's *current* KV cache and left the
    step's tokens in it; a replay that skips both charges the wrong prefill (the one of the step's first
    run) and leaves the next live call to prefill what should have been cached.
    """

    name: str

    def replay_step(self, context: StepContext, params: StepParams, output: StepOutput) -> tuple[int, float]:
        """Prefill ``context`` for real, then evaluate ``output``'s tokens as decoding would have.

        Returns ``(prefill tokens, prefill seconds)`` of the real prefill: what the live call would
        have measured. The step's decode is charged its stored seconds by the caller.
        """
        ...
