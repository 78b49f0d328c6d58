"""RSD and the Arbitrage Oracle on scripted generators with a deterministic scorer (no model).

A fake clock advances one second per scorer call, so the time accounting (PRM time in policy_seconds,
diagnostics apart and out of the latency) is checked exactly rather than with timing tolerances.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import pytest

from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.cli.options import flag_errors
from arbitrage.engine import Engine
from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.policies import OracleOptions, RSDOptions, build_policy, policy_options
from arbitrage.policies.reward import OraclePolicy, RSDPolicy
from arbitrage.prm.base import StepScores

DRAFT = ["d1", "d2", "d3", "d4 \\boxed{1}"]
TARGET = ["t1", "t2", "t3", "t4 \\boxed{2}"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TableScorer:
    """Reward by step text (unknown texts, e.g. sampled ones, get ``default``); each call costs 1 s."""

    name = "table"

    def __init__(self, rewards: dict[str, float], clock: Clock | None = None, default: float = 0.5) -> None:
        self.rewards = rewards
        self.clock = clock
        self.default = default
        self.calls: list[tuple[str, ...]] = []

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        self.calls.append(tuple(steps))
        if self.clock is not None:
            self.clock.now += 1.0
        return StepScores((self.rewards.get(steps[-1], self.default),), len(steps) - 1, 1.0, scorer=self.name)

    def close(self) -> None:
        pass


def pair() -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return ScriptedGenerator("draft-m", DRAFT), ScriptedGenerator("target-m", TARGET)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


def test_rsd_accepts_at_or_above_threshold_and_escalates_below() -> None:
    scorer = TableScorer({"d1": 0.9, "d2": 0.7, "d3": 0.69, "d4 \\boxed{1}": 0.2})
    draft, target = pair()
    trace = Engine(draft, target, RSDPolicy(scorer, threshold=0.7)).solve("q?")
    assert [s.role for s in trace.steps] == ["draft", "draft", "target", "target"]
    assert [s.text for s in trace.steps] == ["d1", "d2", "t3", "t4 \\boxed{2}"]
    assert [s.decision.draft_reward for s in trace.steps] == [0.9, 0.7, 0.69, 0.2]
    assert all(s.decision.target_reward is None for s in trace.steps)  # not scored without diagnose
    assert trace.wasted_escalations is None and trace.escalations_with_rewards == 0
    assert len(target.calls) == 2  # the target wrote only the escalated steps
    # the scorer saw each draft step after the accepted steps so far
    assert scorer.calls == [("d1",), ("d1", "d2"), ("d1", "d2", "d3"), ("d1", "d2", "t3", "d4 \\boxed{1}")]
    assert trace.steps[2].decision.score == 0.69 and trace.steps[2].decision.threshold == 0.7


def test_rsd_diagnose_counts_wasted_escalations() -> None:
    rewards = {"d1": 0.3, "t1": 0.9, "d2": 0.5, "t2": 0.4, "d3": 0.1, "t3": 0.1, "d4 \\boxed{1}": 0.95}
    scorer = TableScorer(rewards)
    draft, target = pair()
    trace = Engine(draft, target, RSDPolicy(scorer, threshold=0.6, diagnose=True)).solve("q?")
    assert [s.role for s in trace.steps] == ["target", "target", "target", "draft"]
    assert [s.decision.advantage for s in trace.steps[:3]] == pytest.approx([0.6, -0.1, 0.0])
    assert [s.decision.wasted for s in trace.steps] == [False, True, True, None]
    assert trace.wasted_escalations == 2 and trace.escalations_with_rewards == 3
    data = trace.to_dict()
    assert data["wasted_escalations"] == 2 and data["escalations_with_rewards"] == 3
    assert data["steps"][1]["decision"]["wasted"] is True
    assert len(target.calls) == 3  # diagnosis never generates a target step that is not escalated anyway


def test_rsd_diagnostics_are_timed_apart_and_excluded_from_latency(clock: Clock) -> None:
    scorer = TableScorer({"d1": 0.1, "t1": 0.2, "d2": 0.9, "d3": 0.9, "d4 \\boxed{1}": 0.9}, clock)
    draft, target = pair()
    trace = Engine(draft, target, RSDPolicy(scorer, threshold=0.5, diagnose=True)).solve("q?")
    first, second = trace.steps[0], trace.steps[1]
    assert first.escalated and first.policy_seconds == 1.0 and first.diagnostic_seconds == 1.0
    assert first.decision.info["prm_calls"] == 1  # the diagnostic call is not counted as policy work
    assert not second.escalated and second.policy_seconds == 1.0 and second.diagnostic_seconds == 0.0
    assert trace.policy_seconds == 4.0 and trace.diagnostic_seconds == 1.0
    assert trace.wall_seconds == 5.0 and trace.wall_latency_seconds == 4.0
    assert trace.to_dict()["wall_latency_seconds"] == 4.0


def test_oracle_escalates_iff_advantage_exceeds_tau(clock: Clock) -> None:
    rewards = {"d1": 0.5, "t1": 0.9, "d2": 0.5, "t2": 0.5, "d3": 0.8, "t3": 0.6, "d4 \\boxed{1}": 0.2,
               "t4 \\boxed{2}": 0.3}  # fmt: skip
    scorer = TableScorer(rewards, clock)
    draft, target = pair()
    trace = Engine(draft, target, OraclePolicy(scorer, tau=0.05)).solve("q?")
    assert [s.role for s in trace.steps] == ["target", "draft", "draft", "target"]
    assert [s.decision.advantage for s in trace.steps] == pytest.approx([0.4, 0.0, -0.2, 0.1])
    assert all(s.target is not None for s in trace.steps)  # both candidates written every step
    assert len(target.calls) == 4  # ... and each target step generated once, escalated or not
    assert trace.usage["target"].calls == 4
    assert all(s.policy_seconds == 2.0 for s in trace.steps)  # two PRM calls per decision
    assert trace.wasted_escalations == 0 and trace.escalations_with_rewards == 2


def test_oracle_negative_tau_escalates_without_advantage_and_counts_waste() -> None:
    scorer = TableScorer({"d1": 0.5, "t1": 0.45})
    draft, target = ScriptedGenerator("d", ["d1"]), ScriptedGenerator("t", ["t1"])
    trace = Engine(draft, target, OraclePolicy(scorer, tau=-0.1)).solve("q?")
    assert trace.steps[0].escalated and trace.steps[0].decision.wasted is True
    assert trace.wasted_escalations == 1


def test_oracle_averages_target_samples_and_keeps_the_greedy_step() -> None:
    seen: list[tuple[float, int | None]] = []

    class Sampling(ScriptedGenerator):
        def generate_step(self, context, params):  # type: ignore[no-untyped-def]
            seen.append((params.temperature, params.seed))
            out = super().generate_step(context, params)
            if params.temperature > 0:
                return dataclasses.replace(out, text=f"t-sample-{params.seed}")
            return out

    from arbitrage.backends.base import FinishReason

    draft = ScriptedGenerator("d", [("d1", FinishReason.EOS)])
    target = Sampling("t", [("t-greedy", FinishReason.EOS)])
    scorer = TableScorer({"d1": 0.5, "t-greedy": 0.9}, default=0.3)  # samples score 0.3
    policy = OraclePolicy(scorer, tau=0.0, target_samples=3, temperature=0.8, seed=7)
    trace = Engine(draft, target, policy).solve("q?")
    step = trace.steps[0]
    assert step.decision.target_reward == pytest.approx((0.9 + 0.3 + 0.3) / 3)
    assert step.decision.info["target_rewards"] == [0.9, 0.3, 0.3]
    assert step.decision.advantage == pytest.approx(0.0)
    assert not step.escalated  # mean 0.5 vs draft 0.5: no advantage
    assert step.extra_target_samples == 2 and trace.usage["target"].calls == 3
    assert [t for t, _ in seen] == [0.0, 0.8, 0.8]
    seeds = [s for _, s in seen[1:]]
    assert len(set(seeds)) == 2 and all(s is not None for s in seeds)
    # the same seed gives the same sample seeds: reproducible
    seen.clear()
    again = OraclePolicy(scorer, tau=0.0, target_samples=3, temperature=0.8, seed=7)
    Engine(
        ScriptedGenerator("d", [("d1", FinishReason.EOS)]),
        Sampling("t", [("t-greedy", FinishReason.EOS)]),
        again,
    ).solve("q?")
    assert [s for _, s in seen[1:]] == seeds


def test_empty_draft_step_scores_zero_without_calling_the_scorer() -> None:
    from arbitrage.backends.base import FinishReason

    scorer = TableScorer({"t1": 0.8})
    draft = ScriptedGenerator("d", [("", FinishReason.STEP), ("", FinishReason.EOS)])
    target = ScriptedGenerator("t", [("t1", FinishReason.STEP), ("t2 \\boxed{3}", FinishReason.STEP)])
    trace = Engine(draft, target, RSDPolicy(scorer, threshold=0.5)).solve("q?")
    assert trace.steps[0].decision.draft_reward == 0.0 and trace.steps[0].escalated
    assert scorer.calls == []


def test_factory_builds_reward_policies_and_needs_a_scorer() -> None:
    scorer = TableScorer({})
    rsd = build_policy("rsd", RSDOptions(threshold=0.6, diagnose=True), scorer=scorer)
    assert isinstance(rsd, RSDPolicy) and rsd.threshold == 0.6 and rsd.diagnose
    assert rsd.name == "rsd(t=0.6, prm=table)"
    oracle = build_policy("oracle", OracleOptions(tau=0.1, target_samples=2, seed=3), scorer=scorer)
    assert isinstance(oracle, OraclePolicy) and oracle.name == "oracle(tau=0.1, k=2, prm=table)"
    for name in ("rsd", "oracle"):
        with pytest.raises(ConfigError, match="needs a process reward model"):
            build_policy(name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "--threshold must be within"),
        ({"tau": 2.0}, "--tau must be within"),
        ({"target_samples": 0}, "--target-samples must be at least 1"),
    ],
)
def test_reward_policy_parameters_are_checked(kwargs: dict[str, float], message: str) -> None:
    name = "rsd" if "threshold" in kwargs else "oracle"
    with pytest.raises(ConfigError, match=message), flag_errors():  # the CLI names options as its flags
        build_policy(name, policy_options(name, kwargs), scorer=TableScorer({}))
    with pytest.raises(PolicyOptionError) as info:  # the library names the option itself
        policy_options(name, kwargs)
    assert info.value.options[0] == next(iter(kwargs))
    assert str(info.value).startswith(next(iter(kwargs)))
