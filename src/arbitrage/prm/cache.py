"""A persistent score cache: replay a scorer's rewards for an identical (scorer, question, steps) request.

Sweeps run RSD at several thresholds and the oracle at several τ over the same problems; with greedy
decoding most prefixes recur, and a local judge PRM costs seconds a call. :class:`CachingScorer` wraps
any :class:`~arbitrage.prm.base.StepScorer`: on a hit it returns the stored :class:`StepScores` --
including the ``seconds`` measured when they were computed -- with ``info["replayed"] = True``; on a
miss it calls the scorer and stores the result. The policies add a replayed call's stored seconds to
the step's policy time (:attr:`arbitrage.trace.Decision.replayed_seconds`), so latencies stay sums of
measured costs, and evaluation records count replayed and live PRM calls separately.

A judge keeps a KV cache between consecutive calls of one solution; a replayed call does not advance
it, so the next live call may prefill more than it would have in an all-live run. That extra cost is
measured, not hidden.

The table lives in the same SQLite file as the step cache (:mod:`arbitrage.backends.cache`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from arbitrage.backends.cache import JsonTable
from arbitrage.prm.base import StepScorer, StepScores


class ScoreCache(JsonTable):
    """SQLite-backed map from a scoring request's key to the scores it produced."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "scores")

    @staticmethod
    def key(scorer_id: str, question: str, steps: Sequence[str], only_last: bool) -> str:
        return JsonTable.digest([scorer_id, question, list(steps), only_last])

    def get(self, key: str) -> StepScores | None:
        data = self.get_json(key)
        if data is None:
            return None
        data["rewards"] = tuple(data["rewards"])
        data["info"] = {**data.get("info", {}), "replayed": True}
        return StepScores(**data)

    def put(self, key: str, scores: StepScores) -> None:
        self.put_json(key, dataclasses.asdict(scores))


class CachingScorer:
    """A scorer that replays cached rewards and records new ones (see the module docstring)."""

    def __init__(self, inner: StepScorer, cache: ScoreCache, scorer_id: str | None = None) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.scorer_id = scorer_id or inner.name  # identifies the weights, prompt and options in keys
        self.hits = 0
        self.misses = 0

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        key = ScoreCache.key(self.scorer_id, question, steps, only_last)
        hit = self.cache.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        scores = self.inner.score(question, steps, only_last=only_last)
        self.cache.put(key, scores)
        return scores

    def close(self) -> None:
        self.inner.close()
