"""The step-labelled set: corruptions of gold GSM8K steps, draft-step labelling, file round trip."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from arbitrage.backends.base import FinishReason, StepContext
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.errors import ConfigError
from arbitrage.labelling.evalset import build_draft_rows
from arbitrage.prm.arithmetic import ArithmeticVerifier
from arbitrage.prm.evalset import (
    build_corrupted,
    corrupt_operand,
    corrupt_result,
    load_rows,
    strip_annotations,
    write_rows,
)

LINE = "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
PROBLEMS = [
    {"question": "Natalia sold clips to 48 friends in April and half as many in May. How many in all?",
     "answer": f"{LINE}\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"},
    {"question": "Weng earns $12 an hour. She worked 50 minutes. How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
               "She earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "No calculation here?", "answer": "It is just 5.\n#### 5"},
]  # fmt: skip


def test_strip_annotations() -> None:
    assert strip_annotations(LINE) == "Natalia sold 48/2 = 24 clips in May."


def test_corrupt_result_changes_only_the_stated_result() -> None:
    for seed in range(20):
        text, meta = corrupt_result(LINE, random.Random(seed))  # type: ignore[misc]
        assert text.startswith("Natalia sold 48/2 = ") and text.endswith(" clips in May.")
        assert meta["from"] == "24" and meta["to"] != "24"
        assert ArithmeticVerifier().check(text)[0] == 0.0  # the stated arithmetic is now wrong


def test_corrupt_operand_keeps_the_arithmetic_consistent() -> None:
    verifier = ArithmeticVerifier()
    for seed in range(20):
        made = corrupt_operand(LINE, random.Random(seed))
        assert made is not None
        text, meta = made
        assert text != strip_annotations(LINE)
        assert verifier.check(text)[0] == 1.0  # consistent: only reading the problem reveals the error
        assert meta["changed"] == "operand" and meta["operand"] in ("48", "2")


def test_corrupt_operand_needs_the_calculation_written_out() -> None:
    assert corrupt_operand("She sold <<48/2=24>>24 clips.", random.Random(0)) is None
    assert corrupt_result("No annotation here.", random.Random(0)) is None


def test_build_corrupted_pairs_gold_and_wrong_steps_with_one_prefix() -> None:
    rows = build_corrupted(PROBLEMS, n_problems=5, seed=1)
    kinds = [r.kind for r in rows]
    assert kinds.count("gold") == 2  # the third problem has no annotated step
    for gold in (r for r in rows if r.kind == "gold"):
        siblings = [r for r in rows if r.problem_id == gold.problem_id]
        assert {r.prefix for r in siblings} == {gold.prefix}
        assert {r.label for r in siblings if r.kind != "gold"} == {0} and gold.label == 1
        assert gold.gold_answer in ("72", "10")
        assert "<<" not in gold.step and all("<<" not in p for p in gold.prefix)
    assert build_corrupted(PROBLEMS, 5, seed=1) == rows  # deterministic


def test_rows_round_trip_and_bad_files(tmp_path: Path) -> None:
    rows = build_corrupted(PROBLEMS, 2, seed=0)
    path = tmp_path / "set.jsonl"
    write_rows(path, rows)
    assert load_rows(path) == rows
    with pytest.raises(ConfigError, match="not found"):
        load_rows(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: not a step-labelled row"):
        load_rows(bad)
    data = json.loads(path.read_text().splitlines()[0])
    data["label"] = 2
    bad.write_text(json.dumps(data) + "\n")
    with pytest.raises(ConfigError, match="label must be 0 or 1"):
        load_rows(bad)


@pytest.mark.parametrize(("result", "answer", "label"), [("20", "68", 0), ("24", "72", 1)])
def test_draft_rows_are_labelled_by_the_target_continuation(result: str, answer: str, label: int) -> None:
    question = PROBLEMS[0]["question"]
    steps = ["First we halve the number.", f"48/2 = {result} clips in May.", f"So \\boxed{{{answer}}}."]
    draft = ScriptedGenerator("draft-m", steps)

    def target_script(context: StepContext) -> tuple[str, FinishReason]:
        # the target carries on from what it is given: it repeats a wrong "= 20", else gets 72
        wrong = any("= 20" in s for s in context.steps)
        return ("So \\boxed{68}." if wrong else "So \\boxed{72}."), FinishReason.STEP

    target = ScriptedGenerator("target-m", target_script)
    rows = build_draft_rows(draft, target, [(0, PROBLEMS[0])], seed=0)
    assert len(rows) == 1
    row = rows[0]
    assert row.kind == "draft" and row.question == question and row.gold_answer == "72"
    k = row.meta["step_index"]
    assert k in (1, 2)  # only steps with a digit are drawn
    assert row.step == steps[k] and row.prefix == tuple(steps[:k])
    assert row.label == label
    assert row.meta["draft_correct"] is bool(label)
    if k == 1:
        assert row.meta["rollout_answer"] == answer and target.calls
    else:
        assert row.meta["labelled_by"] == "final answer" and not target.calls
