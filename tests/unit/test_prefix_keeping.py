"""Prefix keeping of escalated steps, and the cost of verifications, on scripted backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.backends.base import StepContext, StepOutput, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.evaluation.records import ProblemRecord, read_records
from arbitrage.evaluation.report import build_report
from arbitrage.evaluation.runner import record_for
from arbitrage.evaluation.summary import summarize
from arbitrage.evaluation.sweep import parse_points, run_sweep, sweep_policies
from arbitrage.policies import DraftOnlyPolicy, StepView, TargetOnlyPolicy
from arbitrage.trace import Decision

# the draft agrees with the target on a prefix of every step but the second (which it gets all right)
DRAFT_STEPS = ["we have 3 apples", "then add 2 more", "so we get 6 in all", "answer \\boxed{6}"]
TARGET_STEPS = ["we have 3 pears", "then add 2 more", "so we get 5 in total", "answer \\boxed{5}"]
# tokens (words, separator included) the target keeps from each draft step: up to the first divergence
KEPT = [3, 4, 3, 1]  # the whole second step (4 words) agrees; the others diverge at word 3, 3, 1


def models() -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return ScriptedGenerator("draft-m", DRAFT_STEPS), ScriptedGenerator("target-m", TARGET_STEPS)


class AlwaysEscalate:
    """Escalates every step without looking at the target (as random(p=1) would)."""

    name = "always"
    skip_draft = False

    def decide(self, view: StepView) -> Decision:
        return Decision(escalate=True)


class VerifyThenEscalate:
    """Has the target verify every draft step, then escalates every step."""

    name = "verify-then-escalate"
    skip_draft = False

    def decide(self, view: StepView) -> Decision:
        view.verify_target()
        return Decision(escalate=True)


class Plain:
    """A generator that cannot verify (no verify_step / continue_step)."""

    def __init__(self, inner: ScriptedGenerator) -> None:
        self.inner = inner
        self.name = inner.name

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        return self.inner.generate_step(context, params)

    def close(self) -> None:
        self.inner.close()


def target_only_solution() -> str:
    draft, target = models()
    return Engine(draft, target, TargetOnlyPolicy()).solve("q?").solution


def test_verified_escalations_keep_the_agreed_prefix_and_equal_target_only() -> None:
    draft, target = models()
    trace = Engine(draft, target, VerifyThenEscalate()).solve("q?")
    assert trace.solution == target_only_solution()
    assert [s.kept_tokens for s in trace.steps] == KEPT
    assert trace.kept_tokens == sum(KEPT) == trace.usage["target"].kept_tokens
    assert [s.verification is not None for s in trace.steps] == [True] * 4
    assert len(target.verifications) == 4
    # the target decoded only the words after the kept prefix (scripted: 0.01 s per word)
    generated = sum(len(t.split()) for t in TARGET_STEPS)
    assert trace.usage["target"].decode_seconds == pytest.approx((generated - sum(KEPT)) * 0.01)


def test_always_verifies_before_escalating_when_the_policy_did_not() -> None:
    draft, target = models()
    trace = Engine(draft, target, AlwaysEscalate(), EngineConfig(keep_prefix="always")).solve("q?")
    assert trace.solution == target_only_solution()
    assert len(target.verifications) == 4
    assert trace.usage["target"].verify_calls == 4
    assert [s.kept_tokens for s in trace.steps] == KEPT
    assert all(s.verification is not None for s in trace.steps)


@pytest.mark.parametrize("mode", ["verified", "never"])
def test_without_a_verification_or_with_never_escalations_are_generated_as_before(mode: str) -> None:
    draft, target = models()
    policy = VerifyThenEscalate() if mode == "never" else AlwaysEscalate()
    trace = Engine(draft, target, policy, EngineConfig(keep_prefix=mode)).solve("q?")  # type: ignore[arg-type]
    assert trace.solution == target_only_solution()
    assert trace.kept_tokens == 0
    assert all(s.kept_tokens == 0 for s in trace.steps)
    assert all("kept_tokens" not in s.target.extra for s in trace.steps if s.target is not None)
    generated = sum(len(t.split()) for t in TARGET_STEPS)
    assert trace.usage["target"].decode_seconds == pytest.approx(generated * 0.01)
    # "never" still lets the policy verify (and pays for it); "verified" with a policy that does not
    # verify never calls verify_step
    assert len(target.verifications) == (4 if mode == "never" else 0)


def test_sampled_steps_are_not_continued_from_a_prefix() -> None:
    draft, target = models()
    config = EngineConfig(step=StepParams(temperature=0.7, seed=1), keep_prefix="always")
    trace = Engine(draft, target, AlwaysEscalate(), config).solve("q?")
    assert trace.kept_tokens == 0
    assert target.verifications == []


def test_a_target_that_cannot_verify() -> None:
    draft, target = models()
    plain = Plain(target)
    trace = Engine(draft, plain, AlwaysEscalate(), EngineConfig(keep_prefix="always")).solve("q?")
    assert trace.solution == target_only_solution()  # falls back to generate_step
    assert trace.kept_tokens == 0
    with pytest.raises(ConfigError, match="target-m cannot verify steps") as err:
        Engine(draft, plain, VerifyThenEscalate()).solve("q?")
    assert "\n" not in str(err.value)


def test_keep_prefix_is_checked() -> None:
    with pytest.raises(ConfigError, match="keep_prefix must be one of"):
        EngineConfig(keep_prefix="sometimes")  # type: ignore[arg-type]


def test_the_verification_cost_is_in_the_latency_and_the_records() -> None:
    draft, target = models()
    trace = Engine(draft, target, VerifyThenEscalate()).solve("q?")
    usage = trace.usage["target"]
    # scripted verification: a tenth of a decode second per verified token (words + separator)
    verified = sum(len(d.split()) + 1 for d in DRAFT_STEPS[:-1]) + len(DRAFT_STEPS[-1].split())
    assert usage.verify_seconds == pytest.approx(verified * 0.001)
    assert usage.seconds == pytest.approx(usage.prefill_seconds + usage.decode_seconds + usage.verify_seconds)
    assert usage.verify_prefill_tokens == verified
    record = record_for(Problem(id="1", question="q?", answer="5", dataset="toy"), trace)
    assert record.correct
    assert record.verify_calls == 4
    assert record.verify_seconds == pytest.approx(usage.verify_seconds)
    assert record.verify_prefill_tokens == verified
    assert ProblemRecord.from_dict(record.to_dict()) == record  # the sparse key survives the JSON line
    unverified = Engine(*models(), DraftOnlyPolicy()).solve("q?")
    line = record_for(Problem(id="2", question="q?", answer="5", dataset="toy"), unverified).to_dict()
    assert "verify_prefill_tokens" not in line
    assert record.kept_tokens == sum(KEPT)
    assert record.target_seconds == pytest.approx(usage.seconds)
    assert record.latency_seconds == pytest.approx(
        trace.usage["draft"].seconds + usage.seconds + trace.policy_seconds
    )
    assert usage.verify_seconds > 0 and record.latency_seconds > trace.usage["draft"].seconds + (
        usage.prefill_seconds + usage.decode_seconds
    )
    summary = summarize([record, record], "p")
    assert summary.kept_tokens_mean == sum(KEPT)
    assert summary.verify_calls_mean == 4
    assert summary.kept_token_share == pytest.approx(sum(KEPT) / record.target_generated_tokens)


def test_the_trace_json_summarises_each_verification() -> None:
    draft, target = models()
    data = Engine(draft, target, VerifyThenEscalate()).solve("q?").to_dict()
    json.dumps(data)
    assert data["kept_tokens"] == sum(KEPT)
    assert data["usage"]["target"]["verify_calls"] == 4
    first = data["steps"][0]
    assert first["kept_tokens"] == 3
    summary = first["verification"]
    assert summary["tokens"] == 5  # four words and the separator
    assert summary["first_divergence"] == 3
    assert summary["agreement"] == pytest.approx(4 / 5)  # the separator agrees too
    assert summary["min_logprob"] == pytest.approx(target.disagree_logprob)
    assert set(summary) >= {"mean_logprob", "seconds", "model", "prefill_tokens"}
    assert not any(isinstance(v, list) for v in summary.values())


def test_a_sweep_counts_tokens_saved_per_point_and_the_report_shows_them(tmp_path: Path) -> None:
    draft, target = models()
    problems = [Problem("0", "q?", "5", "toy"), Problem("1", "r?", "5", "toy")]
    points = parse_points("draft; target; verify:threshold=0.1; random:p=1")
    pairs = sweep_policies(points, {"score": "disagree"})
    config = EngineConfig(keep_prefix="always")
    results = run_sweep(problems, draft, target, pairs, tmp_path, config, {"data": "toy"})
    saved = {point.slug: summary.kept_tokens_mean for point, summary in results}
    # verify escalates the three steps it disagrees with (kept 3 + 3 + 1); random(p=1) escalates all
    assert saved == {"draft": 0.0, "target": 0.0, "verify_threshold=0.1": 7.0, "random_p=1": sum(KEPT)}
    records = read_records(tmp_path / "random_p=1" / "records.jsonl")
    assert [r.kept_tokens for r in records] == [sum(KEPT)] * 2 and records[0].verify_calls == 4
    assert "kept_tokens" not in json.loads((tmp_path / "draft" / "records.jsonl").open().readline())
    report = build_report(tmp_path).read_text()
    assert "decode tokens saved / problem" in report
    row = next(line for line in report.splitlines() if line.startswith("| random(p=1) |"))
    assert f"| {sum(KEPT):.1f} |" in row
