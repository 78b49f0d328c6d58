"""Each routing policy's own options: a small frozen dataclass, validated once, when it is made.

An options object that exists is valid: its ``__post_init__`` checks every field and raises
:class:`~arbitrage.errors.PolicyOptionError`, whose message names the options at fault so that the
CLI can spell them as flags (``--tau``) and the server as fields (``policy_options.tau``). Nothing
here stands in for "not given": a router given neither ``tau`` nor ``target_rate`` is an error, never
``tau = 0``. Live dependencies (the step scorer) are not options: they go to
:func:`arbitrage.policies.build_policy` as arguments.

:func:`make_options` builds an options object from loose values (a config file's strings, a sweep
point's floats), coercing each to its field's type and rejecting names the policy does not have.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from arbitrage.errors import PolicyOptionError


def check_unit(name: str, value: float, why: str = "") -> None:
    """``value`` must lie in [0, 1] (a probability, a reward, ŷ)."""
    if not 0.0 <= value <= 1.0:
        raise PolicyOptionError(f"{{{name}}} must be within [0, 1]{why}, got {value:g}", name)


@dataclass(frozen=True, slots=True)
class NoOptions:
    """Options of a policy that takes none (draft, target)."""


@dataclass(frozen=True, slots=True)
class AutoOptions:
    """``auto``: the fastest measured way to at least ``quality`` of target-only accuracy."""

    quality: float = 1.0  # share of target-only accuracy to keep, in (0, 1]; 1: the target's own text
    costs: str | None = None  # cost file (arbitrage bench-costs); None: the run's cached one, else fitted

    def __post_init__(self) -> None:
        if not 0.0 < self.quality <= 1.0:
            raise PolicyOptionError(f"{{quality}} must be within (0, 1], got {self.quality:g}", "quality")


@dataclass(frozen=True, slots=True)
class RandomOptions:
    """``random``: escalate each step with probability ``p``."""

    p: float = 0.5  # probability of escalating a step, in [0, 1]
    seed: int = 0  # seed of the per-step draws (with the question and step index)

    def __post_init__(self) -> None:
        check_unit("p", self.p)


@dataclass(frozen=True, slots=True)
class RSDOptions:
    """``rsd``: accept the draft's step iff its PRM reward is at least ``threshold``."""

    threshold: float = 0.7  # reward threshold, in [0, 1]
    diagnose: bool = False  # also score escalated target steps (wasted-escalation count; cost kept apart)

    def __post_init__(self) -> None:
        check_unit("threshold", self.threshold)


@dataclass(frozen=True, slots=True)
class OracleOptions:
    """``oracle``: keep the target's step iff its (mean) reward beats the draft's by more than ``tau``."""

    tau: float = 0.0  # advantage threshold τ on Δ = s_target − s_draft, in [-1, 1]
    target_samples: int = 1  # k target samples averaged for s_target (k − 1 extra, sampled)
    temperature: float = 0.7  # sampling temperature of the extra target samples (> 0 when k > 1)
    seed: int = 0  # seed of the extra target samples (with the question, step and sample index)

    def __post_init__(self) -> None:
        if not -1.0 <= self.tau <= 1.0:
            raise PolicyOptionError(f"{{tau}} must be within [-1, 1], got {self.tau:g}", "tau")
        if self.target_samples < 1:
            raise PolicyOptionError(
                f"{{target_samples}} must be at least 1, got {self.target_samples}", "target_samples"
            )
        if self.target_samples > 1 and self.temperature <= 0:
            raise PolicyOptionError(
                "Extra target samples ({target_samples} > 1) need a sampling {temperature} > 0",
                "target_samples",
                "temperature",
            )


@dataclass(frozen=True, slots=True)
class RouterOptions:
    """``router``: escalate when a trained router's score ŷ exceeds τ; τ given, or read from the router's
    τ table for a target escalation rate. Exactly one of ``tau`` and ``target_rate``. Without ``path``,
    the router installed with the package (``arbitrage/data/router``)."""

    # setting one of two alternatives on top of existing options clears the other (see override())
    ALTERNATIVES: ClassVar[dict[str, str]] = {"tau": "target_rate", "target_rate": "tau"}

    path: str | None = None  # router folder from `arbitrage train-router`; None: the packaged router
    tau: float | None = None  # escalate iff ŷ > tau, in [0, 1]
    target_rate: float | None = None  # or: the share of steps to escalate, in [0, 1]

    def __post_init__(self) -> None:
        if self.path is not None and not self.path:
            raise PolicyOptionError(
                "The router policy needs {path} PATH (a folder from `arbitrage train-router`)", "path"
            )
        if self.tau is not None and self.target_rate is not None:
            raise PolicyOptionError(
                "Give the router policy either {tau} or {target_rate}, not both", "tau", "target_rate"
            )
        if self.tau is None and self.target_rate is None:
            raise PolicyOptionError(
                "The router policy needs {tau} τ (escalate when ŷ > τ) or {target_rate} r",
                "tau",
                "target_rate",
            )
        if self.tau is not None:
            check_unit("tau", self.tau, " for the router policy (ŷ is in [0, 1])")
        if self.target_rate is not None:
            check_unit("target_rate", self.target_rate)


VERIFY_SCORES = ("gsi", "target_nll", "target_min_nll", "disagree", "divergence")  # see policies/verify.py
# the verify policy's target rate when neither it nor a threshold is given: the measured best point of
# the standard sweep (README, "Measured: the standard sweep, re-measured")
DEFAULT_VERIFY_RATE = 0.6


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """``verify``: the target verifies each draft step; escalate iff the chosen verification ``score``
    exceeds τ. τ is ``threshold``, or read from a calibration table for ``target_rate`` (not both;
    neither: ``target_rate`` = ``DEFAULT_VERIFY_RATE``)."""

    # setting one of two alternatives on top of existing options clears the other (see override())
    ALTERNATIVES: ClassVar[dict[str, str]] = {"threshold": "target_rate", "target_rate": "threshold"}

    # verification score: target_nll (the best target-side score on collected real steps, see
    # benchmarks/results/real_steps), gsi, target_min_nll, disagree, divergence
    score: str = "target_nll"
    threshold: float | None = None  # τ: escalate iff score > τ (the score's own units)
    target_rate: float | None = None  # or: the share of steps to escalate, in [0, 1] (τ from calibration)
    calibration: str | None = None  # calibration table (JSON) for target_rate; default: the packaged one

    def __post_init__(self) -> None:
        if self.score not in VERIFY_SCORES:
            raise PolicyOptionError(
                f"Unknown verification {{score}} {self.score!r} (known: {', '.join(VERIFY_SCORES)})", "score"
            )
        if self.threshold is not None and self.target_rate is not None:
            raise PolicyOptionError(
                "Give the verify policy either {threshold} or {target_rate}, not both",
                "threshold",
                "target_rate",
            )
        if self.threshold is None and self.target_rate is None:
            object.__setattr__(self, "target_rate", DEFAULT_VERIFY_RATE)
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise PolicyOptionError(f"{{threshold}} must be finite, got {self.threshold}", "threshold")
        if self.target_rate is not None:
            check_unit("target_rate", self.target_rate)
        if self.calibration is not None and self.target_rate is None:
            raise PolicyOptionError(
                "{calibration} applies with {target_rate} only (τ is given)", "calibration", "target_rate"
            )


# the early policy's scores read from the draft's side alone (no target call): its confidence on the
# probe's tokens, or, before the draft writes, on its proposal for the last step (see policies/early.py)
DRAFT_SCORES = ("draft_nll", "draft_max_nll", "draft_entropy")
# the cost-matched control: a draw per step, the same one the random policy makes (seed 0), so
# early@...score=random at rate r escalates the steps random:p=r does, at the early point's cost
RANDOM_SCORE = "random"
EARLY_SCORES = (*VERIFY_SCORES, *DRAFT_SCORES, RANDOM_SCORE)
# the early policy's defaults when neither a threshold nor a rate is given, and its probe: the measured
# trade-off of benchmarks/early_escalation.py (docs/performance.md, "Early escalation")
DEFAULT_EARLY_RATE = 0.2
DEFAULT_PROBE_TOKENS = 1
DEFAULT_EARLY_SCORE = "draft_entropy"


@dataclass(frozen=True, slots=True)
class EarlyOptions:
    """``early``: decide before the draft writes a step (``probe_tokens`` 0, from its confidence on the
    last step) or after its first ``probe_tokens`` tokens (the probe); escalate iff ``score`` > τ. τ is
    ``threshold``, or read from a calibration table for ``target_rate`` (not both; neither:
    ``target_rate`` = ``DEFAULT_EARLY_RATE``)."""

    ALTERNATIVES: ClassVar[dict[str, str]] = {"threshold": "target_rate", "target_rate": "threshold"}

    probe_tokens: int = DEFAULT_PROBE_TOKENS  # m: draft tokens written before deciding; 0: before the draft
    # the probe's score: the draft's own confidence on its tokens (draft_entropy, draft_nll,
    # draft_max_nll; no target call) or a verification score of them (the target verifies them:
    # target_min_nll, the first strong disagreement, and the others of the verify policy); probe_tokens 0:
    # a draft score (of its proposal for the last step); random: a draw per step, the cost-matched
    # control (τ = 1 − target_rate, no calibration table)
    score: str = DEFAULT_EARLY_SCORE
    threshold: float | None = None  # τ: escalate iff score > τ (the score's own units)
    target_rate: float | None = None  # or: the share of steps to escalate, in [0, 1] (τ from calibration)
    calibration: str | None = None  # calibration table (JSON) for target_rate; default: the packaged one
    # the target writes the first target_steps steps of every answer, before any other rule (the first
    # step has no evidence for a before-draft score, and the opening step is where the target's lead
    # is largest); τ and target_rate apply to the steps after them
    target_steps: int = 0

    def __post_init__(self) -> None:
        if self.target_steps < 0:
            raise PolicyOptionError(
                f"{{target_steps}} must be 0 or more, got {self.target_steps}", "target_steps"
            )
        if self.probe_tokens < 0:
            raise PolicyOptionError(
                f"{{probe_tokens}} must be 0 (before the draft writes) or more, got {self.probe_tokens}",
                "probe_tokens",
            )
        if self.score not in EARLY_SCORES:
            raise PolicyOptionError(
                f"Unknown early {{score}} {self.score!r} (known: {', '.join(EARLY_SCORES)})", "score"
            )
        if self.probe_tokens == 0 and self.score not in (*DRAFT_SCORES, RANDOM_SCORE):
            raise PolicyOptionError(
                f"Before the draft writes ({{probe_tokens}} 0) the target has nothing to verify: {{score}} "
                f"must be one of {', '.join((*DRAFT_SCORES, RANDOM_SCORE))}, got {self.score!r}",
                "probe_tokens",
                "score",
            )
        if self.threshold is not None and self.target_rate is not None:
            raise PolicyOptionError(
                "Give the early policy either {threshold} or {target_rate}, not both",
                "threshold",
                "target_rate",
            )
        if self.threshold is None and self.target_rate is None:
            object.__setattr__(self, "target_rate", DEFAULT_EARLY_RATE)
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise PolicyOptionError(f"{{threshold}} must be finite, got {self.threshold}", "threshold")
        if self.target_rate is not None:
            check_unit("target_rate", self.target_rate)
        if self.calibration is not None and self.target_rate is None:
            raise PolicyOptionError(
                "{calibration} applies with {target_rate} only (τ is given)", "calibration", "target_rate"
            )


def option_types(cls: type[Any]) -> dict[str, Any]:
    """Field name → resolved type of an options dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def make_options(policy: str, cls: type[Any], values: Mapping[str, Any]) -> Any:
    """An options object of class ``cls`` from ``values``, each coerced to its field's type.

    Raises :class:`PolicyOptionError` for a name ``cls`` lacks, a value of the wrong type, a missing
    required option, or a value out of range.
    """
    types = option_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        known = ", ".join(types) or "none"
        raise PolicyOptionError(
            f"Unknown policy option {unknown[0]!r} for the {policy} policy (its options: {known})"
        )
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, os.PathLike):  # a router folder given as a Path
            value = os.fspath(value)
        try:
            coerced[name] = TypeAdapter(types[name]).validate_python(value)
        except ValidationError as exc:
            detail = exc.errors()[0]["msg"]
            raise PolicyOptionError(f"Invalid policy option {name}={value!r}: {detail}") from None
    missing = [f for f in dataclasses.fields(cls) if f.name not in coerced and _required(f)]
    if missing:
        raise PolicyOptionError(f"The {policy} policy needs {{{missing[0].name}}}", missing[0].name)
    return cls(**coerced)


def override(policy: str, options: Any, values: Mapping[str, Any]) -> Any:
    """``options`` with ``values`` set (coerced and validated like :func:`make_options`). Setting one of
    a class's ``ALTERNATIVES`` (the router's ``tau`` / ``target_rate``) clears the other."""
    current = dataclasses.asdict(options)
    for name in values:
        other = getattr(type(options), "ALTERNATIVES", {}).get(name)
        if other is not None and other not in values:
            current[other] = None
    return make_options(policy, type(options), {**current, **values})


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


__all__ = [
    "DEFAULT_EARLY_RATE",
    "DEFAULT_EARLY_SCORE",
    "DEFAULT_PROBE_TOKENS",
    "DEFAULT_VERIFY_RATE",
    "DRAFT_SCORES",
    "EARLY_SCORES",
    "VERIFY_SCORES",
    "EarlyOptions",
    "NoOptions",
    "OracleOptions",
    "RSDOptions",
    "RandomOptions",
    "RouterOptions",
    "VerifyOptions",
    "check_unit",
    "make_options",
    "option_types",
    "override",
]
