"""Monte-Carlo rollout values on scripted generators: share of completions reaching the gold answer."""

from __future__ import annotations

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.errors import ConfigError, ScorerError
from arbitrage.prm.rollout import RolloutScorer, answers_match, complete, numeric_answer

Q = "How many apples?"


def test_numeric_answers() -> None:
    assert numeric_answer("$1,200") == 1200.0
    assert numeric_answer("\\text{12 apples}") == 12.0
    assert numeric_answer("25\\%") == 25.0
    assert numeric_answer("3/4") == 0.75
    assert numeric_answer("none") is None
    assert answers_match("\\$8.00", "8") and not answers_match("9", "8") and not answers_match(None, "8")
    assert answers_match("Paris", "paris")


def test_complete_stops_at_a_boxed_answer() -> None:
    def script(ctx: StepContext) -> tuple[str, FinishReason]:
        return (f"step {len(ctx.steps)}" if len(ctx.steps) < 3 else "\\boxed{8}"), FinishReason.STEP

    gen = ScriptedGenerator("g", script)
    done = complete(gen, Q, ["given"], StepParams())
    assert done.steps == ("step 1", "step 2", "\\boxed{8}") and done.answer == "8"
    assert complete(gen, Q, ["so \\boxed{5}"], StepParams()).steps == ()  # already answered


def test_rollout_value_is_the_share_of_right_completions() -> None:
    calls: list[tuple[float, int | None]] = []

    class Gen(ScriptedGenerator):
        def generate_step(self, context: StepContext, params: StepParams):  # type: ignore[no-untyped-def]
            calls.append((params.temperature, params.seed))
            return super().generate_step(context, params)

    # greedy and the first sample reach 8; the others 7 (the answer depends on the sampling seed)
    def script(ctx: StepContext) -> tuple[str, FinishReason]:
        temperature, seed = calls[-1]
        right = temperature == 0 or seed == 1001
        return ("\\boxed{8}" if right else "\\boxed{7}"), FinishReason.STEP

    scorer = RolloutScorer(Gen("g", script), {Q: "8"}, rollouts=4, temperature=0.9)
    result = scorer.score(Q, ["3 + 5 = 8"])
    assert result.rewards == (0.5,) and result.info["answers"] == ["8", "8", "7", "7"]
    assert [t for t, _ in calls] == [0.0, 0.9, 0.9, 0.9]
    with pytest.raises(ScorerError, match="gold answer"):
        scorer.score("Another question?", ["x"])
    with pytest.raises(ConfigError):
        RolloutScorer(Gen("g", script), {}, rollouts=0)
