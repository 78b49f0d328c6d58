"""The step-scorer role (process reward model, PRM): how good is each step of a partial solution?

A scorer reads a question and the steps of a solution so far (oldest first, separators excluded) and
returns a reward in [0, 1] per step: the probability, as the scorer sees it, that the step is correct
and useful in its context. Policies call it once per decision on the *newest* step only (RSD scores the
draft's step; the oracle scores the draft's and the target's step for the same prefix), so
``only_last=True`` must be cheap: local judges keep a KV cache whose prefix is the question and the
accepted steps, and prefill only the new step and the question put to the judge.

Scorers (see :mod:`arbitrage.prm.registry` for the spec strings that build them):

- ``judge``: a local model asked whether the last step is correct, reward P(Yes)/(P(Yes)+P(No)).
- ``arith``: exact check, with sympy, of the equations a step states.
- ``judge+arith``: the judge, vetoed by the arithmetic check.
- ``hf``: trained PRMs through transformers (Skywork value head, Qwen2.5-Math-PRM, Math-Shepherd).
- ``http``: a reward model served by vLLM (its ``/pooling`` endpoint).
- ``mc``: Monte-Carlo rollout values (needs gold answers: for data collection only;
  :mod:`arbitrage.labelling.rollout`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from arbitrage.errors import ScorerError

# the system message Qwen2.5-Math-PRM was trained with (its input format; also used over HTTP)
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True, slots=True)
class StepScores:
    """Rewards for the steps of one partial solution, as one scorer call returned them.

    Read by the policies (``last``), ``arbitrage eval-prm`` (``last``, ``seconds``) and the trace
    (``Decision.info``).
    """

    rewards: tuple[float, ...]  # [scored steps] reward in [0, 1] of steps[first:], oldest first
    first: int  # index in the scored solution of rewards[0] (len(steps) - 1 with only_last=True)
    seconds: float  # wall seconds of the call: model time, network, parsing
    scorer: str = ""  # name of the scorer that produced them
    prompt_tokens: int = 0  # Σ tokens of the scorer's inputs, where it tokenises (0: not known)
    prefill_tokens: int = 0  # Σ of those actually evaluated; the rest came from a KV cache (0: n/a)
    info: dict[str, Any] = field(default_factory=dict)  # scorer-specific details (JSON-serialisable)

    @property
    def last(self) -> float:
        """Reward of the newest step."""
        if not self.rewards:
            raise ScorerError(f"{self.scorer or 'the scorer'} returned no reward")
        return self.rewards[-1]

    def reward(self, index: int) -> float:
        """Reward of step ``index`` of the scored solution (it must be among the scored steps)."""
        position = index - self.first
        if not 0 <= position < len(self.rewards):
            raise IndexError(
                f"step {index} was not scored (scored: {self.first}..{self.first + len(self.rewards) - 1})"
            )
        return self.rewards[position]


@runtime_checkable
class StepScorer(Protocol):
    """Scores the steps of a partial solution; each reward is in [0, 1]."""

    name: str  # short description with parameters, e.g. "judge(qwen2.5-coder-1.5b, strict)"

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        """Reward ``steps`` (all of them, or only the last one when ``only_last``) for ``question``.

        ``steps`` are the solution's steps so far, oldest first, separators excluded; it must not be
        empty. Scorers that get every step's reward from one pass (HF PRMs, remote) may return all of
        them even when ``only_last`` is set; ``StepScores.first`` says which were scored.
        """
        ...

    def close(self) -> None:
        """Release models, sessions and connections (idempotent)."""
        ...


def check_request(question: str, steps: Sequence[str]) -> None:
    """Raise a user-readable error for a request no scorer can answer."""
    if not question or not question.strip():
        raise ScorerError("Cannot score steps: the question is empty")
    if isinstance(steps, str):
        raise ScorerError("Cannot score steps: pass a sequence of step texts, not one string")
    if not steps:
        raise ScorerError("Cannot score steps: the solution has no steps yet")


def clamp_reward(value: float, scorer: str) -> float:
    """A reward checked to be a finite number, clipped into [0, 1] against rounding noise."""
    if not math.isfinite(value):
        raise ScorerError(f"{scorer} returned a non-finite reward ({value})")
    return min(1.0, max(0.0, float(value)))


def sigmoid(x: float) -> float:
    """Logistic function, stable for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
