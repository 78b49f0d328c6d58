"""The cost model: fitting per-token costs from records recovers the costs they were made with, the
predictions and projections follow, and bad cost files are one-line errors."""

from __future__ import annotations

import json
import math
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


VERIFYING = CostModel(
    RoleCosts(0.03, 0.004, 0.05), RoleCosts(0.05, 0.012, 0.2, verify_evaluate=0.009, verify_call=0.4)
)


def verifying_records() -> dict[str, list[ProblemRecord]]:
    """Points whose target also verifies draft steps, timed exactly by VERIFYING."""
    out: dict[str, list[ProblemRecord]] = {}
    for key, (verified, verifications) in {"none": (0, 0), "some": (120, 3), "many": (300, 9)}.items():
        rows = []
        for i in range(12):
            d = (180 + 7 * i, 150 + 3 * i, 6 + i % 3)
            t = (60 + 11 * i, 40 + 5 * i, 2 + i % 2)
            v = (verified + 13 * i * bool(verified), verifications + i % 3 * bool(verified))
            r = ProblemRecord(
                id=str(i), dataset="t", gold="1", steps=d[2], draft_generated_tokens=d[0],
                draft_prefill_tokens=d[1], target_generated_tokens=t[0], target_prefill_tokens=t[1],
                target_calls=t[2], verify_prefill_tokens=v[0], verify_calls=v[1],
            )  # fmt: skip
            ds = VERIFYING.draft.seconds(*d)
            ts = VERIFYING.target.seconds(*t, *v)
            rows.append(ProblemRecord(**{**r.to_dict(), "draft_seconds": ds, "target_seconds": ts,
                                         "latency_seconds": ds + ts}))  # fmt: skip
        out[key] = rows
    return out


def test_the_fit_tells_a_verification_from_a_generation_call() -> None:
    fit = fit_costs([r for rs in verifying_records().values() for r in rs])
    assert fit.target.verify_evaluate == pytest.approx(0.009, rel=1e-4)
    assert fit.target.verify_call == pytest.approx(0.4, rel=1e-4)
    assert fit.target.call == pytest.approx(0.2, rel=1e-4)
    assert fit.draft.verify_call is None  # the draft verifies nothing: no figure is made up for it


def test_records_without_verification_leave_its_costs_unknown() -> None:
    fit = fit_costs([r for rs in records().values() for r in rs])
    assert fit.target.verify_evaluate is None and fit.target.verify_call is None


def test_each_point_is_predicted_by_a_fit_that_left_it_out() -> None:
    recs = verifying_records()
    fit = fit_costs([r for rs in recs.values() for r in rs])
    predictions = predict_points(recs, fit, held_out=True)
    # exact records: the other points alone pin the same costs, so the held-out predictions are exact too
    assert all(abs(p.held_out_error) < 1e-6 for p in predictions)
    # a point whose work the others never did cannot be predicted from them: no figure, not a wrong one
    two = {key: records()[key] for key in ("target", "draft")}
    alone = predict_points(two, fit_costs([r for rs in two.values() for r in rs]), held_out=True)
    assert all(math.isnan(p.held_out) for p in alone)


def test_a_cost_file_without_verification_figures_charges_verification_as_batched_evaluation() -> None:
    plain = RoleCosts(0.05, 0.012, 0.2)
    assert plain.seconds(10, 20, 3, 30, 2) == pytest.approx(plain.seconds(10, 50, 5))
    data = json.loads(json.dumps(VERIFYING.to_dict()))
    again = CostModel.from_dict(data)
    assert again.target.verify_call == 0.4 and again.target.seconds(
        1, 1, 1, 1, 1
    ) == VERIFYING.target.seconds(1, 1, 1, 1, 1)
    assert VERIFYING.target.scaled(2.0).verify_call == pytest.approx(0.8)


def test_the_report_shows_the_verification_costs_and_the_held_out_errors(tmp_path: Path) -> None:
    rows = []
    for key, rs in verifying_records().items():
        (tmp_path / key).mkdir()
        write_records(tmp_path / key / "records.jsonl", rs)
        rows.append({"point": key})
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    text = cost_report(tmp_path)
    assert "s/verification" in text and "held out: predicted s" in text
    assert "3 of 3 points within 5%" in text
    data = json.loads((tmp_path / "costs.json").read_text())
    assert all(abs(p["held_out_error"]) < 1e-6 for p in data["predictions"])
