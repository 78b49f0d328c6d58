"""``auto``: the cost-aware default. It picks, once per run, the fastest measured way to the quality asked.

At ``quality = 1`` (the default) only the target's own text will do: the target writes every step, and
token-level speculation (:mod:`arbitrage.backends.speculation`) runs inside it where the run can attach
one; its controller measures the costs as it goes and decodes plainly where speculation cannot pay. So
the default is the target's answer, as fast as this machine allows.

At ``quality < 1`` the answer may differ from the target's. ``auto`` reads a table of measured points
(``arbitrage/data/auto_points.json``, built by ``benchmarks/auto_table.py`` from a committed sweep): each
point's accuracy relative to target-only on the same problems, and its work per problem (tokens decoded
and evaluated, calls, per model). It projects each point's latency under a cost model (:class:`CostModel`:
measured on this machine by ``arbitrage bench-costs``, or the one fitted from the sweep's records) and
picks the fastest point whose relative accuracy is at least ``quality``, if it is projected at least
``MIN_SPEEDUP`` (1.05, the projection's error bound) times faster than target-only; otherwise the
target writes. So ``auto`` never picks a point projected slower than target-only, nor one within the
projection's error of it. The choice and its reason are the policy's
:attr:`AutoPolicy.plan`; the trace names them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.policies.base import ContextView, EarlyDecisions, RoutingPolicy, StepView
from arbitrage.policies.options import AutoOptions
from arbitrage.trace import Decision

TABLE = "auto_points.json"
# a point must be projected this much faster than target-only to be picked over it: the cost model's
# error bound (its goal: every point's mean latency within 5%). A point projected at 1.004x (verify at
# target rate 0.2 under this machine's bench-costs) ran at 0.75x target-only live on the v3 GSM8K sweep.
MIN_SPEEDUP = 1.05


@dataclass(frozen=True, slots=True)
class Candidate:
    """A measured point ``auto`` can pick (one row of the table)."""

    point: str  # the sweep point, e.g. "verify_target_rate=0.6"
    policy: str  # policy name
    options: dict[str, Any]  # its options
    relative_accuracy: float  # accuracy / target-only accuracy, same problems
    relative_accuracy_ci: tuple[float, float]  # paired bootstrap 95% interval
    work: dict[
        str, tuple[float, ...]
    ]  # role -> (decoded, evaluated, calls[, verified, verifications]) per problem
    policy_seconds: float  # PRM / router seconds per problem, as measured


@dataclass(frozen=True, slots=True)
class AutoPlan:
    """What ``auto`` chose and why (shown in traces, records and the server's responses)."""

    quality: float  # the quality budget asked for
    point: str  # the chosen point
    policy: str  # its policy name
    options: dict[str, Any]  # its options
    relative_accuracy: float
    projected_speedup: float  # target-only projected latency / the chosen point's (1.0 for target)
    costs: str  # where the costs came from
    reason: str  # one line: why this point
    costs_file: str | None = None  # the measured cost file used, if any (speculation reads it too)


def _load_table(path: Path | None = None) -> dict[str, Any]:
    try:
        text = path.read_text() if path else resources.files("arbitrage.data").joinpath(TABLE).read_text()
        return dict(json.loads(text))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the auto policy's table: {exc}") from None


def candidates(table: dict[str, Any]) -> list[Candidate]:
    return [
        Candidate(
            point=row["point"],
            policy=row["policy"],
            options=dict(row["options"]),
            relative_accuracy=float(row["relative_accuracy"]),
            relative_accuracy_ci=(
                float(row["relative_accuracy_ci"][0]),
                float(row["relative_accuracy_ci"][1]),
            ),
            work={role: tuple(float(x) for x in w) for role, w in row["work"].items()},
            policy_seconds=float(row.get("policy_seconds", 0.0)),
        )
        for row in table["points"]
    ]


def plan_auto(options: AutoOptions, table_path: Path | None = None) -> AutoPlan:
    """Choose the point for ``options`` (see the module docstring)."""
    from arbitrage.costs import CostModel, read_costs

    table = _load_table(table_path)
    if options.costs:
        costs = read_costs(Path(options.costs))
        source = f"measured costs ({options.costs})"
    else:
        costs = CostModel.from_dict(table["costs"])
        source = f"costs fitted from {table.get('source', 'the sweep')} (2-core CPU)"
    points = candidates(table)

    def latency(c: Candidate) -> float:
        return c.policy_seconds + costs.seconds(c.work)

    target = next((c for c in points if c.policy == "target"), None)
    if target is None:
        raise ConfigError("the auto policy's table has no target-only point")
    eligible = [c for c in points if c.relative_accuracy >= options.quality - 1e-9] or [target]
    best = min(eligible, key=lambda c: (latency(c), -c.relative_accuracy))
    if latency(target) < MIN_SPEEDUP * latency(best):  # within the projection's error: not worth it
        best = target
    speedup = latency(target) / latency(best)
    if best is target:
        reason = (
            "the target writes every step (lossless; token-level speculation where it pays)"
            if options.quality >= 1
            else f"no measured point at relative accuracy >= {options.quality:g} is projected at least "
            f"{MIN_SPEEDUP:g}x faster than target-only"
        )
    else:
        lo, hi = best.relative_accuracy_ci
        reason = (
            f"fastest point at relative accuracy >= {options.quality:g}: {best.point} (relative accuracy "
            f"{best.relative_accuracy:.2f} [{lo:.2f}, {hi:.2f}] on {table.get('dataset', 'the sweep')}, "
            f"projected {speedup:.2f}x target-only)"
        )
    return AutoPlan(
        quality=options.quality,
        point=best.point,
        policy=best.policy,
        options=best.options,
        relative_accuracy=best.relative_accuracy,
        projected_speedup=speedup,
        costs=source,
        reason=reason,
        costs_file=options.costs,
    )


class AutoPolicy:
    """The policy ``auto`` chose, under its own name (see the module docstring)."""

    wants_speculation = True  # the run attaches token-level speculation to the target where it can

    def __init__(self, plan: AutoPlan, inner: RoutingPolicy) -> None:
        self.plan = plan
        self.inner = inner
        self.speculation_note = "not attached"  # set by the run: what became of token-level speculation

    @property
    def name(self) -> str:
        return f"auto(quality={self.plan.quality:g} -> {self.inner.name})"

    @property
    def skip_draft(self) -> bool:
        return self.inner.skip_draft

    @property
    def skip_reason(self) -> str:
        """The decision reason of a step the target writes without a draft step."""
        return f"auto: {self.plan.reason}; speculation {self.speculation_note}"

    def decide(self, view: StepView) -> Decision:
        decision = self.inner.decide(view)
        return dataclasses.replace(decision, reason=f"auto -> {decision.reason}")


class AutoEarlyPolicy(AutoPolicy):
    """``auto``'s choice when it decides early (the ``early`` policy): the engine asks its decision points
    (:class:`~arbitrage.policies.base.EarlyDecisions`) through ``auto``, each reason prefixed ``auto ->``."""

    def __init__(self, plan: AutoPlan, inner: RoutingPolicy) -> None:
        if not isinstance(inner, EarlyDecisions):
            raise TypeError(f"{inner.name} takes no early decisions")
        super().__init__(plan, inner)
        self._early = inner

    @property
    def probe_tokens(self) -> int:
        return self._early.probe_tokens

    def before_draft(self, view: ContextView) -> Decision | None:
        decision = self._early.before_draft(view)
        if decision is None:
            return None
        return dataclasses.replace(decision, reason=f"auto -> {decision.reason}")

    def after_probe(self, view: StepView) -> Decision:
        decision = self._early.after_probe(view)
        return dataclasses.replace(decision, reason=f"auto -> {decision.reason}")


def build_auto_policy(
    options: AutoOptions, build: Callable[[str, dict[str, Any]], RoutingPolicy]
) -> AutoPolicy:
    """Plan, then build the chosen policy with ``build(name, loose options)`` (the registry's)."""
    plan = plan_auto(options)
    inner = build(plan.policy, plan.options)
    return (AutoEarlyPolicy if isinstance(inner, EarlyDecisions) else AutoPolicy)(plan, inner)
