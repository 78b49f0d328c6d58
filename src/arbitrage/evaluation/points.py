"""A sweep point as the report reads it (:mod:`arbitrage.evaluation.report` computes with points,
:mod:`arbitrage.evaluation.report_markdown` writes them; both import them from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Point:
    """One sweep point as the report sees it."""

    family: str  # policy family: draft, target, random, rsd, oracle, router, verify, or policy@variant
    label: str
    accuracy: float  # correct / completed problems (errored ones left out)
    acceptance: float  # step-level acceptance rate
    latency: float  # mean per-problem latency, seconds
    latency_median: float
    target_call_rate: float
    escalations: int
    wasted: int | None
    rewarded: int = 0  # escalations with both rewards known
    accuracy_ci: tuple[float, float] = (float("nan"), float("nan"))
    problems: int = 0
    replayed_calls: int = 0  # model calls replayed from the step cache
    live_calls: int = 0
    replayed_prm_calls: int = 0  # PRM calls replayed from the score cache
    live_prm_calls: int = 0
    errors: int = 0  # errored problems (not in accuracy or latency)
    errored_ids: tuple[str, ...] = ()  # their ids
    key: str = ""  # the point's folder under the sweep (its records), e.g. "rsd_threshold=0.9"
    kept_tokens_mean: float = 0.0  # target decode tokens saved by prefix keeping, per problem

    @property
    def completed(self) -> int:
        return self.problems - self.errors


def point_label(row: dict[str, Any]) -> str:
    """A point's name in the report: its policy's description, with the variant's family in place of the
    policy's name (``router@both(features,...)``), so two routers' points are told apart."""
    policy, name = str(row["policy"]), str(row["policy_name"])
    family = str(row.get("family") or name)
    return family + policy[len(name) :] if family != name and policy.startswith(name) else policy


def point_from_row(row: dict[str, Any]) -> Point:
    """A row of ``sweep.json`` (a point's summary) as the report reads it."""
    return Point(
        family=str(row.get("family") or row["policy_name"]),
        label=point_label(row),
        accuracy=row["accuracy"],
        acceptance=row["acceptance_rate"] if row["acceptance_rate"] is not None else float("nan"),
        latency=row["latency_mean_s"],
        latency_median=row["latency_median_s"],
        target_call_rate=row["target_call_rate"] or 0.0,
        escalations=row["escalations"],
        wasted=row.get("wasted_escalations"),
        rewarded=row.get("rewarded_escalations", row["escalations"]),
        accuracy_ci=tuple(row.get("accuracy_ci", (float("nan"), float("nan")))),
        problems=row.get("problems", 0),
        replayed_calls=row.get("replayed_calls", 0),
        live_calls=row.get("live_calls", 0),
        replayed_prm_calls=row.get("replayed_prm_calls", 0),
        live_prm_calls=row.get("live_prm_calls", 0),
        errors=row.get("errors", 0),
        errored_ids=tuple(str(i) for i in row.get("errored_ids", ())),
        key=str(row.get("point", "")),
        kept_tokens_mean=float(row.get("kept_tokens_mean") or 0.0),
    )
