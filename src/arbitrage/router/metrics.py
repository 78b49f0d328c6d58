"""How well a router's scores ŷ match the oracle: the paper's router metrics, and τ ↔ escalation rate.

On held-out rows with advantage Δ and oracle label y = 1[Δ > 0]:

- **Spearman ρ** between ŷ and Δ: does the router rank steps by how much the target gains?
- Predictions at a threshold (default ``ŷ > 0.5``, the classifier's decision):
  **accuracy on label 0** = share of y = 0 rows predicted 0 (true-negative rate),
  **accuracy on label 1** = share of y = 1 rows predicted 1 (true-positive rate),
  **balanced accuracy** = their mean (0.5 for any constant guess), plain accuracy, escalation rate.
- **ROC-AUC** of ŷ against y: the chance a random y = 1 row scores above a random y = 0 row.

With question ids, ρ and balanced accuracy get 95% intervals from a bootstrap over *questions* (rows of
one question are resampled together, since steps of one solution are not independent): held-out sets
here are tens of questions, and a point estimate alone would overstate what they show.

Over k question-grouped folds (:class:`FoldMetrics`; ``arbitrage eval-router``), each metric is
reported as its mean over the folds with a 95% interval mean ± t(0.975, k−1) · sd / √k, where sd is the
standard deviation of the k per-fold values. Folds share training rows, so the interval is approximate
(it tends to be narrow, Bengio & Grandvalet 2004), but it shows what one split hides: on the collected
GSM8K pairs a single 80/20 split's ρ moves between 0.07 and 0.30 with the split seed alone.

Metrics that a sample cannot define (ROC-AUC or an accuracy with only one label present, ρ of a
constant) are ``None``, never a misleading number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from arbitrage.errors import RouterError

DEFAULT_METRIC_TAU = 0.5


@dataclass(frozen=True, slots=True)
class RouterMetrics:
    """A router's scores against the oracle on one set of rows. Read by the CLI tables and JSON."""

    rows: int  # rows scored
    questions: int  # distinct questions among them
    positive_rate: float  # share of rows with y = 1 (Δ > 0)
    spearman: float | None  # Spearman ρ between ŷ and Δ
    spearman_p: float | None  # its two-sided p-value
    roc_auc: float | None  # ROC-AUC of ŷ against y (None when only one label is present)
    balanced_accuracy: float | None  # mean of the two per-label accuracies (None when a label is absent)
    accuracy_label0: float | None  # share of y = 0 rows with ŷ ≤ τ
    accuracy_label1: float | None  # share of y = 1 rows with ŷ > τ
    accuracy: float  # share of rows where 1[ŷ > τ] == y
    escalation_rate: float  # share of rows with ŷ > τ
    tau: float  # the threshold the accuracies use
    mean_score: float  # mean ŷ
    spearman_ci: tuple[float, float] | None = None  # 95% question-bootstrap interval of ρ
    balanced_accuracy_ci: tuple[float, float] | None = None  # same for balanced accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _spearman(s: np.ndarray, d: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if np.ptp(s) == 0 or np.ptp(d) == 0:
        return None
    return _finite(float(spearmanr(s, d).statistic))


def _balanced(s: np.ndarray, d: np.ndarray, tau: float) -> float | None:
    y, pred = d > 0, s > tau
    if y.all() or not y.any():
        return None
    return float(((pred[y]).mean() + (~pred[~y]).mean()) / 2)


def bootstrap_intervals(
    scores: np.ndarray,
    deltas: np.ndarray,
    question_ids: list[str],
    tau: float = DEFAULT_METRIC_TAU,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """95% percentile intervals of (ρ, balanced accuracy), resampling questions with replacement."""
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(question_ids):
        groups.setdefault(q, []).append(i)
    if len(groups) < 5:
        return None, None
    members = [np.asarray(v) for v in groups.values()]
    rng = np.random.default_rng(seed)
    rhos, balanced = [], []
    for _ in range(resamples):
        idx = np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))])
        s, d = scores[idx], deltas[idx]
        if (r := _spearman(s, d)) is not None:
            rhos.append(r)
        if (b := _balanced(s, d, tau)) is not None:
            balanced.append(b)

    def interval(values: list[float]) -> tuple[float, float] | None:
        if len(values) < resamples // 2:
            return None
        lo, hi = np.percentile(values, [2.5, 97.5])
        return (float(lo), float(hi))

    return interval(rhos), interval(balanced)


def router_metrics(
    scores: np.ndarray,
    deltas: np.ndarray,
    question_ids: list[str] | None = None,
    tau: float = DEFAULT_METRIC_TAU,
) -> RouterMetrics:
    """Score ``[n]`` ŷ against ``[n]`` Δ (y = 1[Δ > 0])."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=float)
    d = np.asarray(deltas, dtype=float)
    if s.shape != d.shape or s.ndim != 1:
        raise RouterError(f"Scores {s.shape} and advantages {d.shape} must be two equal-length vectors")
    if s.size == 0:
        raise RouterError("No rows to evaluate the router on")
    y = (d > 0).astype(int)
    pred = (s > tau).astype(int)
    rho: float | None = None
    p_value: float | None = None
    if np.ptp(s) > 0 and np.ptp(d) > 0:
        result = spearmanr(s, d)
        rho, p_value = _finite(float(result.statistic)), _finite(float(result.pvalue))
    both = 0 < y.sum() < y.size
    acc0 = float((pred[y == 0] == 0).mean()) if (y == 0).any() else None
    acc1 = float((pred[y == 1] == 1).mean()) if (y == 1).any() else None
    rho_ci, balanced_ci = None, None
    if question_ids is not None:
        if len(question_ids) != s.size:
            raise RouterError(f"{len(question_ids)} question ids for {s.size} scores")
        rho_ci, balanced_ci = bootstrap_intervals(s, d, list(question_ids), tau)
    return RouterMetrics(
        rows=int(s.size),
        questions=len(set(question_ids)) if question_ids is not None else 0,
        positive_rate=float(y.mean()),
        spearman=rho,
        spearman_p=p_value,
        roc_auc=float(roc_auc_score(y, s)) if both else None,
        balanced_accuracy=(acc0 + acc1) / 2 if acc0 is not None and acc1 is not None else None,
        accuracy_label0=acc0,
        accuracy_label1=acc1,
        accuracy=float((pred == y).mean()),
        escalation_rate=float(pred.mean()),
        tau=tau,
        mean_score=float(s.mean()),
        spearman_ci=rho_ci,
        balanced_accuracy_ci=balanced_ci,
    )


FOLD_METRICS = ("spearman", "balanced_accuracy", "roc_auc", "accuracy_label0", "accuracy_label1",
                "accuracy", "escalation_rate")  # fmt: skip


@dataclass(frozen=True, slots=True)
class FoldStat:
    """One metric over k folds. Read by the eval-router tables and JSON."""

    mean: float | None  # mean of the defined per-fold values (None: no fold defines it)
    ci: tuple[float, float] | None  # 95% t interval of that mean (None with fewer than 2 defined folds)
    values: tuple[float | None, ...]  # [folds] the per-fold values

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci": self.ci, "values": list(self.values)}


def fold_stat(values: Sequence[float | None]) -> FoldStat:
    """Mean and 95% t interval (mean ± t(0.975, n−1)·sd/√n) of the defined values."""
    from scipy.stats import t

    defined = np.asarray([v for v in values if v is not None], dtype=float)
    if defined.size == 0:
        return FoldStat(None, None, tuple(values))
    mean = float(defined.mean())
    if defined.size < 2:
        return FoldStat(mean, None, tuple(values))
    half = float(t.ppf(0.975, defined.size - 1) * defined.std(ddof=1) / math.sqrt(defined.size))
    return FoldStat(mean, (mean - half, mean + half), tuple(values))


@dataclass(frozen=True, slots=True)
class FoldMetrics:
    """A router configuration cross-validated over k question-grouped folds: each fold's held-out
    metrics, and the out-of-fold scores of all folds pooled. Read by the eval-router tables and JSON."""

    folds: int  # k
    seed: int  # fold assignment (and training) seed
    per_fold: tuple[RouterMetrics, ...]  # [k] metrics on each held-out fold, by the router trained without it
    pooled: RouterMetrics  # every row scored once, by the router that did not see its question

    def stat(self, name: str) -> FoldStat:
        """Mean and interval over the folds of one :class:`RouterMetrics` field."""
        return fold_stat([getattr(m, name) for m in self.per_fold])

    def to_dict(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "seed": self.seed,
            "summary": {name: self.stat(name).to_dict() for name in FOLD_METRICS},
            "per_fold": [m.to_dict() for m in self.per_fold],
            "pooled": self.pooled.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class TauRow:
    """One entry of a router's τ table: escalating when ŷ > tau sends ``rate`` of the rows to the target."""

    tau: float
    rate: float


def tau_table(scores: np.ndarray, points: int = 101) -> list[TauRow]:
    """τ → escalation rate on (validation) scores, for τ at ``points`` quantiles of ŷ plus 0 and 1.

    The rates are measured (share of the given scores above τ), so ties show as steps in the table.
    """
    s = np.sort(np.asarray(scores, dtype=float))
    if s.size == 0:
        raise RouterError("No scores to build a τ table from")
    taus = {0.0, 1.0, *(float(t) for t in np.quantile(s, np.linspace(0.0, 1.0, points)))}
    rows = []
    for tau in sorted(taus):
        rate = float(s.size - np.searchsorted(s, tau, side="right")) / s.size
        rows.append(TauRow(tau=round(tau, 9), rate=rate))
    return rows


def tau_for_rate(table: list[TauRow], target_rate: float) -> TauRow:
    """The table entry whose measured escalation rate is closest to ``target_rate`` (ties: lower τ)."""
    if not 0.0 <= target_rate <= 1.0:
        raise RouterError(f"--target-rate must be within [0, 1], got {target_rate}")
    if not table:
        raise RouterError("The router's τ table is empty")
    return min(table, key=lambda row: (abs(row.rate - target_rate), row.tau))
