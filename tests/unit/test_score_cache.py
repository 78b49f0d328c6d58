"""The PRM score cache: replayed rewards, their stored cost in the policy time, and the counts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from arbitrage.engine import Engine
from arbitrage.evaluation.datasets import Problem
from arbitrage.evaluation.runner import record_for
from arbitrage.policies.reward import OraclePolicy, RSDPolicy
from arbitrage.prm.cache import CachingScorer, ScoreCache
from tests.unit.test_prm_policies import Clock, TableScorer, pair

REWARDS = {"d1": 0.9, "d2": 0.2, "t2": 0.8, "d3": 0.9, "d4 \\boxed{1}": 0.9, "t4 \\boxed{2}": 0.95}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


def test_caching_scorer_replays_stored_scores(tmp_path: Path) -> None:
    inner = TableScorer(REWARDS)
    cache = ScoreCache(tmp_path / "c.sqlite")
    scorer = CachingScorer(inner, cache, "table#v1")
    live = scorer.score("q", ["d1", "d2"])
    replay = scorer.score("q", ["d1", "d2"])
    assert len(inner.calls) == 1 and scorer.hits == 1 and scorer.misses == 1
    assert replay.rewards == live.rewards == (0.2,) and replay.first == live.first == 1
    assert replay.seconds == live.seconds == 1.0 and replay.info["replayed"] is True
    assert "replayed" not in live.info
    # another question, prefix, only_last flag or scorer id misses
    scorer.score("q2", ["d1", "d2"])
    scorer.score("q", ["d2"])
    scorer.score("q", ["d1", "d2"], only_last=False)
    CachingScorer(inner, cache, "table#v2").score("q", ["d1", "d2"])
    assert len(inner.calls) == 5
    cache.close()
    assert len(ScoreCache(tmp_path / "c.sqlite")) == 5


def test_replayed_prm_calls_count_their_stored_seconds(tmp_path: Path, clock: Clock) -> None:
    """A second RSD run on a warm score cache spends no PRM time now, but reports the same latency."""
    cache = ScoreCache(tmp_path / "c.sqlite")
    runs = []
    for _ in range(2):
        inner = TableScorer(REWARDS, clock)
        draft, target = pair()
        policy = RSDPolicy(CachingScorer(inner, cache, "table"), threshold=0.5)
        before = clock.now
        trace = Engine(draft, target, policy).solve("q?")
        runs.append((trace, len(inner.calls), clock.now - before))
    (first, first_calls, first_wall), (second, second_calls, second_wall) = runs
    assert (
        [s.text for s in first.steps] == [s.text for s in second.steps] == ["d1", "t2", "d3", "d4 \\boxed{1}"]
    )
    assert first_calls == 4 and second_calls == 0
    assert first_wall == 4.0 and second_wall == 0.0  # the fake clock moves only on live scorer calls
    assert first.policy_seconds == pytest.approx(4.0)
    assert second.policy_seconds == pytest.approx(4.0)  # stored seconds of the 4 replayed calls
    problem = Problem("0", "q?", "1", "toy")
    live, replayed = record_for(problem, first), record_for(problem, second)
    assert (live.live_prm_calls, live.replayed_prm_calls) == (4, 0)
    assert (replayed.live_prm_calls, replayed.replayed_prm_calls) == (0, 4)
    assert replayed.latency_seconds == pytest.approx(live.latency_seconds)


def test_oracle_on_a_partly_warm_cache_mixes_live_and_replayed(tmp_path: Path, clock: Clock) -> None:
    cache = ScoreCache(tmp_path / "c.sqlite")
    warm = CachingScorer(TableScorer(REWARDS, clock), cache, "table")
    warm.score("q?", ["d1"])  # the first draft step's reward is already known
    inner = TableScorer(REWARDS, clock)
    draft, target = pair()
    trace = Engine(draft, target, OraclePolicy(CachingScorer(inner, cache, "table"))).solve("q?")
    first = trace.steps[0]
    assert first.decision.info["prm_calls"] == 2 and first.decision.info["prm_replayed"] == 1
    assert first.decision.replayed_seconds == 1.0
    assert first.policy_seconds == pytest.approx(2.0)  # 1 s live (target's step) + 1 s replayed
