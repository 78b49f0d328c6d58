"""`arbitrage solve` end to end on real models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"


def solve(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "solve", QUESTION, "--draft", "gemma3-270m",
           "--target", "smollm2-135m", "--max-steps", "5", "--max-step-tokens", "64", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_solve_json_trace_attributes_steps_to_both_models() -> None:
    result = solve("--policy", "random", "--p", "0.5", "--seed", "1", "--json")
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"] == "random(p=0.5)"
    assert {s["model"] for s in trace["steps"]} == {"gemma3-270m", "smollm2-135m"}
    assert trace["usage"]["draft"]["calls"] >= len(trace["steps"])
    assert trace["usage"]["target"]["calls"] == sum(1 for s in trace["steps"] if s["role"] == "target")
    assert 0 < trace["acceptance_rate"] < 1
    for step in trace["steps"]:
        assert step["draft"]["token_logprobs"]
        assert step["decision"]["escalate"] == (step["role"] == "target")
    assert trace["stop_reason"] in {"eos", "answer", "max_steps", "max_tokens", "repetition"}


def test_the_default_policy_is_auto_the_target_writing_every_step() -> None:
    result = solve("--json", "--max-steps", "3")
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"] == "auto(quality=1 -> target)"
    assert trace["steps"] and all(s["role"] == "target" for s in trace["steps"])
    assert trace["usage"]["draft"]["calls"] == 0
    # gemma3 has another vocabulary than smollm2: it proposes at the text level, and the trace says so
    assert "gemma3-270m (text level) proposing" in trace["steps"][0]["decision"]["reason"]


def test_verify_checks_every_draft_step_at_the_packaged_calibration() -> None:
    # verify at the default rate, with the installed τ table
    result = solve("--json", "--max-steps", "3", "--policy", "verify")
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"].startswith("verify(") and "0.6" in trace["policy"]
    assert trace["steps"]
    for step in trace["steps"]:
        assert step["verification"] is not None and step["verification"]["tokens"] > 0
        decision = step["decision"]
        assert decision["escalate"] == (decision["score"] > decision["threshold"]) == step["escalated"]
    assert trace["usage"]["target"]["verify_calls"] == len(trace["steps"])


def test_solve_human_output_marks_models_and_summarises() -> None:
    result = solve("--policy", "draft")
    assert result.returncode == 0, result.stderr
    assert "draft  gemma3-270m" in result.stdout
    assert "acceptance rate 1.00" in result.stdout
    assert "answer" in result.stdout
