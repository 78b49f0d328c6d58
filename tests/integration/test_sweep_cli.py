"""`arbitrage sweep` then `arbitrage report` end to end on real SmolLM2-135M (draft, target and judge)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_sweep_replays_steps_and_scores_then_reports(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "sweep", "--dataset", "gsm8k", "--limit", "2",
           "--points", "draft; target; rsd:threshold=0.3,0.6", "--prm", "judge:smollm2-135m",
           "--draft", "smollm2-135m", "--target", "smollm2-135m", "--max-steps", "3",
           "--max-step-tokens", "32", "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    rows = {r["point"]: r for r in json.loads((out / "sweep.json").read_text())}
    assert set(rows) == {"draft", "target", "rsd_threshold=0.3", "rsd_threshold=0.6"}
    first, second = rows["rsd_threshold=0.3"], rows["rsd_threshold=0.6"]
    # the first RSD point's draft steps were written by the draft-only point; its PRM calls are live
    assert first["replayed_calls"] > 0 and first["live_prm_calls"] > 0 and first["replayed_prm_calls"] == 0
    # the second scores the same first draft step of each problem again: replayed from the score cache
    assert second["replayed_prm_calls"] >= 2
    assert second["policy_seconds_mean"] > 0  # replayed calls still count their stored seconds
    report = subprocess.run([sys.executable, "-m", "arbitrage.cli.main", "report", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert report.returncode == 0, report.stderr
    text = (out / "report.md").read_text()
    assert "PRM calls replayed / live" in text and "rsd(t=0.6" in text
    assert (out / "accuracy_vs_acceptance.png").stat().st_size > 1000
