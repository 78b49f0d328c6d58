"""Policies that need no reward model: draft only, target only, and random escalation."""

from __future__ import annotations

import random

from arbitrage.policies.base import StepView
from arbitrage.policies.options import RandomOptions
from arbitrage.trace import Decision


class DraftOnlyPolicy:
    """Always accept the draft step (draft-only decoding)."""

    name = "draft"
    skip_draft = False

    def decide(self, view: StepView) -> Decision:
        return Decision(escalate=False, reason="draft only")


class TargetOnlyPolicy:
    """Always escalate (target-only decoding; the draft's proposals are still paid for).

    With ``skip_draft`` the engine does not call the draft at all, which is plain target decoding.
    """

    name = "target"
    skip_draft = True

    def decide(self, view: StepView) -> Decision:
        return Decision(escalate=True, reason="target only")


class RandomPolicy:
    """Escalate each step with probability ``p``, independent of its content (a cost-matched baseline).

    The draw for a step is a deterministic function of (seed, question, step index), so runs are
    reproducible in any order and under any concurrency.
    """

    skip_draft = False

    def __init__(self, p: float, seed: int = 0) -> None:
        RandomOptions(p=p, seed=seed)  # validates
        self.p = p
        self.seed = seed

    @property
    def name(self) -> str:
        return f"random(p={self.p:g})"

    def decide(self, view: StepView) -> Decision:
        draw = step_draw(self.seed, view.question, len(view.history))
        return Decision(
            escalate=draw < self.p,
            score=draw,
            threshold=self.p,
            reason=f"draw {draw:.3f} {'<' if draw < self.p else '>='} p",
        )


def step_draw(seed: int, question: str, index: int) -> float:
    """The random policy's uniform draw for step ``index`` of ``question``: a function of the three alone."""
    return random.Random(f"{seed}|{question}|{index}").random()
