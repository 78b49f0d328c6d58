"""`arbitrage sweep` then `arbitrage report` end to end on real SmolLM2-135M (draft, target and judge)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def sweep(out: Path, points: str, *extra: str) -> dict[str, dict]:
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "sweep", "--dataset", "gsm8k", "--limit", "2",
           "--points", points, "--prm", "judge:smollm2-135m",
           "--draft", "smollm2-135m", "--target", "smollm2-135m", "--max-steps", "3",
           "--max-step-tokens", "32", "--out", str(out), *extra]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return {r["point"]: r for r in json.loads((out / "sweep.json").read_text())}


def test_sweep_replays_steps_and_scores_then_reports(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    rows = sweep(out, "draft; target; rsd:threshold=0.3,0.6")
    assert set(rows) == {"draft", "target", "rsd_threshold=0.3", "rsd_threshold=0.6"}
    first, second = rows["rsd_threshold=0.3"], rows["rsd_threshold=0.6"]
    # the first RSD point's draft steps were written by the draft-only point (replayed at live cost)
    assert first["replayed_calls"] > 0
    # PRM scores are live by default: a replayed score would carry the judge's stored cost
    for row in (first, second):
        assert row["live_prm_calls"] > 0 and row["replayed_prm_calls"] == 0
    # asked to, the sweep replays scores: the second point scores the first's draft steps again
    more = sweep(tmp_path / "more", "rsd:threshold=0.45,0.55", "--replay-scores", "--cache",
                 str(out / "step_cache.sqlite"))  # fmt: skip
    assert more["rsd_threshold=0.45"]["replayed_prm_calls"] == 0
    assert more["rsd_threshold=0.55"]["replayed_prm_calls"] >= 2
    assert more["rsd_threshold=0.55"]["policy_seconds_mean"] > 0  # replayed calls count stored seconds
    report = subprocess.run([sys.executable, "-m", "arbitrage.cli.main", "report", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert report.returncode == 0, report.stderr
    text = (out / "report.md").read_text()
    assert "PRM calls replayed / live" in text and "rsd(t=0.6" in text
    assert (out / "accuracy_vs_acceptance.png").stat().st_size > 1000
