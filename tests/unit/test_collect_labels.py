"""Collection with the target's verification of z_d and grounded (outcome) labels, on scripted models."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.labelling.collect import CollectConfig, CollectModels, collect_question, run_collection
from arbitrage.labelling.outcome import OutcomeLabeller, OutcomeOptions
from arbitrage.router.data import read_pairs
from arbitrage.seeds import sample_seed
from tests.unit.test_collect import FakeScorer, reward


def draft_script(ctx: StepContext) -> tuple[str, FinishReason]:
    """Step 0 differs from the target's, step 1 equals it, step 2 states a (wrong) answer."""
    if len(ctx.steps) >= 2:
        return "draft says \\boxed{1}", FinishReason.STEP
    if len(ctx.steps) == 1:
        return "target step 1 good", FinishReason.STEP
    return "draft step 0", FinishReason.STEP


def target_script(ctx: StepContext) -> tuple[str, FinishReason]:
    if len(ctx.steps) >= 2:
        return "target says \\boxed{2}", FinishReason.STEP
    return f"target step {len(ctx.steps)} good", FinishReason.STEP


def continuation_script(ctx: StepContext) -> tuple[str, FinishReason]:
    """Continues to the right answer (2) exactly when the last step was written like the target's."""
    right = "good" in ctx.steps[-1]
    return f"so the answer is \\boxed{{{2 if right else 1}}}", FinishReason.STEP


PROBLEM = Problem("3", "q?", "2", "toy")


def test_verification_columns_equal_what_the_target_returned() -> None:
    draft, target = ScriptedGenerator("d", draft_script), ScriptedGenerator("t", target_script)
    rows = collect_question(PROBLEM, draft, target, FakeScorer(reward), CollectConfig(StepParams()))
    assert [r.step_index for r in rows] == [0, 1, 2]
    assert [text for _, text in target.verifications] == [r.z_d for r in rows]  # one verification per step
    fresh = ScriptedGenerator("t", target_script)
    for row in rows:
        z_d = StepOutput(row.z_d, FinishReason(row.draft_finish), "d", row.draft_tokens)
        v = fresh.verify_step(StepContext(row.question, tuple(row.context)), z_d, StepParams())
        assert row.t_tokens == v.n and row.t_logprobs == pytest.approx(list(v.token_logprobs))
        assert row.t_mean_logprob == pytest.approx(v.mean_logprob)
        assert row.t_min_logprob == pytest.approx(v.min_logprob)
        assert row.t_agreement == pytest.approx(v.agreement)
        assert row.t_first_divergence == v.first_divergence and row.t_end_is_eos == v.end_is_eos
        assert (
            row.verify_seconds == pytest.approx(v.seconds) and row.verify_prefill_tokens == v.prefill_tokens
        )
        assert row.gsi == pytest.approx(
            v.mean_logprob - math.fsum(row.draft_logprobs) / len(row.draft_logprobs)
        )
    # step 0: the draft's first word is not the target's; step 1: the target would write exactly z_d
    assert rows[0].t_first_divergence == 0 and rows[0].t_agreement == 0.5  # "step 0" agrees, not the rest
    assert rows[1].t_first_divergence is None and rows[1].t_agreement == 1.0
    assert rows[0].gsi == pytest.approx((2 * -4.0 + 2 * -0.5) / 4 - (-0.5))
    assert rows[1].gsi == pytest.approx(0.0)
    assert all(r.outcome_d is None and r.y_outcome is None for r in rows)  # --labels prm: no outcome


class PlainGenerator:
    """A generator that cannot verify (no verify_step)."""

    def __init__(self, inner: ScriptedGenerator) -> None:
        self.inner, self.name = inner, inner.name

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        return self.inner.generate_step(context, params)

    def close(self) -> None:
        self.inner.close()


def test_a_target_that_cannot_verify_leaves_nulls_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def make() -> CollectModels:
        target = PlainGenerator(ScriptedGenerator("t", target_script))
        return CollectModels(ScriptedGenerator("d", draft_script), target, FakeScorer(reward))

    problems = [Problem(str(i), f"question {i}?", "2", "toy") for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="arbitrage.labelling.collect"):
        stats = run_collection(
            problems, make, tmp_path, CollectConfig(StepParams()), workers=2, show_progress=False
        )
    assert stats.questions_done == 3
    warnings = [r for r in caplog.records if "cannot verify" in r.getMessage()]
    assert len(warnings) == 1
    rows = read_pairs(tmp_path)
    assert rows and all(r["t_tokens"] is None and r["gsi"] is None and r["t_logprobs"] is None for r in rows)


def test_outcome_labels_from_scripted_continuations() -> None:
    draft, target = ScriptedGenerator("d", draft_script), ScriptedGenerator("t", target_script)
    continuation = ScriptedGenerator("c", continuation_script)
    config = CollectConfig(StepParams(), labels="outcome")
    rows = collect_question(PROBLEM, draft, target, FakeScorer(reward), config, continuation=continuation)
    first, same, last = rows
    # step 0: from the target's step the continuation reaches 2 (right), from the draft's 1 (wrong)
    assert (first.outcome_d, first.outcome_t, first.outcome_advantage, first.y_outcome) == (0.0, 1.0, 1.0, 1)
    assert first.answers_d == ["1"] and first.answers_t == ["2"] and first.continuations == 1
    assert first.continuation_model == "c" and first.continuation_tokens == 2 * 5  # five words each
    # step 1: identical candidates, continued once, advantage exactly 0
    assert same.z_d == same.z_t and same.outcome_advantage == 0.0 and same.y_outcome == 0
    assert same.answers_d == same.answers_t == ["2"] and same.continuation_tokens == 5
    # step 2: both candidates state an answer: graded directly, no continuation
    assert (last.outcome_d, last.outcome_t, last.continuations) == (0.0, 1.0, 0)
    assert last.answers_d == ["1"] and last.answers_t == ["2"] and last.continuation_tokens == 0
    assert len(continuation.calls) == 3  # step 0: two candidates; step 1: one; step 2: none
    # the continuations started from prefix + candidate
    assert continuation.calls[0].steps == ("draft step 0",)
    assert continuation.calls[1].steps == ("target step 0 good",)


def test_outcome_labels_continue_with_the_draft_by_default() -> None:
    draft, target = ScriptedGenerator("d", draft_script), ScriptedGenerator("t", target_script)
    config = CollectConfig(StepParams(), labels="outcome", max_steps=1)
    (row,) = collect_question(PROBLEM, draft, target, FakeScorer(reward), config)
    assert row.continuation_model == "d"
    # the draft continues both candidates to its own step 1 and stops at its step 2 answer (1: wrong)
    assert row.answers_d == ["1"] and row.answers_t == ["1"] and row.outcome_advantage == 0.0


def chain_script(ctx: StepContext) -> tuple[str, FinishReason]:
    """A greedy model: c1, c2, then an answer that depends on the first step of the solution."""
    n = sum(s.startswith("c") for s in ctx.steps)
    if n < 2:
        return f"c{n + 1} two words", FinishReason.STEP
    return f"so \\boxed{{{2 if ctx.steps[0] == 'good' else 1}}}", FinishReason.STEP


def test_a_greedy_continuation_is_reused_from_every_state_it_passed_through() -> None:
    model = ScriptedGenerator("c", chain_script)
    labeller = OutcomeLabeller(model, StepParams())
    first = labeller.candidate("q?", "2", ("good",), "z", "step")
    assert len(model.calls) == 3 and first.answers == ("2",) and first.score == 1.0
    assert first.tokens == 3 + 3 + 2 and labeller.reused == 0
    # the next states of that continuation: answered without a model call, as a live run would answer
    steps = [(("good", "z"), "c1 two words", 5), (("good", "z", "c1 two words"), "c2 two words", 2)]
    for prefix, text, left in steps:
        reused = labeller.candidate("q?", "2", prefix, text, "step")
        live = OutcomeLabeller(ScriptedGenerator("c", chain_script), StepParams()).candidate(
            "q?", "2", prefix, text, "step"
        )
        assert (reused.score, reused.answers, reused.tokens) == (live.score, live.answers, live.tokens)
        assert reused.tokens == left and reused.seconds == 0.0 and reused.continuations == 1
    assert len(model.calls) == 3 and labeller.reused == 2
    # another text, another question: continued live
    labeller.candidate("q?", "2", ("good",), "other", "step")
    labeller.candidate("q2?", "2", ("good", "z"), "c1 two words", "step")
    assert len(model.calls) == 3 + 3 + 2 and labeller.reused == 2


def test_a_continuation_stopped_by_a_limit_or_sampled_is_not_reused() -> None:
    model = ScriptedGenerator("c", chain_script)
    labeller = OutcomeLabeller(model, StepParams(), OutcomeOptions(max_steps=2))
    labeller.candidate("q?", "2", ("good",), "z", "step")  # stops after c1, c2: max_steps
    labeller.candidate("q?", "2", ("good", "z"), "c1 two words", "step")
    assert labeller.reused == 0 and len(model.calls) == 2 + 2
    sampled = OutcomeLabeller(model, StepParams(), OutcomeOptions(continuations=2, seed=1))
    sampled.candidate("q?", "2", ("good",), "z", "step")
    sampled.candidate("q?", "2", ("good", "z"), "c1 two words", "step")
    assert sampled.reused == 0


class SeedParity(ScriptedGenerator):
    """Answers right (2) when its sampling seed is even; records the seeds it was called with."""

    def __init__(self) -> None:
        super().__init__("c", ["unused"])
        self.seeds: list[int | None] = []

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        self.seeds.append(params.seed)
        assert params.temperature == 0.7
        right = params.seed is not None and params.seed % 2 == 0
        text = f"\\boxed{{{2 if right else 1}}}"
        return StepOutput(text, FinishReason.STEP, self.name, 1, (-0.5,), (0.0,))


def test_k_sampled_continuations_are_seeded_shared_and_averaged() -> None:
    model = SeedParity()
    labeller = OutcomeLabeller(model, StepParams(), OutcomeOptions(continuations=5, seed=7))
    outcome = labeller.pair("q?", "2", ("a",), ("b", "step"), ("c", "step"))
    expected = [sample_seed(7, "q?", 2, i) for i in range(5)]
    assert model.seeds == expected + expected  # both candidates get the same 5 seeds
    share = sum(s % 2 == 0 for s in expected) / 5
    assert outcome.draft.score == outcome.target.score == pytest.approx(share)
    assert outcome.draft.continuations == 5 and len(outcome.target.answers) == 5
    assert outcome.advantage == 0.0 and outcome.label == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": "judge"},
        {"outcome": {"continuations": 0}},
        {"outcome": {"continuations": 2, "temperature": 0}},
    ],
)
def test_invalid_label_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        if "outcome" in kwargs:
            OutcomeOptions(**kwargs["outcome"])
        else:
            CollectConfig(StepParams(), **kwargs)
