"""`arbitrage eval` end to end on the real SmolLM2-135M, and gold answers graded against themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arbitrage.evaluation.datasets import DATASETS, load_dataset
from arbitrage.grading import answers_match, grade

pytestmark = pytest.mark.slow


def test_eval_runs_resumes_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "eval", "--dataset", "gsm8k", "--policy", "draft",
           "--draft", "smollm2-135m", "--target", "smollm2-135m", "--max-steps", "3",
           "--max-step-tokens", "48", "--out", str(out)]  # fmt: skip
    first = subprocess.run([*cmd, "--limit", "2"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "accuracy" in first.stdout
    second = subprocess.run([*cmd, "--limit", "3"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    records = [json.loads(line) for line in (out / "records.jsonl").open()]
    assert [r["id"] for r in records] == ["0", "1", "2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3 and summary["acceptance_rate"] == 1.0
    changed = subprocess.run(
        [*cmd, "--limit", "3", "--max-steps", "4"], capture_output=True, text=True, timeout=600
    )
    assert changed.returncode == 2 and "different configuration" in changed.stderr


def test_every_gold_answer_grades_as_correct_against_itself() -> None:
    failures = []
    for name in DATASETS:
        for problem in load_dataset(name).problems:
            if not answers_match(problem.answer, problem.answer):
                failures.append((name, problem.id, problem.answer))
            if (
                name in ("gsm8k", "math500")
                and problem.solution
                and not grade(problem.solution, problem.answer).correct
            ):
                failures.append((name, problem.id, "solution"))
    assert failures == []
