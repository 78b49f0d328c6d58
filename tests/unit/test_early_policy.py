"""The early policy and the engine's early decision points, on scripted backends.

Scripted verification treats a word as a token: the target agrees with a draft word iff its own scripted
step has that word at that position (log π −0.5), else it disagrees (log π −4.0), so
``target_min_nll`` over a probe is 4.0 when a probe word disagrees and 0.5 when none does.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verification
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.engine import Engine, EngineConfig, KeepPrefix
from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.evaluation.datasets import Problem
from arbitrage.evaluation.records import ProblemRecord
from arbitrage.evaluation.runner import record_for
from arbitrage.policies import (
    ContextView,
    DraftConfidence,
    EarlyDecisions,
    RandomPolicy,
    StepView,
    TargetOnlyPolicy,
    build_policy,
    policy_options,
)
from arbitrage.policies.early import (
    CALIBRATION_FILE,
    EarlyPolicy,
    build_early_calibration,
    load_early_calibration,
    probe_scores,
    write_early_calibration,
)
from arbitrage.policies.options import DEFAULT_EARLY_RATE, DEFAULT_EARLY_SCORE, DEFAULT_PROBE_TOKENS
from arbitrage.policies.verify import tau_for_rate
from arbitrage.trace import Decision

# word 4 of the first step differs ("red" / "green"); the second step agrees throughout; the third differs
# at word 3 (its answer)
DRAFT_STEPS = ["first we count the red apples here", "then we add two more apples", "so it is \\boxed{6}"]
TARGET_STEPS = ["first we count the green pears here", "then we add two more apples", "so it is \\boxed{5}"]
STRONG = (
    1.0  # τ on target_min_nll: a probe word the target would not write (4.0) is above, agreement (0.5) not
)


def models(**draft_kwargs: float) -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return ScriptedGenerator("draft-m", DRAFT_STEPS, **draft_kwargs), ScriptedGenerator(
        "target-m", TARGET_STEPS
    )


def engine(policy: EarlyPolicy, keep_prefix: KeepPrefix = "verified", **draft_kwargs: float) -> Engine:
    draft, target = models(**draft_kwargs)
    return Engine(draft, target, policy, EngineConfig(keep_prefix=keep_prefix))


def solution(steps: list[str]) -> str:
    return "\n\n".join(steps)


# -- the probe: escalate at the first strong disagreement, or let the draft go on ------------------------


def test_a_probe_within_the_agreed_words_lets_the_draft_go_on() -> None:
    e = engine(EarlyPolicy("target_min_nll", STRONG, probe_tokens=4))
    trace = e.solve("q?")
    first = trace.steps[0]
    assert first.role == "draft" and first.text == DRAFT_STEPS[0]
    assert first.probe is not None and not first.probe.whole_step
    assert first.probe.output.text == "first we count the" and first.probe.agreed == 4
    assert [d.point for d in first.decisions] == ["probe", "step"]
    assert not first.early[0].escalate and "the draft goes on" in first.early[0].reason
    # the draft wrote its probe, then its whole step again from the same context
    assert e.draft.calls[:2] == [StepContext("q?", ())] * 2  # type: ignore[attr-defined]
    assert trace.usage["draft"].generated_tokens >= 4 + 7
    # the third step has 4 words: its probe is the whole step, answer included, which the target rewrites
    third = trace.steps[2]
    assert third.probe is not None and third.probe.whole_step and third.decision.point == "probe"
    assert trace.solution == solution([*DRAFT_STEPS[:2], TARGET_STEPS[2]])


def test_a_strong_disagreement_in_the_probe_escalates_keeping_the_agreed_prefix() -> None:
    e = engine(EarlyPolicy("target_min_nll", STRONG, probe_tokens=5))
    trace = e.solve("q?")
    first = trace.steps[0]
    assert first.role == "target" and first.text == TARGET_STEPS[0]
    assert first.decision.point == "probe" and first.decision.escalate
    assert first.decision.score == pytest.approx(4.0)
    assert first.decision.info["agreed"] == 4 and first.decision.info["probe_tokens"] == 5
    assert "the target continues from the 4 agreed tokens" in first.decision.reason
    assert first.probe is not None and first.probe.agreed == 4
    assert first.draft is first.probe.output  # the partial draft step, never finished
    assert first.kept_tokens == 4  # the target decoded only from the divergence on
    assert first.verification is first.probe.verification
    # the draft wrote only its 5 probe tokens for that step; the target continued once
    assert e.draft.calls.count(StepContext("q?", ())) == 1  # type: ignore[attr-defined]
    assert trace.steps[1].role == "draft"  # the second step agrees throughout its probe


def test_always_escalating_at_the_probe_is_target_only_and_never_is_draft_only() -> None:
    draft, target = models()
    target_only = Engine(draft, target, TargetOnlyPolicy()).solve("q?")
    always = engine(EarlyPolicy("target_min_nll", -1e9, probe_tokens=3)).solve("q?")
    never = engine(EarlyPolicy("target_min_nll", 1e9, probe_tokens=3)).solve("q?")
    assert always.solution == target_only.solution == solution(TARGET_STEPS)
    assert [s.decision.point for s in always.steps] == ["probe"] * 3
    assert always.kept_tokens == 3 + 3 + 3  # each 3-word probe agrees: the target continues after it
    assert never.solution == solution(DRAFT_STEPS)
    assert all(s.role == "draft" for s in never.steps)


def test_a_probe_longer_than_the_step_is_the_step_and_its_verification_is_reused() -> None:
    class VerifyAgain(EarlyPolicy):
        """Also reads the verification at the normal decision: it must be the probe's."""

        def decide(self, view: StepView) -> Decision:
            assert view.verification is not None and view.verification.text == view.draft.text
            assert view.verify_target() is view.verification
            return super().decide(view)

    e = engine(VerifyAgain("target_min_nll", 1e9, probe_tokens=50))
    trace = e.solve("q?")
    assert all(s.probe is not None and s.probe.whole_step for s in trace.steps)
    assert len(e.draft.calls) == 3  # type: ignore[attr-defined]  # one call per step, no resume
    assert len(e.target.verifications) == 3  # type: ignore[attr-defined]  # one per step, reused


def test_a_draft_score_decides_without_the_target_until_it_escalates() -> None:
    # the draft is sure of its first token (−0.5 < τ 1): nothing escalates and the target is never called
    e = engine(EarlyPolicy("draft_nll", 1.0, probe_tokens=2))
    trace = e.solve("q?")
    assert trace.solution == solution(DRAFT_STEPS)
    assert e.target.calls == [] and e.target.verifications == []  # type: ignore[attr-defined]
    assert all(s.early[0].info.get("agreed") is None for s in trace.steps)
    # an unsure draft (−2.0 > τ 1) escalates every step at the probe; unverified, the target writes from
    # scratch ("verified"), or verifies the probe first and keeps its agreed prefix ("always")
    scratch = engine(EarlyPolicy("draft_nll", 1.0, probe_tokens=2), logprob=-2.0).solve("q?")
    kept = engine(EarlyPolicy("draft_nll", 1.0, probe_tokens=2), "always", logprob=-2.0).solve("q?")
    assert scratch.solution == kept.solution == solution(TARGET_STEPS)
    assert scratch.kept_tokens == 0 and scratch.usage["target"].verify_calls == 0
    assert kept.kept_tokens == 2 + 2 + 2 and kept.usage["target"].verify_calls == 3
    assert all(s.probe is not None and s.probe.agreed == 2 for s in kept.steps)  # verified at escalation


def test_never_keeping_a_prefix_rewrites_from_scratch() -> None:
    trace = engine(EarlyPolicy("target_min_nll", -1e9, probe_tokens=3), "never").solve("q?")
    assert trace.solution == solution(TARGET_STEPS)
    assert trace.kept_tokens == 0


# -- before the draft writes --------------------------------------------------------------------------


def test_before_the_draft_the_last_proposal_decides_and_the_first_step_has_no_evidence() -> None:
    # the draft's own proposals cost it −0.5 a word: τ 0.4 escalates every step that has a previous one
    e = engine(EarlyPolicy("draft_nll", 0.4, probe_tokens=0))
    trace = e.solve("q?")
    first, second, third = trace.steps
    assert first.role == "draft" and first.early[0].point == "before_draft"
    assert "no evidence" in first.early[0].reason
    assert first.probe is None
    assert second.role == "target" and second.draft is None and second.decision.point == "before_draft"
    assert second.decision.score == pytest.approx(0.5)
    assert second.decision.info["evidence"] == "the draft's proposal for step 0"
    # step 3: the draft proposed nothing at step 2, so it reads the target's step 2 (and agrees with it)
    assert third.decision.info["evidence"].startswith("the draft's view of step 1")
    assert e.draft.verifications == [(StepContext("q?", (DRAFT_STEPS[0],)), TARGET_STEPS[1])]  # type: ignore[attr-defined]
    assert trace.usage["draft"].verify_calls == 1
    assert [c for c in e.draft.calls] == [StepContext("q?", ())]  # type: ignore[attr-defined]
    assert trace.solution == solution([DRAFT_STEPS[0], *TARGET_STEPS[1:]])


def test_before_the_draft_a_confident_draft_writes_every_step() -> None:
    trace = engine(EarlyPolicy("draft_nll", 0.4, probe_tokens=0), logprob=-0.2).solve("q?")
    assert trace.solution == solution(DRAFT_STEPS)
    assert [d.point for d in trace.steps[1].decisions] == ["before_draft", "step"]
    reason = trace.steps[1].decision.reason
    assert reason.startswith("accepted: draft_nll 0.200 ≤ τ 0.400 on the draft's proposal for step 0")


@pytest.mark.parametrize("probe_tokens", [0, 2])
def test_the_target_writes_the_opening_steps_then_the_rule_decides(probe_tokens: int) -> None:
    # a confident draft (never above τ) writes every step but the two the target is given first
    policy = EarlyPolicy("draft_nll", 1.0, probe_tokens=probe_tokens, target_steps=2)
    assert policy.name.endswith(",target_steps=2)")
    e = engine(policy, logprob=-0.2)
    trace = e.solve("q?")
    assert [s.role for s in trace.steps] == ["target", "target", "draft"]
    assert trace.solution == solution([*TARGET_STEPS[:2], DRAFT_STEPS[2]])
    for i, step in enumerate(trace.steps[:2], start=1):
        assert step.draft is None and step.probe is None  # the draft wrote nothing for them
        assert step.decision.point == "before_draft" and step.decision.reason.startswith(f"step {i} of the 2")
    calls = e.draft.calls  # type: ignore[attr-defined]
    assert calls and all(c == StepContext("q?", tuple(TARGET_STEPS[:2])) for c in calls)  # (probe, rest)
    # options and CLI flags reach the policy; a negative count is a one-line error
    built = build_policy("early", policy_options("early", threshold=1.0, target_steps=1))
    assert isinstance(built, EarlyPolicy) and built.target_steps == 1
    assert build_policy("early", policy_options("early", target_steps=1)).target_steps == 1  # type: ignore[attr-defined]
    with pytest.raises(PolicyOptionError, match=r"^target_steps must be 0 or more, got -1$"):
        policy_options("early", {"target_steps": -1})


@pytest.mark.parametrize("probe_tokens", [0, 1])
def test_the_random_score_escalates_the_steps_random_mixing_does_at_the_early_point(
    probe_tokens: int,
) -> None:
    """The cost-matched control: the random policy's draw per step, decided where the early point decides
    (before the draft writes: no draft call for an escalated step; after a 1-token probe)."""
    policy = build_policy("early", policy_options("early", probe_tokens=probe_tokens, score="random",
                                                  target_rate=0.5))  # fmt: skip
    assert isinstance(policy, EarlyPolicy) and policy.tau == pytest.approx(0.5)
    assert policy.name == f"early(m={probe_tokens},random,tau=0.5,rate=0.5)"
    escalated = 0
    for i in range(12):
        question = f"q{i}?"
        draft, target = models()
        mixed = Engine(draft, target, RandomPolicy(0.5)).solve(question)
        e = engine(policy)
        early = e.solve(question)
        assert [s.role for s in early.steps] == [s.role for s in mixed.steps]
        assert early.solution == mixed.solution
        expected_point = "before_draft" if probe_tokens == 0 else "probe"
        assert all(s.decisions[0].point == expected_point for s in early.steps)
        escalated += sum(s.role == "target" for s in early.steps)
        if probe_tokens == 0:  # the draft wrote only the steps it kept
            kept = sum(s.role == "draft" for s in early.steps)
            assert len(e.draft.calls) == kept  # type: ignore[attr-defined]
    assert 0 < escalated < 36  # a mix, not all or nothing


def test_the_context_view_asks_for_the_last_step_once() -> None:
    calls: list[int] = []

    def make() -> DraftConfidence:
        calls.append(1)
        return DraftConfidence((-1.0, -3.0), (0.5, 1.5), "test")

    view = ContextView("q?", (), _make_last_confidence=make)
    first = view.last_step_confidence()
    assert first is view.last_step_confidence() and len(calls) == 1
    assert first is not None
    assert (first.mean_nll, first.max_nll, first.mean_entropy) == (2.0, 3.0, 1.0)


# -- the trace and the records ------------------------------------------------------------------------


def test_the_trace_holds_every_decision_with_its_point_and_the_probe() -> None:
    trace = engine(EarlyPolicy("target_min_nll", STRONG, probe_tokens=5)).solve("q?")
    data = json.loads(json.dumps(trace.to_dict()))  # JSON-ready
    first, second = data["steps"][:2]
    assert first["decision_point"] == "probe" and first["early_decisions"] == []
    assert first["decision"]["point"] == "probe" and first["decision"]["escalate"] is True
    assert first["probe"]["tokens"] == 5 and first["probe"]["written"] == 5
    assert first["probe"]["agreed"] == 4 and first["probe"]["whole_step"] is False
    assert first["probe"]["verification"]["first_divergence"] == 4
    assert second["decision_point"] == "step"
    assert [d["point"] for d in second["early_decisions"]] == ["probe"]
    assert second["early_decisions"][0]["info"]["agreed"] == 5
    record = record_for(Problem(id="1", question="q?", answer="5", dataset="t"), trace)
    assert (record.probes, record.early_escalations, record.escalations) == (3, 2, 2)
    assert ProblemRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_policy_seconds_exclude_the_models_calls() -> None:
    class SlowTarget(ScriptedGenerator):
        def verify_step(self, context: StepContext, step: StepOutput, params: StepParams) -> Verification:
            time.sleep(0.05)  # a verification the policy asks for: the target's time, not the policy's
            return super().verify_step(context, step, params)

    draft = ScriptedGenerator("draft-m", DRAFT_STEPS)
    target = SlowTarget("target-m", TARGET_STEPS)
    trace = Engine(draft, target, EarlyPolicy("target_min_nll", STRONG, probe_tokens=5)).solve("q?")
    assert trace.usage["target"].verify_calls == 3 and trace.usage["target"].calls == 2
    assert trace.wall_seconds > 0.15
    assert trace.policy_seconds < 0.05


def test_the_engine_finds_the_early_decision_points() -> None:
    assert isinstance(EarlyPolicy("draft_nll", 1.0, 0), EarlyDecisions)
    assert not isinstance(TargetOnlyPolicy(), EarlyDecisions)


# -- options, the registry and calibration ------------------------------------------------------------


def test_the_default_early_policy_takes_tau_from_the_installed_table() -> None:
    policy = build_policy("early")
    assert isinstance(policy, EarlyPolicy)
    assert (policy.probe_tokens, policy.score, policy.target_rate) == (
        DEFAULT_PROBE_TOKENS,
        DEFAULT_EARLY_SCORE,
        DEFAULT_EARLY_RATE,
    )
    tables, where = load_early_calibration(None)
    assert where == f"arbitrage/data/{CALIBRATION_FILE}"
    assert policy.tau == pytest.approx(
        tau_for_rate(tables[str(DEFAULT_PROBE_TOKENS)][DEFAULT_EARLY_SCORE], 0.2)
    )
    other = build_policy(
        "early", policy_options("early", probe_tokens=8, score="target_nll", target_rate=0.4)
    )
    assert other.name.startswith("early(m=8,target_nll,tau=") and other.name.endswith("rate=0.4)")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"probe_tokens": -1}, "probe_tokens must be 0 (before the draft writes) or more, got -1"),
        ({"probe_tokens": 0, "score": "target_nll"}, "Before the draft writes (probe_tokens 0)"),
        ({"probe_tokens": 0, "score": "target_nll"}, "draft_entropy, random, got"),
        ({"score": "nope"}, "Unknown early score 'nope'"),
        ({"threshold": 1.0, "target_rate": 0.2}, "either threshold or target_rate, not both"),
        ({"target_rate": 1.5}, "target_rate must be within [0, 1]"),
        ({"threshold": math.inf}, "threshold must be finite"),
        ({"threshold": 1.0, "calibration": "x.json"}, "calibration applies with target_rate only"),
        ({"probe_tokens": "two"}, "Invalid policy option probe_tokens='two'"),
        ({"tau": 0.3}, "Unknown policy option 'tau' for the early policy"),
    ],
)
def test_bad_options_are_one_line_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyOptionError) as err:
        policy_options("early", values)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_probe_length_the_table_lacks_asks_for_a_threshold() -> None:
    with pytest.raises(PolicyOptionError, match="no row for probe_tokens 5"):
        build_policy("early", policy_options("early", probe_tokens=5, target_rate=0.2))
    assert build_policy("early", policy_options("early", probe_tokens=5, threshold=2.0)).tau == 2.0


def test_the_cli_spells_early_options_as_flags() -> None:
    from arbitrage.cli.options import policy_choice

    name, options = policy_choice("early", probe_tokens=4, score="target_min_nll", target_rate=0.3)
    assert (name, options.probe_tokens, options.target_rate) == ("early", 4, 0.3)
    with pytest.raises(ConfigError, match=r"^--probe-tokens applies to --policy early only$"):
        policy_choice("verify", probe_tokens=4)
    with pytest.raises(ConfigError, match=r"--probe-tokens 0\) the target has nothing to verify: --score"):
        policy_choice("early", probe_tokens=0, score="target_nll")


def rows() -> list[dict[str, object]]:
    """Two questions' collected pairs: per step the draft's and the target's logprobs of its tokens."""

    def row(
        q: str, i: int, draft: list[float], target: list[float], divergence: int | None
    ) -> dict[str, object]:
        return {"question_id": q, "step_index": i, "draft_logprobs": draft, "draft_entropies": [0.1] * len(draft),
                "t_logprobs": target, "t_tokens": len(target), "t_first_divergence": divergence}  # fmt: skip

    return [
        row("a", 1, [-0.2, -2.0, -0.1], [-0.1, -3.0, -0.2], 1),
        row("a", 0, [-0.1, -0.1], [-0.3, -0.1], None),
        row("b", 0, [-1.0, -1.0, -1.0, -1.0], [-0.5, -0.5, -6.0, -0.5], 2),
    ]


def test_probe_scores_read_the_first_m_tokens_and_the_previous_step() -> None:
    a1, a0, b0 = rows()
    at2 = probe_scores(a1, 2, a0)
    assert at2["target_min_nll"] == pytest.approx(3.0)
    assert at2["target_nll"] == pytest.approx(1.55)
    assert at2["divergence"] == pytest.approx(0.5)  # diverges at token 1 of the first 2
    assert at2["draft_nll"] == pytest.approx(1.1) and at2["draft_max_nll"] == pytest.approx(2.0)
    assert "disagree" not in at2  # per-token agreement is not collected
    assert probe_scores(b0, 2, None)["divergence"] == 0.0  # agrees through the probe
    assert probe_scores(a1, 0, a0) == {"draft_nll": pytest.approx(0.1), "draft_max_nll": pytest.approx(0.1),
                                       "draft_entropy": pytest.approx(0.1)}  # fmt: skip
    assert probe_scores(a0, 0, None) == {}  # a first step: no evidence before the draft


def test_the_calibration_table_counts_unscored_steps_as_never_escalated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = build_early_calibration(rows(), probes=(0, 2), quantiles=(0.0, 0.5, 1.0))
    # before the draft only a1 is scored (by a0's proposal, 0.1); the two first steps sit below it
    assert table["0"]["draft_nll"] == [
        (0.0, pytest.approx(-0.9)),
        (0.5, pytest.approx(-0.9)),
        (1.0, pytest.approx(0.1)),
    ]
    assert table["2"]["target_min_nll"][-1] == (1.0, pytest.approx(3.0))
    path = tmp_path / "early.json"
    write_early_calibration(table, path, source="test")
    loaded, where = load_early_calibration(path)
    assert where == str(path) and loaded["2"]["target_min_nll"][-1] == (1.0, 3.0)
    policy = build_policy("early", policy_options("early", probe_tokens=2, score="target_min_nll", target_rate=0.0,
                                                   calibration=str(path)))  # fmt: skip
    assert policy.tau == pytest.approx(3.0)  # escalate nothing: τ at the top of the table
    with pytest.raises(ConfigError, match="not an early calibration table"):
        (tmp_path / "bad.json").write_text('{"tables": {}}')
        load_early_calibration(tmp_path / "bad.json")


def test_a_capped_step_ends_within_the_probe() -> None:
    # the per-step cap (3 words) is below the probe (5): the probe is the capped step, decided once
    draft, target = models()
    config = EngineConfig(step=StepParams(max_step_tokens=3))
    trace = Engine(draft, target, EarlyPolicy("target_min_nll", 1e9, probe_tokens=5), config).solve("q?")
    assert trace.steps[0].probe is not None and trace.steps[0].probe.whole_step
    assert trace.steps[0].finish_reason == FinishReason.LENGTH
    assert draft.calls.count(StepContext("q?", ())) == 1


def test_the_probe_view_is_partial_and_a_policy_may_ask_for_the_target_step() -> None:
    seen: list[bool] = []

    class Looks(EarlyPolicy):
        def after_probe(self, view: StepView) -> Decision:
            seen.append(view.partial)
            view.target_step()  # the target's own step, reused if the step escalates later
            return super().after_probe(view)

        def decide(self, view: StepView) -> Decision:
            assert view.generated_target is not None
            return Decision(escalate=True, reason="the target's step was there already")

    e = engine(Looks("target_min_nll", 1e9, probe_tokens=2))
    trace = e.solve("q?")
    assert seen == [True, True, True]
    assert trace.solution == solution(TARGET_STEPS)
    assert len(e.target.calls) == 3  # type: ignore[attr-defined]  # written once each, not again
