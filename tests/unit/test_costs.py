"""The cost model: fitting per-token costs from records recovers the costs they were made with, the
predictions and projections follow, and bad cost files are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.costs import CostModel, RoleCosts, read_costs
from arbitrage.errors import ConfigError
from arbitrage.evaluation.costs import (
    cost_report,
    fit_costs,
    predict_latency,
    predict_points,
    project_speedups,
)
from arbitrage.evaluation.records import ProblemRecord, write_records

TRUE = CostModel(RoleCosts(0.03, 0.004, 0.05), RoleCosts(0.05, 0.012, 0.2))


def record(
    i: int, draft: tuple[int, int, int], target: tuple[int, int, int], **more: object
) -> ProblemRecord:
    """A record whose seconds are exactly what TRUE costs say (draft calls = steps)."""
    d_tokens, d_prefill, steps = draft
    t_tokens, t_prefill, t_calls = target
    r = ProblemRecord(
        id=str(i), dataset="t", gold="1", steps=steps, draft_generated_tokens=d_tokens,
        draft_prefill_tokens=d_prefill, target_generated_tokens=t_tokens, target_prefill_tokens=t_prefill,
        target_calls=t_calls, **more,  # type: ignore[arg-type]
    )  # fmt: skip
    d = TRUE.draft.seconds(d_tokens, d_prefill, steps if d_tokens else 0)
    t = TRUE.target.seconds(t_tokens, t_prefill, t_calls)
    return ProblemRecord(**{**r.to_dict(), "draft_seconds": d, "target_seconds": t, "latency_seconds": d + t})


def records() -> dict[str, list[ProblemRecord]]:
    target = [record(i, (0, 0, 6), (200 + 13 * i, 150 + 7 * i, 6 + i % 3)) for i in range(12)]
    draft = [record(i, (250 + 11 * i, 160 + 5 * i, 5 + i % 4), (0, 0, 0)) for i in range(12)]
    mixed = [record(i, (200 + 9 * i, 180, 6), (90 + 5 * i, 60 + i, 3 + i % 2)) for i in range(12)]
    return {"target": target, "draft": draft, "mixed": mixed}


def test_the_fit_recovers_the_costs_the_records_were_made_with() -> None:
    fit = fit_costs([r for rs in records().values() for r in rs])
    for role in ("draft", "target"):
        got, want = getattr(fit, role), getattr(TRUE, role)
        assert got.decode == pytest.approx(want.decode, rel=1e-6)
        assert got.evaluate == pytest.approx(want.evaluate, rel=1e-6)
        assert got.call == pytest.approx(want.call, rel=1e-5)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.ratio == pytest.approx(0.6)


def test_predictions_equal_the_measured_means_for_exact_records() -> None:
    preds = predict_points(records(), TRUE)
    assert all(abs(p.error) < 1e-9 for p in preds)


def test_projected_speedups_grow_as_the_draft_gets_cheaper() -> None:
    proj = {p.point: p for p in project_speedups(records(), TRUE, [0.05, 0.3, 0.6, 1.0])}
    mixed = proj["mixed"].speedups
    assert list(mixed) == sorted(mixed, reverse=True)
    # at the measured ratio (0.6) the projection is the prediction
    here = predict_latency
    base = sum(here(r, TRUE) for r in records()["target"]) / 12
    mine = sum(here(r, TRUE) for r in records()["mixed"]) / 12
    assert mixed[2] == pytest.approx(base / mine)
    crossing = proj["mixed"].break_even
    if crossing is not None:
        assert 0.05 <= crossing <= 1.0


def test_cost_report_writes_the_section_and_the_plot(tmp_path: Path) -> None:
    recs = records()
    rows = []
    for key, rs in recs.items():
        (tmp_path / key).mkdir()
        write_records(tmp_path / key / "records.jsonl", rs)
        rows.append({"point": key})
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    measured = tmp_path / "bench.json"
    measured.write_text(
        json.dumps(CostModel(RoleCosts(0.001, 0.0002), RoleCosts(0.02, 0.001), "bench").to_dict())
    )
    text = cost_report(tmp_path, measured)
    assert "predicted mean s" in text and "projected, not measured" in text
    assert (tmp_path / "speedup_vs_cost_ratio.png").stat().st_size > 1000
    data = json.loads((tmp_path / "costs.json").read_text())
    assert {"fit", "predictions", "projections", "recosted"} <= set(data)


def test_bad_cost_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_costs(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a cost model"):
        read_costs(bad)
    bad.write_text('{"draft": {"decode": 1}}')
    with pytest.raises(ConfigError, match="not a cost model"):
        read_costs(bad)


def test_too_few_records_cannot_be_fitted() -> None:
    with pytest.raises(ConfigError, match="too few"):
        fit_costs(records()["target"][:2])
