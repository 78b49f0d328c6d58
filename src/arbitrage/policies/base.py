"""The routing-policy role: accept the draft's step, or escalate it to the target.

A policy sees a :class:`StepView`: the question, the accepted steps so far (with who wrote each), the
draft's proposed step with its token logprobs, and *lazy* access to the target's step for the same
prefix. Policies that need a reward (RSD) hold their own step scorer; policies that compare both
candidates (the oracle) call ``view.target_step()``; learned routers use the draft step alone; the
``verify`` policy asks for the target's verification of the draft step (``view.verify_target()``). The
engine calls the target only when the policy asks for it or escalates, and reuses a step (or a
verification) the policy already requested instead of computing it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from arbitrage.backends.base import StepOutput, StepParams, Verification
from arbitrage.errors import ConfigError
from arbitrage.trace import Decision, StepRecord


@dataclass(slots=True)
class StepView:
    """What a policy may look at for one decision."""

    question: str
    history: tuple[StepRecord, ...]  # accepted steps so far, oldest first
    draft: StepOutput  # the draft's proposal for the next step
    _make_target: Callable[[StepParams | None], StepOutput]
    _target: StepOutput | None = None
    extra_samples: list[StepOutput] = field(default_factory=list)
    params: StepParams = field(default_factory=StepParams)  # the engine's step parameters (separator, cap)
    prefix: tuple[
        str, ...
    ] = ()  # given steps the solve started from (Engine.solve(prefix=...)), oldest first
    # the engine's way to have the target verify the draft step (None: this view cannot verify)
    _make_verification: Callable[[], Verification] | None = None
    _verification: Verification | None = None

    @property
    def steps(self) -> tuple[str, ...]:
        """The solution's step texts so far: the given prefix, then the accepted steps."""
        return (*self.prefix, *(s.text for s in self.history))

    @property
    def generated_target(self) -> StepOutput | None:
        """The target's step if it has been requested already, else None (nothing is generated)."""
        return self._target

    def target_step(self) -> StepOutput:
        """The target's step from the same prefix (generated once, on first request)."""
        if self._target is None:
            self._target = self._make_target(None)
        return self._target

    @property
    def verification(self) -> Verification | None:
        """The target's verification of the draft step if it has been requested already, else None."""
        return self._verification

    def verify_target(self) -> Verification:
        """The target's verification of the draft step (computed once, on first request; its cost is
        counted in the target's usage). ConfigError when the target cannot verify steps."""
        if self._verification is None:
            if self._make_verification is None:
                raise ConfigError("This step view has no target that can verify steps")
            self._verification = self._make_verification()
        return self._verification

    def sample_target(self, params: StepParams) -> StepOutput:
        """An additional target sample with other parameters (counted as a target call)."""
        sample = self._make_target(params)
        self.extra_samples.append(sample)
        return sample


@runtime_checkable
class RoutingPolicy(Protocol):
    """Decides, step by step, whether the target should (re)write the draft's step.

    ``skip_draft`` is False for every policy but target-only decoding: when True the engine never
    calls the draft and does not consult ``decide`` (a class attribute ``skip_draft = False`` suffices).
    """

    @property
    def skip_draft(self) -> bool:
        """True: the target writes every step and the draft is never called (``decide`` is not asked)."""
        ...

    @property
    def name(self) -> str:
        """Short description with parameters, e.g. ``random(p=0.5)``."""
        ...

    def decide(self, view: StepView) -> Decision: ...
