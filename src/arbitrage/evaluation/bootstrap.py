"""Paired bootstrap over problems: intervals for anything computed from several sweep points at once.

Every point of a sweep ran on the same problems, so a comparison between points (a speedup at matched
accuracy, an accuracy difference between two curves, a lift over random) is *paired*: one resample
draws problem ids with replacement once, and every point's accuracy, acceptance rate and mean latency
is recomputed on that same draw before the derived quantity is recomputed from them. The 95% interval
is the 2.5th–97.5th percentile of the derived quantity over the resamples where it is defined (a
resample can leave a speedup undefined, e.g. when a family no longer reaches the matched accuracy;
the share of resamples where it was defined is reported beside it).

Per point and resample (errored problems, see :mod:`arbitrage.evaluation.records`, are left out of
every figure of the point they errored in, as in the summary):

- accuracy = Σ correct / Σ completed,
- acceptance = Σ draft-kept steps / Σ steps (pooled, as the summary),
- latency = Σ latency_seconds / Σ completed (the mean cost latency).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from arbitrage.evaluation.records import ProblemRecord

RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True, slots=True)
class PointSamples:
    """One point's per-problem values, aligned on the sweep's problem ids (arrays of ``[problems]``)."""

    completed: np.ndarray  # bool: the solve finished (False: errored, or the problem is missing)
    correct: np.ndarray  # float 0/1 (0 where not completed)
    latency: np.ndarray  # cost latency seconds (0 where not completed)
    steps: np.ndarray  # accepted steps (0 where not completed)
    draft_steps: np.ndarray  # of which the draft's

    @classmethod
    def from_records(cls, records: Sequence[ProblemRecord], ids: Sequence[str]) -> PointSamples:
        by_id = {r.id: r for r in records}
        rows = [by_id.get(i) for i in ids]
        done = [r is not None and r.completed for r in rows]

        def column(get: Callable[[ProblemRecord], float]) -> np.ndarray:
            return np.asarray(
                [get(r) if r is not None and ok else 0.0 for r, ok in zip(rows, done, strict=True)]
            )

        return cls(
            completed=np.asarray(done, dtype=bool),
            correct=column(lambda r: float(r.correct)),
            latency=column(lambda r: r.latency_seconds),
            steps=column(lambda r: float(r.steps)),
            draft_steps=column(lambda r: float(r.draft_steps)),
        )


@dataclass(frozen=True, slots=True)
class ResampledPoint:
    """A point's figures on every resample (arrays of ``[resamples]``; NaN where undefined)."""

    accuracy: np.ndarray
    acceptance: np.ndarray
    latency: np.ndarray


def resample_indices(problems: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``[resamples, problems]`` problem positions drawn with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, problems, size=(resamples, problems))


def resample_point(samples: PointSamples, index: np.ndarray) -> ResampledPoint:
    """Accuracy, acceptance and mean latency of one point on each resample of ``index``."""
    done = samples.completed[index].sum(axis=1).astype(float)
    steps = samples.steps[index].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ResampledPoint(
            accuracy=samples.correct[index].sum(axis=1) / done,
            acceptance=samples.draft_steps[index].sum(axis=1) / steps,
            latency=samples.latency[index].sum(axis=1) / done,
        )


def resample_points(
    samples: Mapping[str, PointSamples], resamples: int = RESAMPLES, seed: int = SEED
) -> dict[str, ResampledPoint]:
    """Every point on the same resamples of problems (the pairing)."""
    sizes = {len(s.completed) for s in samples.values()}
    if len(sizes) != 1:
        raise ValueError(f"points are not aligned on the same problems: sizes {sorted(sizes)}")
    index = resample_indices(sizes.pop(), resamples, seed)
    return {key: resample_point(s, index) for key, s in samples.items()}


@dataclass(frozen=True, slots=True)
class Interval:
    """A percentile bootstrap interval of one derived quantity."""

    low: float | None  # 2.5th percentile over the resamples where the quantity is defined
    high: float | None  # 97.5th percentile
    defined: float  # share of resamples where it was defined (e.g. a matched accuracy was reached)

    def contains(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def to_list(self) -> list[float] | None:
        return None if self.low is None or self.high is None else [self.low, self.high]


def percentile_interval(values: Sequence[float | None] | np.ndarray, level: float = 0.95) -> Interval:
    """The central ``level`` percentile interval of the finite values (None/NaN: undefined resamples)."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    finite = array[np.isfinite(array)]
    if array.size == 0 or finite.size < max(2, array.size // 2):
        return Interval(None, None, finite.size / array.size if array.size else 0.0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(low), float(high), finite.size / array.size)
