"""The ``verify`` policy: scores on hand-built verifications, decisions on scripted models, options,
calibration tables and the calibrate-verify command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from arbitrage.backends.base import FinishReason, StepOutput, Verification
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.cli.options import policy_choice
from arbitrage.engine import Engine
from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.evaluation.sweep import parse_points, point_options
from arbitrage.policies import VerifyOptions, build_policy, policy_options
from arbitrage.policies.verify import (
    VerificationStats,
    VerifyPolicy,
    build_calibration,
    load_calibration,
    tau_for_rate,
    verification_score,
    write_calibration,
)


def verification(logprobs: list[float], tokens: list[int], greedy: list[int]) -> Verification:
    return Verification(
        model="t", text="x", finish_reason=FinishReason.STEP, tokens=tuple(tokens),
        token_logprobs=tuple(logprobs), greedy_tokens=tuple(greedy),
        greedy_logprobs=(-0.1,) * len(greedy), entropies=(0.0,) * len(greedy),
    )  # fmt: skip


def draft_step(logprobs: list[float]) -> StepOutput:
    return StepOutput(text="x", finish_reason=FinishReason.STEP, model="d", tokens=len(logprobs),
                      token_logprobs=tuple(logprobs))  # fmt: skip


def test_scores_on_a_hand_built_verification() -> None:
    # 4 tokens, the target's greedy choice differs at index 2 (and 3)
    v = verification([-0.5, -1.0, -3.0, -1.5], [1, 2, 3, 4], [1, 2, 9, 8, 7])
    stats = VerificationStats.of(v, draft_step([-0.2, -0.4, -0.6]))
    assert verification_score("target_nll", stats) == pytest.approx(1.5)
    assert verification_score("target_min_nll", stats) == pytest.approx(3.0)
    assert verification_score("gsi", stats) == pytest.approx(-(-1.5 - -0.4))
    assert verification_score("disagree", stats) == pytest.approx(0.5)
    assert verification_score("divergence", stats) == pytest.approx(1 - 2 / 4)
    agreeing = VerificationStats.of(verification([-0.1, -0.2], [1, 2], [1, 2, 5]), draft_step([-1.0]))
    assert agreeing.first_divergence is None
    assert verification_score("divergence", agreeing) == 0.0
    assert verification_score("disagree", agreeing) == 0.0
    assert verification_score("gsi", agreeing) == pytest.approx(-(-0.15 + 1.0))


def test_stats_from_a_collected_row_match_the_live_ones() -> None:
    v = verification([-0.5, -1.0, -3.0, -1.5], [1, 2, 3, 4], [1, 2, 9, 8, 7])
    live = VerificationStats.of(v, draft_step([-0.2, -0.4, -0.6]))
    row = {"t_mean_logprob": v.mean_logprob, "t_min_logprob": v.min_logprob, "t_agreement": v.agreement,
           "t_first_divergence": v.first_divergence, "t_tokens": v.n, "draft_logprobs": [-0.2, -0.4, -0.6]}  # fmt: skip
    assert VerificationStats.from_row(row) == live
    assert VerificationStats.from_row({**row, "t_first_divergence": -1}).first_divergence is None  # type: ignore[union-attr]
    assert VerificationStats.from_row({"draft_logprobs": [-1.0]}) is None  # collected without verification


# the second draft step is the target's own; the others differ from the first word on
DRAFT = ["we have 3 apples", "then add 2 more", "answer \\boxed{6}"]
TARGET = ["we have 3 pears", "then add 2 more", "answer \\boxed{5}"]


@pytest.mark.parametrize(("score", "tau"), [("disagree", 0.0), ("divergence", 0.0), ("target_nll", 1.0),
                                            ("target_min_nll", 1.0), ("gsi", 0.5)])  # fmt: skip
def test_the_policy_escalates_the_steps_the_target_disagrees_with(score: str, tau: float) -> None:
    draft, target = ScriptedGenerator("d", DRAFT), ScriptedGenerator("t", TARGET)
    policy = build_policy("verify", policy_options("verify", score=score, threshold=tau))
    trace = Engine(draft, target, policy).solve("q?")
    assert [s.role for s in trace.steps] == ["target", "draft", "target"]
    assert [s.text for s in trace.steps] == [TARGET[0], DRAFT[1], TARGET[2]]
    assert all(s.verification is not None for s in trace.steps)
    assert all(s.decision.threshold == tau and s.decision.score is not None for s in trace.steps)
    assert trace.steps[1].decision.score <= tau < trace.steps[0].decision.score  # type: ignore[operator]
    assert trace.usage["target"].verify_calls == 3
    assert trace.kept_tokens == 3 + 1  # escalations keep the verified prefix
    assert policy.name == f"verify({score},tau={tau:g})"


def test_a_high_threshold_accepts_everything() -> None:
    draft, target = ScriptedGenerator("d", DRAFT), ScriptedGenerator("t", TARGET)
    trace = Engine(draft, target, VerifyPolicy("disagree", 1.0)).solve("q?")
    assert trace.acceptance_rate == 1.0
    assert target.calls == []  # verified, never asked to write


@pytest.mark.parametrize(
    ("values", "names", "message"),
    [
        ({"threshold": 1.0, "target_rate": 0.2}, ("threshold", "target_rate"), "either {threshold} or"),
        ({"threshold": 1.0, "score": "vibes"}, ("score",), "Unknown verification {score} 'vibes'"),
        ({"target_rate": 1.5}, ("target_rate",), "{target_rate} must be within [0, 1]"),
        ({"threshold": 1.0, "calibration": "x.json"}, ("calibration", "target_rate"), "applies with"),
    ],
)
def test_option_errors_name_their_options(
    values: dict[str, Any], names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(PolicyOptionError) as err:
        policy_options("verify", values)
    assert err.value.options == names
    assert message in err.value.template


def test_neither_threshold_nor_rate_takes_the_measured_default_rate() -> None:
    from arbitrage.policies.options import DEFAULT_VERIFY_RATE, override

    options = policy_options("verify")
    assert (options.threshold, options.target_rate) == (None, DEFAULT_VERIFY_RATE)
    assert override("verify", options, {"threshold": 1.5}).target_rate is None  # a threshold replaces it
    # solve's and serve's default: verify at the default rate, from the packaged calibration table
    _, solved = policy_choice("verify", p=0.5, seed=0, path=None, tau=None, target_rate=None, threshold=None,
                              target_samples=1, diagnose=False, score=None, calibration=None)  # fmt: skip
    assert solved == VerifyOptions(target_rate=DEFAULT_VERIFY_RATE)
    policy = build_policy("verify", solved)
    assert policy.name.startswith("verify(") and "0.6" in policy.name


def test_cli_flags_reach_the_options_and_are_named_as_flags() -> None:
    name, options = policy_choice("verify", score="target_nll", threshold=2.0, target_rate=None, p=0.5)
    assert (name, options) == ("verify", VerifyOptions(score="target_nll", threshold=2.0))
    with pytest.raises(ConfigError, match=r"either --threshold or --target-rate"):
        policy_choice("verify", threshold=1.0, target_rate=0.3)
    with pytest.raises(ConfigError, match=r"--score applies to --policy verify, early only"):
        policy_choice("random", p=0.5, score="gsi")
    assert policy_choice("rsd", threshold=None)[1].threshold == 0.7  # rsd's default when not given


def test_sweep_points_vary_the_threshold() -> None:
    points = parse_points("verify:threshold=0.5,1.0; verify:target_rate=0.3")
    assert [p.slug for p in points] == [
        "verify_threshold=0.5",
        "verify_threshold=1",
        "verify_target_rate=0.3",
    ]
    options = point_options(points[1], {"score": "disagree", "seed": 3, "path": None})
    assert options == VerifyOptions(score="disagree", threshold=1.0)


def rows() -> list[dict[str, Any]]:
    """Synthetic step pairs: target mean logprob −0.0 … −0.99, draft −0.5 everywhere."""
    return [
        {"t_mean_logprob": -i / 100, "t_min_logprob": -i / 50, "t_agreement": 1 - i / 100,
         "t_first_divergence": i % 10 if i % 10 else None, "t_tokens": 10, "draft_logprobs": [-0.5, -0.5]}
        for i in range(100)
    ] + [{"t_mean_logprob": None, "draft_logprobs": [-1.0]}]  # fmt: skip


def test_the_calibration_table_holds_each_score_quantiles() -> None:
    table = build_calibration(rows(), quantiles=(0.0, 0.5, 1.0))
    assert set(table) == {"gsi", "target_nll", "target_min_nll", "disagree", "divergence"}
    assert table["target_nll"] == [(0.0, 0.0), (0.5, pytest.approx(0.495)), (1.0, pytest.approx(0.99))]
    assert table["gsi"][0] == (0.0, pytest.approx(-0.5)) and table["gsi"][2] == (1.0, pytest.approx(0.49))
    assert table["target_min_nll"][2] == (1.0, pytest.approx(1.98))
    # τ for a rate: about that share of the calibration steps scores above it
    full = build_calibration(rows())
    tau = tau_for_rate(full["target_nll"], 0.2)
    scores = [-r["t_mean_logprob"] for r in rows() if r["t_mean_logprob"] is not None]
    assert sum(s > tau for s in scores) / len(scores) == pytest.approx(0.2, abs=0.011)
    assert tau_for_rate(full["disagree"], 0.0) == pytest.approx(0.99)
    assert tau_for_rate(full["disagree"], 1.0) == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="No step pair has the target's verification"):
        build_calibration([{"draft_logprobs": [-1.0]}])


def test_target_rate_reads_tau_from_a_calibration_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    write_calibration({"disagree": [(0.0, 0.0), (0.5, 0.2), (1.0, 0.8)]}, path)
    policy = build_policy(
        "verify", policy_options("verify", score="disagree", target_rate=0.5, calibration=path)
    )
    assert isinstance(policy, VerifyPolicy)
    assert policy.tau == pytest.approx(0.2)
    assert policy.name == "verify(disagree,tau=0.2,rate=0.5)"
    with pytest.raises(PolicyOptionError, match="has no row for score 'target_nll'") as err:
        build_policy("verify", policy_options("verify", target_rate=0.5, calibration=str(path)))
    assert err.value.options == ("threshold",)
    with pytest.raises(PolicyOptionError, match="No calibration table at") as err:
        build_policy(
            "verify", policy_options("verify", target_rate=0.5, calibration=str(tmp_path / "no.json"))
        )
    assert err.value.options == ("calibration",)


def test_calibrate_verify_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arbitrage.cli.main import app

    data = tmp_path / "pairs"
    data.mkdir()
    seen: list[Path] = []

    def read_pairs(folder: Path) -> list[dict[str, Any]]:
        seen.append(folder)
        return rows()

    monkeypatch.setattr("arbitrage.router.data.read_pairs", read_pairs)
    out = tmp_path / "cal.json"
    result = CliRunner().invoke(app, ["calibrate-verify", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert seen == [data]
    assert "100 of 101 step pairs" in result.output
    table = json.loads(out.read_text())
    assert len(table["gsi"]) == 101 and table["target_nll"][-1] == [1.0, pytest.approx(0.99)]


def test_target_rate_without_an_installed_table_asks_for_a_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("arbitrage.policies.verify.CALIBRATION_FILE", "no_such_table.json")
    with pytest.raises(PolicyOptionError) as err:
        build_policy("verify", policy_options("verify", target_rate=0.3))
    assert err.value.options == ("target_rate", "threshold", "calibration")
    assert "give {threshold} τ" in err.value.template


def test_the_installed_calibration_table_serves_target_rate_without_a_file() -> None:
    table, where = load_calibration(None)
    assert where == "arbitrage/data/verify_calibration.json"
    assert set(table) == {"gsi", "target_nll", "target_min_nll", "disagree", "divergence"}
    low = build_policy("verify", policy_options("verify", target_rate=0.2))
    high = build_policy("verify", policy_options("verify", target_rate=0.6))
    assert isinstance(low, VerifyPolicy) and isinstance(high, VerifyPolicy)
    assert low.score == "target_nll"  # the default score
    assert low.tau > high.tau  # escalating more steps needs a lower threshold
