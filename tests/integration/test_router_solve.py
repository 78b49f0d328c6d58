"""`arbitrage solve --policy router` on real smollm2-135m draft and target, with a features router trained
in the test on synthetic step pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arbitrage.policies.router import packaged_router
from arbitrage.router.data import read_pairs
from arbitrage.router.store import load_router, save_router
from arbitrage.router.train import TrainOptions, train_router
from tests.router_synth import synthetic_pairs, write_pairs

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"


def test_solve_with_a_router_at_a_target_rate(tmp_path: Path) -> None:
    rows = read_pairs(write_pairs(tmp_path / "pairs", synthetic_pairs(questions=60, signal="features")))
    trained = train_router(rows, TrainOptions())
    path = save_router(tmp_path / "router", trained.router, trained.config, trained.split)
    tau = load_router(path).tau_for_rate(0.3).tau
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "solve", QUESTION, "--draft", "smollm2-135m",
           "--target", "smollm2-135m", "--policy", "router", "--router", str(path), "--target-rate", "0.3",
           "--max-steps", "4", "--max-step-tokens", "32", "--n-ctx", "2048", "--json"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"] == f"router(features,tau={tau:.4g},rate=0.3)"
    assert trace["steps"]
    escalated = [s for s in trace["steps"] if s["escalated"]]
    # the target ran exactly for the escalated steps; accepted steps carry no target output
    assert trace["usage"]["target"]["calls"] == len(escalated)
    for step in trace["steps"]:
        decision = step["decision"]
        assert 0.0 <= decision["score"] <= 1.0 and decision["threshold"] == tau
        assert step["escalated"] == (decision["score"] > tau)
        assert (step["target"] is not None) == step["escalated"]
        assert step["draft"]["token_logprobs"]  # the router read the real draft's logprobs
        assert decision["draft_reward"] is None and decision["target_reward"] is None  # no PRM ran
    assert trace["policy_seconds"] == pytest.approx(sum(s["policy_seconds"] for s in trace["steps"]))


def test_solve_with_the_packaged_router_verifies_every_draft_step() -> None:
    # no --router: the router installed with the package, which reads the target's verification
    packaged = load_router(packaged_router())
    tau = packaged.tau_for_rate(0.4).tau
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "solve", QUESTION, "--draft", "smollm2-135m",
           "--target", "smollm2-135m", "--policy", "router", "--target-rate", "0.4",
           "--max-steps", "3", "--max-step-tokens", "32", "--n-ctx", "2048", "--json"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"] == f"router(features,tau={tau:.4g},rate=0.4)"
    assert trace["steps"] and trace["usage"]["target"]["verify_calls"] == len(trace["steps"])
    for step in trace["steps"]:
        assert step["verification"] is not None and step["verification"]["tokens"] > 0
        assert step["escalated"] == (step["decision"]["score"] > tau)
