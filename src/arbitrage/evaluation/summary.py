"""Summaries of evaluation records: accuracy with a confidence interval, acceptance, cost, latency.

Formulas (over the problems of a run). An *errored* problem (its solve raised; see
:mod:`arbitrage.evaluation.records`) is neither right nor wrong: it is counted in ``errors``, its id is
listed in ``errored_ids``, and every other figure is over the *completed* problems only.
- accuracy = correct / completed problems, with a 95% Wilson score interval; shown beside the number
  of errored problems, never folded into it.
- acceptance_rate = Σ draft-kept steps / Σ steps (pooled over all steps of all problems).
- token_acceptance_rate = Σ draft-kept tokens / Σ solution tokens (the official code's weighting).
- target_call_rate = Σ target step calls / Σ steps (above 1 where a call's step was dropped: a
  repeated step that ends the solution, or an empty final step; its seconds stay in the latency).
- latency = per-problem Σ measured call seconds (draft + target, the target's verifications included)
  + policy seconds: mean, median, p90 (nearest-rank). Equal to the wall time up to the engine's own
  overhead for live calls, and still defined when calls were replayed from a step or score cache (their
  stored costs are summed).
- wasted share = Σ wasted escalations / Σ escalations with both rewards known (RSD with --diagnose,
  the oracle); an escalation is wasted when its target step's reward did not beat the draft's.
- kept_tokens_mean = Σ target decode tokens saved by prefix keeping / completed problems;
  kept_token_share = Σ saved / Σ target generated tokens (the share of the target's step tokens it did
  not have to decode).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from arbitrage.evaluation.records import ProblemRecord, as_record


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class EvalSummary:
    """One evaluation run, summarised. Written to ``summary.json`` and read by sweeps and reports."""

    policy: str
    problems: int  # problems of the run, errored ones included
    errors: int  # errored problems: the solve raised (not counted in accuracy; ids in errored_ids)
    correct: int  # completed problems answered correctly
    accuracy: float  # correct / completed problems (completed = problems − errors)
    accuracy_ci: tuple[float, float]  # 95% Wilson interval of accuracy, over the completed problems
    acceptance_rate: float | None  # step-level, pooled
    token_acceptance_rate: float | None
    target_call_rate: float | None
    steps_mean: float
    draft_tokens_mean: float  # generated tokens per problem, kept or not
    target_tokens_mean: float
    latency_mean_s: float
    latency_median_s: float
    latency_p90_s: float
    policy_seconds_mean: float  # PRM / router time per problem (inside the latency)
    escalations: int
    wasted_escalations: int | None  # escalations whose Δ ≤ 0, when both rewards are known
    rewarded_escalations: int  # escalations with both rewards known (the denominator of the waste share)
    wall_mean_s: float = 0.0  # measured wall seconds per problem (meaningful for live calls only)
    replayed_calls: int = 0  # model calls replayed from a step cache (costs summed, not re-measured)
    live_calls: int = 0  # model calls measured in this run
    replayed_prm_calls: int = 0  # PRM calls replayed from a score cache (stored seconds summed)
    live_prm_calls: int = 0  # PRM calls measured in this run
    errored_ids: tuple[str, ...] = ()  # ids of the errored problems, in record order
    kept_tokens_mean: float = 0.0  # target decode tokens saved by prefix keeping, per problem
    kept_token_share: float | None = None  # saved / target generated tokens (None: the target wrote none)
    verify_calls_mean: float = 0.0  # target verifications per problem (their cost is in the latency)

    @property
    def completed(self) -> int:
        """Problems whose solve finished (the accuracy's denominator)."""
        return self.problems - self.errors

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(records: Sequence[ProblemRecord | Mapping[str, Any]], policy: str) -> EvalSummary:
    """Summarise per-problem records (or their JSON lines) as written by the evaluation runner."""
    everything = [as_record(r) for r in records]
    n = len(everything)
    ok = [r for r in everything if r.completed]
    correct = sum(1 for r in ok if r.correct)
    steps = sum(r.steps for r in ok)
    draft_steps = sum(r.draft_steps for r in ok)
    tokens = sum(r.solution_tokens for r in ok)
    draft_tokens = sum(r.draft_kept_tokens for r in ok)
    latencies = [r.latency_seconds for r in ok] or [0.0]
    diagnosed = [r.wasted_escalations for r in ok if r.wasted_escalations is not None]
    kept = sum(r.kept_tokens for r in ok)
    target_tokens = sum(r.target_generated_tokens for r in ok)
    return EvalSummary(
        policy=policy,
        problems=n,
        errors=n - len(ok),
        correct=correct,
        accuracy=correct / len(ok) if ok else 0.0,
        accuracy_ci=wilson_interval(correct, len(ok)),
        acceptance_rate=draft_steps / steps if steps else None,
        token_acceptance_rate=draft_tokens / tokens if tokens else None,
        target_call_rate=sum(r.target_calls for r in ok) / steps if steps else None,
        steps_mean=statistics.mean(r.steps for r in ok) if ok else 0.0,
        draft_tokens_mean=statistics.mean(r.draft_generated_tokens for r in ok) if ok else 0.0,
        target_tokens_mean=statistics.mean(r.target_generated_tokens for r in ok) if ok else 0.0,
        latency_mean_s=statistics.mean(latencies),
        latency_median_s=statistics.median(latencies),
        latency_p90_s=percentile(latencies, 90),
        policy_seconds_mean=statistics.mean(r.policy_seconds for r in ok) if ok else 0.0,
        escalations=sum(r.escalations for r in ok),
        wasted_escalations=sum(diagnosed) if diagnosed else None,
        rewarded_escalations=sum(r.rewarded_escalations for r in ok),
        wall_mean_s=statistics.mean(r.wall_seconds for r in ok) if ok else 0.0,
        replayed_calls=sum(r.replayed_calls for r in ok),
        live_calls=sum(r.live_calls for r in ok),
        replayed_prm_calls=sum(r.replayed_prm_calls for r in ok),
        live_prm_calls=sum(r.live_prm_calls for r in ok),
        errored_ids=tuple(r.id for r in everything if not r.completed),
        kept_tokens_mean=statistics.mean(r.kept_tokens for r in ok) if ok else 0.0,
        kept_token_share=kept / target_tokens if target_tokens else None,
        verify_calls_mean=statistics.mean(r.verify_calls for r in ok) if ok else 0.0,
    )
