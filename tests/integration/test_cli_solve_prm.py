"""`arbitrage solve --policy rsd|oracle` end to end on real models (SmolLM2-135M as draft, target and
judge PRM), checking that the trace shows each step's rewards and decision."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"


def solve(*args: str, draft: str = "smollm2-135m") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "solve", QUESTION, "--draft", draft,
           "--target", "smollm2-135m", "--prm", "judge:smollm2-135m", "--max-steps", "3",
           "--max-step-tokens", "48", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_rsd_json_trace_has_rewards_and_threshold_decisions() -> None:
    result = solve("--policy", "rsd", "--threshold", "0.7", "--json")
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"] == "rsd(t=0.7, prm=judge(smollm2-135m, basic))"
    assert trace["steps"]
    for step in trace["steps"]:
        decision = step["decision"]
        assert 0.0 <= decision["draft_reward"] <= 1.0
        assert decision["threshold"] == 0.7 and decision["score"] == decision["draft_reward"]
        assert decision["escalate"] == (decision["draft_reward"] < 0.7) == (step["role"] == "target")
        assert decision["target_reward"] is None and decision["advantage"] is None
        assert decision["info"]["prm_calls"] == 1 and decision["info"]["prm_prefill_tokens"] > 0
        assert step["policy_seconds"] > 0 and step["diagnostic_seconds"] == 0
    assert trace["wasted_escalations"] is None and trace["diagnostic_seconds"] == 0
    assert trace["wall_latency_seconds"] == trace["wall_seconds"]
    assert trace["policy_seconds"] == pytest.approx(sum(s["policy_seconds"] for s in trace["steps"]))


def test_oracle_json_trace_has_both_rewards_and_advantage() -> None:
    # a draft of another family, so that the two candidates differ and the advantage is not always 0
    result = solve("--policy", "oracle", "--tau", "0.0", "--json", draft="gemma3-270m")
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"] == "oracle(tau=0, prm=judge(smollm2-135m, basic))"
    for step in trace["steps"]:
        d = step["decision"]
        assert d["advantage"] == pytest.approx(d["target_reward"] - d["draft_reward"])
        assert d["escalate"] == (d["advantage"] > 0.0) == (step["role"] == "target")
        assert step["target"] is not None and step["draft"] is not None
        assert d["info"]["prm_calls"] == 2
    assert trace["usage"]["target"]["calls"] >= len(trace["steps"])
    escalated = sum(s["escalated"] for s in trace["steps"])
    assert trace["escalations_with_rewards"] == escalated
    # with tau >= 0 an escalation always has an advantage: never wasted
    assert trace["wasted_escalations"] == (0 if escalated else None)
    assert len({round(s["decision"]["advantage"], 6) for s in trace["steps"]}) > 1 or len(trace["steps"]) == 1


def test_rsd_diagnose_human_output_shows_rewards_and_waste() -> None:
    result = solve("--policy", "rsd", "--threshold", "0.99", "--diagnose")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "draft 0." in out or "draft 1.00" in out
    assert "target smollm2-135m ↑" in out  # a threshold of 0.99 escalates (the judge is never that sure)
    assert "wasted escalations" in out and "(not in latency)" in out
