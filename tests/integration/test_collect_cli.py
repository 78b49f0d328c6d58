"""`arbitrage collect` end to end on the real SmolLM2-135M (draft, target and judge): rows, resume, workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arbitrage.router.data import read_pairs

pytestmark = pytest.mark.slow


def test_collect_writes_resumes_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "collect", "--dataset", "gsm8k-train",
           "--draft", "smollm2-135m", "--target", "smollm2-135m", "--prm", "judge+arith:smollm2-135m",
           "--max-steps", "2", "--max-step-tokens", "32", "--max-tokens", "96", "--out", str(out)]  # fmt: skip
    first = subprocess.run([*cmd, "--limit", "1"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "1 questions collected, 0 already there, 0 failed" in first.stdout
    second = subprocess.run(
        [*cmd, "--limit", "3", "--workers", "2"], capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr
    assert "2 questions collected, 1 already there, 0 failed" in second.stdout
    rows = read_pairs(out)
    keys = [(r["question_id"], r["step_index"]) for r in rows]
    assert len(keys) == len(set(keys)) and {q for q, _ in keys} == {f"gsm8k/{i}" for i in range(3)}
    for row in rows:
        assert 0.0 <= row["s_d"] <= 1.0 and 0.0 <= row["s_t"] <= 1.0
        assert row["delta"] == pytest.approx(row["s_t"] - row["s_d"]) and row["y"] == int(row["delta"] > 0)
        if row["z_d"] == row["z_t"]:  # the same text is scored once: no advantage
            assert row["delta"] == 0.0
        assert row["step_index"] == len(row["context"]) < 2
        assert row["prm"] == "judge+arith:smollm2-135m" and row["draft_model"] == row["target_model"]
        # the default labels are grounded: both candidates continued to an answer and graded
        assert row["outcome_d"] in (0.0, 1.0) and row["outcome_t"] in (0.0, 1.0)
        assert row["outcome_advantage"] == row["outcome_t"] - row["outcome_d"]
        assert row["continuation_model"] == "smollm2-135m" and row["t_tokens"] is not None
