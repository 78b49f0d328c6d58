"""Per-problem records, errored problems, paired bootstrap intervals and the random control, on
hand-built records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arbitrage.evaluation.bootstrap import PointSamples, percentile_interval, resample_points
from arbitrage.evaluation.records import ProblemRecord, read_records, write_records
from arbitrage.evaluation.report import Point, build_report, random_lifts, versus_target
from arbitrage.evaluation.summary import summarize

ROOT = Path(__file__).resolve().parents[2]


def rec(i: int, correct: bool, latency: float = 10.0, steps: int = 4, draft_steps: int = 2,
        error: str | None = None) -> ProblemRecord:  # fmt: skip
    if error is not None:
        return ProblemRecord(id=str(i), dataset="toy", gold="1", error=error)
    return ProblemRecord(id=str(i), dataset="toy", gold="1", correct=correct, predicted="1" if correct else "2",
                         steps=steps, draft_steps=draft_steps, latency_seconds=latency)  # fmt: skip


def test_committed_records_load_old_and_errored_lines() -> None:
    folder = ROOT / "benchmarks" / "results" / "gsm8k_sweep" / "rsd_threshold=0.8"
    records = read_records(folder / "records.jsonl")
    assert len(records) == 100
    errored = [r for r in records if not r.completed]
    assert [r.id for r in errored] == ["60", "79"]
    assert errored[0].steps == 0 and errored[0].latency_seconds == 0.0  # absent keys take defaults
    line = json.loads((folder / "records.jsonl").open().readline())
    assert ProblemRecord.from_dict(line).to_dict() == line  # the same keys, in the same order
    live = read_records(ROOT / "benchmarks" / "results" / "eval_gsm8k20" / "target" / "records.jsonl")
    assert len(live) == 20 and all(r.completed for r in live)


def test_old_lines_missing_fields_take_defaults_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    record = ProblemRecord.from_dict({"id": 7, "gold": 3, "correct": True, "steps": 2, "future_key": 1})
    assert record.id == "7" and record.gold == "3" and record.correct and record.steps == 2
    assert record.dataset == "" and record.replayed_prm_calls == 0 and record.completed
    errored = rec(1, False, error="ValueError: boom")
    assert set(errored.to_dict()) == {"id", "dataset", "gold", "error", "correct", "predicted"}
    write_records(tmp_path / "r.jsonl", [record, errored])
    assert read_records(tmp_path / "r.jsonl") == [record, errored]


def test_errored_problems_are_excluded_from_accuracy_and_listed() -> None:
    records = [rec(0, True, 10), rec(1, False, 20), rec(2, True, 30), rec(3, False, error="AttributeError: x"),
               rec(4, False, error="BackendError: y")]  # fmt: skip
    summary = summarize(records, "rsd")
    assert (summary.problems, summary.errors, summary.completed, summary.correct) == (5, 2, 3, 2)
    assert summary.accuracy == pytest.approx(2 / 3)  # not 2 / 5: errored are not wrong answers
    assert summary.errored_ids == ("3", "4")
    assert summary.latency_mean_s == pytest.approx(20.0)
    assert summarize([r.to_dict() for r in records], "rsd") == summary  # JSON lines read the same


def samples(correct: list[int], latency: list[float] | None = None) -> PointSamples:
    n = len(correct)
    return PointSamples(
        completed=np.ones(n, dtype=bool),
        correct=np.asarray(correct, dtype=float),
        latency=np.asarray(latency or [1.0] * n),
        steps=np.full(n, 4.0),
        draft_steps=np.full(n, 2.0),
    )


def test_paired_interval_contains_the_true_difference() -> None:
    # B is right wherever A is, plus on 10 of 200 problems: the true difference is 0.05, and pairing
    # makes the interval narrow (an unpaired bootstrap of two 0.5-ish accuracies would be ±0.1 wide)
    rng = np.random.default_rng(1)
    a = (rng.random(200) < 0.5).astype(int)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:10]] = 1
    resampled = resample_points({"a": samples(list(a)), "b": samples(list(b))}, resamples=2000, seed=0)
    diff = percentile_interval(resampled["b"].accuracy - resampled["a"].accuracy)
    assert diff.contains(0.05) and not diff.contains(0.0)
    assert diff.low is not None and diff.high is not None and diff.high - diff.low < 0.07


def test_interval_includes_zero_without_a_difference_and_excludes_it_with_a_clear_one() -> None:
    rng = np.random.default_rng(2)
    a = list((rng.random(100) < 0.5).astype(int))
    same = resample_points({"a": samples(a), "b": samples(a)}, resamples=500)
    assert percentile_interval(same["b"].accuracy - same["a"].accuracy).contains(0.0)
    slow, fast = [20.0] * 100, [10.0 + (i % 3) for i in range(100)]
    speed = resample_points({"slow": samples(a, slow), "fast": samples(a, fast)}, resamples=500)
    ratio = percentile_interval(speed["slow"].latency / speed["fast"].latency)
    assert ratio.low is not None and ratio.low > 1.5 and not ratio.contains(1.0)


def test_random_lift_interpolates_between_bracketing_control_points() -> None:
    def point(family: str, accuracy: float, acceptance: float) -> Point:
        return Point(family, family, accuracy, acceptance, 1.0, 1.0, 1 - acceptance, 0, None)

    points = [point("draft", 0.2, 1.0), point("target", 0.6, 0.0), point("random", 0.3, 0.5),
              point("router", 0.5, 0.75), point("rsd", 0.3, 0.25)]  # fmt: skip
    lifts = {r["family"]: r for r in random_lifts(points)}
    assert lifts["router"]["random_accuracy"] == pytest.approx(0.25)  # between random 0.5 and draft 1.0
    assert lifts["router"]["lift"] == pytest.approx(0.25)
    assert lifts["rsd"]["random_accuracy"] == pytest.approx(0.45)  # between target 0.0 and random 0.5
    assert lifts["rsd"]["lift"] == pytest.approx(-0.15)


def test_versus_target_pairs_every_point_with_target_only() -> None:
    def point(family: str, accuracy: float, acceptance: float, latency: float) -> Point:
        return Point(family, family, accuracy, acceptance, latency, latency, 1 - acceptance, 0, None)

    points = [
        point("draft", 0.2, 1.0, 10.0),
        point("target", 0.6, 0.0, 40.0),
        point("verify", 0.5, 0.4, 50.0),
    ]
    rows = {r["family"]: r for r in versus_target(points)}
    assert set(rows) == {"draft", "verify"}  # every point but the target itself
    assert rows["verify"]["difference"] == pytest.approx(-0.1)
    assert rows["verify"]["speedup"] == pytest.approx(0.8)  # slower than the target alone
    assert rows["draft"]["speedup"] == pytest.approx(4.0)
    assert versus_target(points[:1] + points[2:]) == []  # no target-only point: nothing to pair with


def write_sweep(tmp_path: Path, points: dict[str, tuple[str, list[ProblemRecord]]]) -> None:
    rows = []
    for key, (family, records) in points.items():
        (tmp_path / key).mkdir()
        write_records(tmp_path / key / "records.jsonl", records)
        summary = summarize(records, key)
        rows.append({"point": key, "policy_name": family, "param": None, "value": None, **summary.to_dict()})
    (tmp_path / "sweep.json").write_text(json.dumps(rows))


def test_report_lists_errored_problems_and_puts_intervals_on_every_comparison(tmp_path: Path) -> None:
    n = 60
    draft = [rec(i, i % 5 == 0, 10, 4, 4) for i in range(n)]  # 0.2, acceptance 1
    target = [rec(i, i % 5 != 4, 40, 4, 0) for i in range(n)]  # 0.8, acceptance 0
    rsd = [rec(i, i % 5 in (0, 1), 25) if i not in (3, 8) else rec(i, False, error="AttributeError: boom")
           for i in range(n)]  # fmt: skip
    router = [rec(i, i % 5 in (0, 1, 2), 20) for i in range(n)]
    random = [rec(i, i % 5 in (0, 1) or i % 10 == 2, 25) for i in range(n)]  # 0.5: the router's less 10%
    write_sweep(tmp_path, {"draft": ("draft", draft), "target": ("target", target), "rsd_t=0.5": ("rsd", rsd),
                           "router_r=0.5": ("router", router), "random_p=0.5": ("random", random)})  # fmt: skip
    report = build_report(tmp_path, resamples=300).read_text()
    assert "rsd_t=0.5: 2 errored (problem ids 3, 8)" in report
    assert "`AttributeError: boom`" in report
    assert "| rsd_t=0.5 | 60 | 2 | 0.414 [" in report  # 24 correct of 58 completed
    comparisons = json.loads((tmp_path / "comparisons.json").read_text())
    # compared on the 58 problems every point completed: 3 and 8 are left out of every point
    assert comparisons["bootstrap"] == {"resamples": 300, "seed": 0, "problems": 58, "paired": True}
    assert comparisons["excluded_from_comparisons"] == ["3", "8"]
    assert "every point on the same 58 problems" in report and "problem(s) 3, 8 errored" in report
    assert comparisons["errored"]["rsd_t=0.5"]["ids"] == ["3", "8"]
    speedups = {(r["policy"], r["versus"]): r for r in comparisons["speedups"]}
    lo, hi = speedups[("router", "rsd")]["speedup_ci"]
    assert lo <= speedups[("router", "rsd")]["speedup"] <= hi
    lifts = {r["point"]: r for r in comparisons["random_lift"]}
    assert lifts["router_r=0.5"]["lift"] == pytest.approx(36 / 58 - 30 / 58)  # vs random at acceptance 0.5
    assert lifts["router_r=0.5"]["lift_ci"][0] > 0 and lifts["router_r=0.5"]["verdict"] == "above random"
    assert all(r["difference_ci"] is not None for rows in comparisons["curves"].values() for r in rows)
    assert "Lift over random" in report and "above random" in report
    assert json.loads((tmp_path / "speedups.json").read_text())[0]["speedup_ci"] is not None
    against = {r["point"]: r for r in comparisons["versus_target"]}
    assert "target" not in against and against["router_r=0.5"]["difference"] == pytest.approx(-10 / 58)
    # the router is right only where the target is: every resample has it at or below the target
    assert against["router_r=0.5"]["difference_ci"][1] <= 0
    assert against["router_r=0.5"]["speedup"] == pytest.approx(2.0)  # 40 s / 20 s on every problem
    assert against["router_r=0.5"]["speed_verdict"] == "faster"
    assert (
        "## Each point against target-only" in report
        and "| router_r=0.5 | 0.500 | 0.621 | -0.172 |" in report
    )


def test_report_without_records_says_it_has_no_intervals(tmp_path: Path) -> None:
    rows = [{"point": f, "policy_name": f, "param": None, "value": None, "policy": f, "accuracy": acc,
             "acceptance_rate": a, "latency_mean_s": lat, "latency_median_s": lat, "target_call_rate": 1 - a,
             "escalations": 0, "errors": 1 if f == "rsd" else 0, "errored_ids": ["9"] if f == "rsd" else []}
            for f, acc, a, lat in [("draft", 0.2, 1.0, 10.0), ("target", 0.6, 0.0, 40.0), ("rsd", 0.5, 0.5, 20.0)]
            ]  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    report = build_report(tmp_path).read_text()
    assert "No intervals on the comparisons" in report
    assert "rsd: 1 errored (problem ids 9)" in report
    assert "| rsd | 0.500 | 0.500 | 0.400 | +0.100 | – | – |" in report
