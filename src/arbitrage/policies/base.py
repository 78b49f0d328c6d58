"""The routing-policy role: accept the draft's step, or escalate it to the target.

A policy sees a :class:`StepView`: the question, the accepted steps so far (with who wrote each), the
draft's proposed step with its token logprobs, and *lazy* access to the target's step for the same
prefix. Policies that need a reward (RSD) hold their own step scorer; policies that compare both
candidates (the oracle) call ``view.target_step()``; learned routers use the draft step alone; the
``verify`` policy asks for the target's verification of the draft step (``view.verify_target()``). The
engine calls the target only when the policy asks for it or escalates, and reuses a step (or a
verification) the policy already requested instead of computing it twice.

A policy may also decide *early* (:class:`EarlyDecisions`): before the draft writes the step, from the
context alone (a :class:`ContextView`), and after the draft's first ``probe_tokens`` tokens (a
:class:`StepView` whose ``draft`` is that partial step, the *probe*). The engine asks at each point the
policy has, in order, and stops at the first that escalates; ``decide`` is still asked once the draft's
step is whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from arbitrage.backends.base import StepOutput, StepParams, Verification
from arbitrage.errors import ConfigError
from arbitrage.trace import Decision, StepRecord


@dataclass(frozen=True, slots=True)
class DraftConfidence:
    """The draft's own view of a step's tokens: how sure it was of each (STEER's signal, arXiv 2511.06190).

    Read by the policies that decide before the draft writes or from the draft's side of a probe.
    """

    logprobs: tuple[float, ...]  # [n] log π_draft of each token (nats)
    entropies: tuple[float, ...]  # [n] entropy (nats) of the draft's next-token distribution there
    source: str  # where it came from, e.g. "the draft's step 2" or "the draft's view of the target's step 2"

    @property
    def mean_nll(self) -> float:
        """−mean log π_draft per token (0.0 for no token)."""
        return -math.fsum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0

    @property
    def max_nll(self) -> float:
        """−min log π_draft over the tokens: the draft's least sure token (0.0 for no token)."""
        return -min(self.logprobs) if self.logprobs else 0.0

    @property
    def mean_entropy(self) -> float:
        """Mean entropy of the draft's next-token distributions (0.0 for no token)."""
        return math.fsum(self.entropies) / len(self.entropies) if self.entropies else 0.0

    @classmethod
    def of(cls, output: StepOutput, source: str) -> DraftConfidence:
        return cls(output.token_logprobs, output.token_entropies, source)


@dataclass(slots=True)
class ContextView:
    """What a policy may look at before the draft writes a step: the context alone."""

    question: str
    history: tuple[StepRecord, ...]  # accepted steps so far, oldest first
    params: StepParams = field(default_factory=StepParams)  # the engine's step parameters
    prefix: tuple[str, ...] = ()  # given steps the solve started from, oldest first
    # the engine's way to get the draft's view of the last step (None: this view has none)
    _make_last_confidence: Callable[[], DraftConfidence | None] | None = None
    _last_confidence: DraftConfidence | None = None
    _asked: bool = False

    @property
    def steps(self) -> tuple[str, ...]:
        """The solution's step texts so far: the given prefix, then the accepted steps."""
        return (*self.prefix, *(s.text for s in self.history))

    def last_step_confidence(self) -> DraftConfidence | None:
        """The draft's confidence at the solution's last step (computed once, on first request): the token
        logprobs of its own proposal for that step (its whole step or its probe, kept or not), else,
        when it proposed nothing there (the target wrote the step from the start), its teacher-forced view
        of the step (a draft verification, counted in the draft's usage). None at the first step, or
        when the draft cannot verify a step."""
        if not self._asked:
            self._asked = True
            if self._make_last_confidence is not None:
                self._last_confidence = self._make_last_confidence()
        return self._last_confidence


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
    partial: bool = False  # ``draft`` is a probe: the draft's first tokens of a step it has not finished
    earlier: tuple[Decision, ...] = ()  # decisions at earlier points of this step that let it go on

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


@runtime_checkable
class EarlyDecisions(Protocol):
    """The early decision points a routing policy may add to ``decide`` (the engine asks when present).

    1. ``before_draft``: before the draft writes, from the context alone. A decision that escalates has
       the target write the whole step; one that does not (or None) lets the draft write.
    2. ``after_probe`` (when ``probe_tokens`` > 0): after the draft's first ``probe_tokens`` tokens (or
       its whole step, if it ends sooner). The view's ``draft`` is that probe; ``view.verify_target()``
       has the target verify it in one batch. Escalating has the target continue from the probe's
       agreed prefix (prefix keeping); otherwise the draft finishes its step.
    3. ``decide`` (the :class:`RoutingPolicy` method) on the draft's whole step, as for any policy.
    """

    @property
    def probe_tokens(self) -> int:
        """m: draft tokens written before ``after_probe`` is asked (0: no probe)."""
        ...

    def before_draft(self, view: ContextView) -> Decision | None: ...

    def after_probe(self, view: StepView) -> Decision: ...
