"""Oracle-labelled collection on scripted models with a deterministic reward (no model, no PRM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.router.collect import CollectConfig, collect_question, run_collection
from arbitrage.router.data import read_pairs


def draft_script(ctx: StepContext) -> tuple[str, FinishReason]:
    if len(ctx.steps) >= 2:
        return "draft says \\boxed{1}", FinishReason.STEP
    return f"draft step {len(ctx.steps)}", FinishReason.STEP


def target_script(ctx: StepContext) -> tuple[str, FinishReason]:
    if len(ctx.steps) >= 2:
        return "target says \\boxed{2}", FinishReason.STEP
    return f"target step {len(ctx.steps)} good", FinishReason.STEP


def reward(question: str, steps: object, step: str) -> float:
    """Rewards 'good' target steps; the draft wins on the final step."""
    if "boxed{1}" in step:
        return 0.9
    return 0.8 if "good" in step else 0.3


def models() -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return ScriptedGenerator("d", draft_script), ScriptedGenerator("t", target_script)


def test_rows_carry_labels_and_the_oracle_follow_rule() -> None:
    draft, target = models()
    rows = collect_question(
        Problem("7", "q?", "1", "toy"), draft, target, reward, CollectConfig(StepParams())
    )
    assert [r.step_index for r in rows] == [0, 1, 2]
    assert [r.y for r in rows] == [1, 1, 0]
    assert rows[0].delta == pytest.approx(0.5)
    assert rows[1].context == ["target step 0 good"] and rows[1].history == ["target"]
    assert rows[2].history == ["target", "target"]
    assert rows[0].question_id == "toy/7" and rows[0].draft_model == "d" and rows[0].target_model == "t"
    assert len(rows[0].draft_logprobs) == rows[0].draft_tokens


def test_follow_draft_and_target_samples() -> None:
    draft, target = models()
    config = CollectConfig(StepParams(), follow="draft", target_samples=3)
    rows = collect_question(Problem("1", "q?", "1", "toy"), draft, target, reward, config)
    assert rows[1].context == ["draft step 0"] and rows[1].history == ["draft"]
    assert len(rows[0].s_t_samples) == 3
    assert len(target.calls) == 3 * len(rows)


def test_collection_resumes_without_duplicates(tmp_path: Path) -> None:
    problems = [Problem(str(i), f"question {i}?", "1", "toy") for i in range(4)]

    def make() -> tuple[ScriptedGenerator, ScriptedGenerator, object]:
        d, t = models()
        return d, t, reward

    first = run_collection(problems[:2], make, tmp_path, CollectConfig(StepParams()), show_progress=False)  # type: ignore[arg-type]
    assert first.questions_done == 2 and first.rows == 6
    second = run_collection(
        problems, make, tmp_path, CollectConfig(StepParams()), workers=2, show_progress=False
    )  # type: ignore[arg-type]
    assert second.questions_skipped == 2 and second.questions_done == 2
    rows = read_pairs(tmp_path)
    keys = [(r["question_id"], r["step_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12


def test_a_failing_question_does_not_stop_the_run(tmp_path: Path) -> None:
    def flaky(question: str, steps: object, step: str) -> float:
        if "question 1" in question:
            raise RuntimeError("scorer exploded")
        return reward(question, steps, step)

    def make() -> tuple[ScriptedGenerator, ScriptedGenerator, object]:
        d, t = models()
        return d, t, flaky

    problems = [Problem(str(i), f"question {i}?", "1", "toy") for i in range(3)]
    stats = run_collection(problems, make, tmp_path, CollectConfig(StepParams()), show_progress=False)  # type: ignore[arg-type]
    assert stats.questions_failed == 1 and stats.questions_done == 2
    assert {r["question_id"] for r in read_pairs(tmp_path)} == {"toy/0", "toy/2"}


@pytest.mark.parametrize("kwargs", [{"target_samples": 0}, {"max_steps": 0}, {"follow": "both"}])
def test_invalid_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        CollectConfig(StepParams(), **kwargs)
