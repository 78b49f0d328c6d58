"""The generator backend role: write the next reasoning step of a solution.

A backend formats the question with its own chat template, appends the shared solution text (accepted
steps joined by the separator) and generates until the separator, end of sequence, or the per-step
token cap. Everything the engine and the policies need to know about that call comes back in a
:class:`StepOutput`.
"""

from __future__ import annotations

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
