"""Measure step scorers on a step-labelled set: can they tell right steps from wrong ones, and how fast?

Metrics per scorer (all over the rows scored):

- **AUROC** = P(reward of a random right step > reward of a random wrong step) + ½ P(equal): 0.5 is
  chance, 1.0 a perfect ranking. A 95% interval comes from 1,000 bootstrap resamples of the rows.
- **mean reward** of right steps and of wrong steps.
- **seconds per call**: mean wall time of one ``score(..., only_last=True)`` call, rows scored in file
  order (rows of one problem are adjacent, as consecutive decisions of a solve are, so a judge reuses
  its KV cache between them). **prefill tokens per call** where the scorer reports it.
- per kind: AUROC of gold steps against each corruption kind, and within the real draft steps.

:func:`evaluate_scorers` measures several scorers in turn (``arbitrage eval-prm``), taking the results of
an earlier run where it has them, and :func:`results_file` is what that command writes.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.prm.base import StepScorer
from arbitrage.prm.evalset import LabelledStep

logger = logging.getLogger(__name__)


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when a class is missing."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def bootstrap_auroc(
    scores: Sequence[float], labels: Sequence[int], resamples: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """2.5% and 97.5% percentiles of AUROC over bootstrap resamples of the rows."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    if len(set(y.tolist())) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(s), len(s))
        value = auroc(s[idx], y[idx])
        if value is not None:
            values.append(value)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


@dataclass(slots=True)
class ScorerReport:
    """How one scorer did on the set. Written to eval-prm's JSON and drawn as a table row."""

    spec: str  # the --prm spec it was built from
    name: str  # the scorer's own description
    rows: int  # rows scored
    auroc: float | None
    auroc_ci: tuple[float, float] | None  # 95% bootstrap interval
    mean_right: float | None  # mean reward of label-1 rows
    mean_wrong: float | None  # mean reward of label-0 rows
    seconds_per_call: float  # mean wall seconds of one score() call
    prefill_tokens_per_call: float | None  # mean tokens evaluated per call (local judges)
    load_seconds: float  # building the scorer (model load)
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> {n, mean, auroc}
    rewards: dict[str, float] = field(default_factory=dict)  # row id -> reward

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "name": self.name,
            "rows": self.rows,
            "auroc": self.auroc,
            "auroc_ci": list(self.auroc_ci) if self.auroc_ci else None,
            "mean_right": self.mean_right,
            "mean_wrong": self.mean_wrong,
            "seconds_per_call": self.seconds_per_call,
            "prefill_tokens_per_call": self.prefill_tokens_per_call,
            "load_seconds": self.load_seconds,
            "by_kind": self.by_kind,
            "rewards": self.rewards,
        }


def by_kind(rows: Sequence[LabelledStep], rewards: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Mean reward per kind; AUROC of gold vs each corruption kind, and within the draft rows."""
    out: dict[str, dict[str, Any]] = {}
    gold = [r for r, row in zip(rewards, rows, strict=True) if row.kind == "gold"]
    for kind in sorted({row.kind for row in rows}):
        mine = [(r, row.label) for r, row in zip(rewards, rows, strict=True) if row.kind == kind]
        entry: dict[str, Any] = {"n": len(mine), "mean": _mean([r for r, _ in mine])}
        if kind.startswith("corrupt"):
            entry["auroc_vs_gold"] = auroc(gold + [r for r, _ in mine], [1] * len(gold) + [0] * len(mine))
        elif kind == "draft":
            entry["positives"] = sum(label for _, label in mine)
            entry["auroc"] = auroc([r for r, _ in mine], [label for _, label in mine])
        out[kind] = entry
    return out


def component_spec(spec: str) -> str:
    """The spec of a composite scorer's base (``judge+arith:M`` → ``judge:M``)."""
    return "judge:" + spec.split(":", 1)[1] if spec.startswith("judge+arith:") else f"{spec} (base)"


def _report(
    spec: str,
    name: str,
    rows: Sequence[LabelledStep],
    rewards: Sequence[float],
    seconds: Sequence[float],
    prefill: Sequence[int],
    load_seconds: float,
) -> ScorerReport:
    labels = [row.label for row in rows]
    return ScorerReport(
        spec=spec,
        name=name,
        rows=len(rows),
        auroc=auroc(rewards, labels),
        auroc_ci=bootstrap_auroc(rewards, labels),
        mean_right=_mean([r for r, y in zip(rewards, labels, strict=True) if y == 1]),
        mean_wrong=_mean([r for r, y in zip(rewards, labels, strict=True) if y == 0]),
        seconds_per_call=float(np.mean(seconds)),
        prefill_tokens_per_call=float(np.mean(prefill)) if any(prefill) else None,
        load_seconds=load_seconds,
        by_kind=by_kind(rows, rewards),
        rewards={row.id: round(r, 6) for row, r in zip(rows, rewards, strict=True)},
    )


def evaluate_scorer(
    spec: str,
    build: Callable[[], StepScorer],
    rows: Sequence[LabelledStep],
    progress: Callable[[int, int], None] | None = None,
) -> list[ScorerReport]:
    """Score every row (only the last step, rows in order) and summarise.

    Returns the scorer's report and, for a composite scorer that reports its base scorer's own result
    (``judge+arith`` reports the judge's), the base's report from the same calls.
    """
    t0 = time.perf_counter()
    scorer = build()
    load_seconds = time.perf_counter() - t0
    rewards: list[float] = []
    seconds: list[float] = []
    prefill: list[int] = []
    base_rewards: list[float] = []
    base_seconds: list[float] = []
    base_name = ""
    try:
        for i, row in enumerate(rows):
            t = time.perf_counter()
            result = scorer.score(row.question, row.steps, only_last=True)
            seconds.append(time.perf_counter() - t)
            rewards.append(result.last)
            prefill.append(result.prefill_tokens)
            base = result.info.get("base")
            if isinstance(base, dict):
                base_rewards.append(float(base["rewards"][-1]))
                base_seconds.append(float(base["seconds"]))
                base_name = str(base["scorer"])
            if progress is not None:
                progress(i + 1, len(rows))
    finally:
        scorer.close()
    reports = [_report(spec, scorer.name, rows, rewards, seconds, prefill, load_seconds)]
    if len(base_rewards) == len(rows):
        reports.append(
            _report(component_spec(spec), base_name, rows, base_rewards, base_seconds, prefill, load_seconds)
        )
    return reports


Progress = Callable[[int, int], None]  # (rows scored, rows)


def evaluate_scorers(
    specs: Sequence[str],
    rows: Sequence[LabelledStep],
    build: Callable[[str], StepScorer],
    *,
    previous: Mapping[str, dict[str, Any]] | None = None,
    progress: Callable[[str], AbstractContextManager[Progress]] | None = None,
    measured: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every scorer's result (:meth:`ScorerReport.to_dict`), in ``specs`` order.

    A result in ``previous`` (an earlier run's, by spec) is taken as it is, and a composite scorer's base
    result stored there comes along after it; a composite measured now brings its base's result too.
    ``progress(spec)`` opens the progress callback of one scorer's rows; ``measured`` is called with the
    results so far after each scorer measured (to save them).
    """
    previous = previous or {}
    if previous:
        specs = [s for spec in specs for s in (spec, component_spec(spec)) if s in previous or s == spec]
    results: list[dict[str, Any]] = []

    def have(spec: str) -> bool:
        return any(r["spec"] == spec for r in results)

    for spec in specs:
        if have(spec):  # already measured as part of a composite scorer (judge+arith reports its judge)
            continue
        if spec in previous:
            results.append(previous[spec])
            continue
        with progress(spec) if progress is not None else nullcontext(None) as update:
            reports = evaluate_scorer(spec, functools.partial(build, spec), rows, progress=update)
        for report in reports:
            if not have(report.spec):
                results.append(report.to_dict())
        if measured is not None:
            measured(results)
    return results


def results_file(
    files: Sequence[Path], rows: Sequence[LabelledStep], scorers: list[dict[str, Any]]
) -> dict[str, Any]:
    """What ``eval-prm --out`` writes: the data files, their rows (right ones, per kind) and the results."""
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row.kind] = kinds.get(row.kind, 0) + 1
    return {
        "data": [str(p) for p in files],
        "rows": len(rows),
        "right": sum(row.label for row in rows),
        "kinds": kinds,
        "scorers": scorers,
    }
