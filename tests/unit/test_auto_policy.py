"""The auto policy's plan: target-only at quality 1, the fastest qualifying measured point below it,
under the table's fitted costs or a measured cost file (no model involved)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.costs import CostModel, RoleCosts
from arbitrage.errors import PolicyOptionError
from arbitrage.policies import build_policy, policy_options
from arbitrage.policies.auto import plan_auto
from arbitrage.policies.options import AutoOptions


def table(tmp_path: Path) -> Path:
    work = lambda d, t: {"draft": [d, 20.0, 5.0], "target": [t, 40.0, 5.0]}  # noqa: E731
    rows = [
        {"point": "target", "policy": "target", "options": {}, "relative_accuracy": 1.0,
         "relative_accuracy_ci": [1.0, 1.0], "work": {"draft": [0, 0, 0], "target": [300.0, 200.0, 8.0]}},
        {"point": "draft", "policy": "draft", "options": {}, "relative_accuracy": 0.4,
         "relative_accuracy_ci": [0.3, 0.5], "work": work(300.0, 0.0)},
        {"point": "verify_target_rate=0.6", "policy": "verify", "options": {"target_rate": 0.6},
         "relative_accuracy": 0.95, "relative_accuracy_ci": [0.85, 1.05], "work": work(300.0, 250.0)},
    ]  # fmt: skip
    costs = CostModel(RoleCosts(0.03, 0.002), RoleCosts(0.05, 0.01, 0.1))
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"source": "test", "costs": costs.to_dict(), "points": rows}))
    return path


def test_quality_one_is_the_target_writing_every_step(tmp_path: Path) -> None:
    plan = plan_auto(AutoOptions(), table(tmp_path))
    assert plan.policy == "target" and plan.projected_speedup == 1.0
    assert "lossless" in plan.reason


def test_a_slower_qualifying_point_is_never_chosen(tmp_path: Path) -> None:
    # verify qualifies at 0.9 but its projected latency (draft + target work) exceeds target-only's
    plan = plan_auto(AutoOptions(quality=0.9), table(tmp_path))
    assert plan.policy == "target"
    assert "projected at least 1.05x faster" in plan.reason


@pytest.mark.parametrize(("decoded", "chosen"), [(346.0, "target"), (330.0, "near")])
def test_a_point_within_the_projections_error_of_target_only_is_not_worth_it(
    tmp_path: Path, decoded: float, chosen: str
) -> None:
    # target-only projects at 17.8 s; "near" at 17.3 s (1.03x: within the 5% error bound) or 16.5 s (1.08x)
    path = table(tmp_path)
    data = json.loads(path.read_text())
    data["points"].append(
        {"point": "near", "policy": "draft", "options": {}, "relative_accuracy": 0.9,
         "relative_accuracy_ci": [0.8, 1.0], "work": {"draft": [0, 0, 0], "target": [decoded, 0.0, 0.0]}}
    )  # fmt: skip
    path.write_text(json.dumps(data))
    plan = plan_auto(AutoOptions(quality=0.9), path)
    assert plan.point == chosen
    assert (plan.projected_speedup == 1.0) == (chosen == "target")


def test_a_low_budget_gets_the_fastest_point_that_meets_it(tmp_path: Path) -> None:
    plan = plan_auto(AutoOptions(quality=0.3), table(tmp_path))
    assert plan.point == "draft" and plan.projected_speedup > 1
    assert "0.40 [0.30, 0.50]" in plan.reason


def test_measured_costs_change_the_choice(tmp_path: Path) -> None:
    # a GPU-like pair: the draft nearly free, the target's batched evaluation cheap
    fast = CostModel(RoleCosts(0.001, 0.0001), RoleCosts(0.05, 0.001, 0.0), source="bench")
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps(fast.to_dict()))
    plan = plan_auto(AutoOptions(quality=0.9, costs=str(costs)), table(tmp_path))
    assert plan.point == "verify_target_rate=0.6"
    assert plan.costs_file == str(costs)


def test_the_installed_table_plans_and_builds() -> None:
    policy = build_policy("auto", policy_options("auto"))
    assert policy.skip_draft and policy.name.startswith("auto(quality=1")
    assert "auto:" in policy.skip_reason  # type: ignore[attr-defined]
    low = build_policy("auto", policy_options("auto", quality=0.3))
    assert not low.skip_draft


@pytest.mark.parametrize("quality", [0.0, -0.1, 1.5])
def test_a_quality_outside_the_unit_interval_is_refused(quality: float) -> None:
    with pytest.raises(PolicyOptionError, match="quality"):
        AutoOptions(quality=quality)


def test_an_early_choice_keeps_its_decision_points() -> None:
    # auto that picked the early policy decides where early does: before the draft and at the probe
    from arbitrage.backends.scripted import ScriptedGenerator
    from arbitrage.engine import Engine
    from arbitrage.policies.auto import AutoEarlyPolicy, AutoPlan
    from arbitrage.policies.base import EarlyDecisions
    from arbitrage.policies.early import EarlyPolicy

    plan = AutoPlan(quality=0.5, point="early", policy="early", options={}, relative_accuracy=0.6,
                    projected_speedup=1.2, costs="test", reason="test")  # fmt: skip
    auto = AutoEarlyPolicy(plan, EarlyPolicy("draft_nll", 1.0, probe_tokens=1, target_steps=1))
    assert isinstance(auto, EarlyDecisions) and auto.probe_tokens == 1
    draft = ScriptedGenerator("d", ["d one", "d two", "\\boxed{1}"], logprob=-2.0)
    target = ScriptedGenerator("t", ["t one", "t two", "\\boxed{1}"])
    trace = Engine(draft, target, auto).solve("q?")
    first, second = trace.steps[:2]
    assert first.decision.point == "before_draft" and first.decision.reason.startswith(
        "auto -> step 1 of the 1"
    )
    assert second.decision.point == "probe" and second.decision.reason.startswith("auto -> draft_nll")
    with pytest.raises(TypeError, match="no early decisions"):
        AutoEarlyPolicy(plan, build_policy("draft", policy_options("draft")))
