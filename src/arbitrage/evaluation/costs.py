"""A cost model of a solve: per-token costs fitted from records, predicted latency, projected speedups.

A solve's cost latency (``ProblemRecord.latency_seconds``) is the sum of its model calls plus policy
(PRM / router) seconds. Each model's call seconds are modelled as linear in what the call did:

    seconds(model) = decode · decoded tokens + evaluate · evaluated tokens + call · calls
                     + verify_evaluate · verified tokens + verify_call · verification calls

- ``decode``: seconds per token written one at a time (the target's kept-prefix tokens are not decoded);
- ``evaluate``: seconds per token evaluated in a batch (prefill of the context the KV cache did not hold);
- ``call``: fixed seconds per call (tokenising, chat template, Python work);
- ``verify_evaluate`` / ``verify_call``: the same for the target's verification of draft steps, a call
  of its own kind (one batched pass over a whole step, every row read), fitted on its own (the draft
  verifies nothing).

:func:`fit_costs` fits the coefficients per role (draft, target) by non-negative least squares over
per-problem records, each weighted by 1/sqrt(seconds): a solve's timing noise grows with its length,
so the long ones would otherwise set the fit and the short points' means would carry its error (on the
v2 GSM8K sweep this split and weighting take the worst point's error from 8.0% to 3.4%, and to 3.8%
held out). :func:`predict_latency` applies a :class:`CostModel` to a record (policy seconds are taken
as measured); :func:`predict_points` also predicts each point from a fit that left it out, the check
that the model predicts work it was not fitted on.

The same coefficients can be *measured* directly for any pair of
backends (:mod:`arbitrage.evaluation.costbench`, ``arbitrage bench-costs``), and a sweep re-costed
under them: those figures are **projected**, never measured.

:func:`project_speedups` asks what each point would gain over target-only if the draft cost a given
fraction of the target per token (``ratio``: draft decode / target decode), every draft coefficient
scaled by the same factor and every token count kept as measured. A point's break-even ratio is the
ratio at which its projected speedup is 1.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.costs import CostModel, RoleCosts, read_costs
from arbitrage.errors import ConfigError
from arbitrage.evaluation.records import ProblemRecord

__all__ = ["CostModel", "RoleCosts", "read_costs"]

ROLES = ("draft", "target")


def role_features(record: ProblemRecord, role: str) -> tuple[float, float, float, float, float]:
    """(decoded tokens, evaluated tokens, calls, verified tokens, verification calls) of one role in a
    solve, read from its record (the draft verifies nothing: its last two are 0)."""
    if role == "target":
        decoded = record.target_generated_tokens - record.kept_tokens
        return (
            float(decoded),
            float(record.target_prefill_tokens),
            float(record.target_calls),
            float(record.verify_prefill_tokens),
            float(record.verify_calls),
        )
    if role == "draft":
        calls = record.steps if record.draft_generated_tokens else 0
        return (
            float(record.draft_generated_tokens),
            float(record.draft_prefill_tokens),
            float(calls),
            0.0,
            0.0,
        )
    raise ConfigError(f"unknown role {role!r} (draft or target)")


def _role_seconds(record: ProblemRecord, role: str) -> float:
    return record.target_seconds if role == "target" else record.draft_seconds


_WEIGHT_FLOOR = 0.01  # seconds: a record shorter than this weighs as one of this length


def fit_costs(records: Iterable[ProblemRecord]) -> CostModel:
    """Fit each role's coefficients by weighted non-negative least squares over completed records with
    work (rows weighted by 1/sqrt(seconds), see the module docstring)."""
    from scipy.optimize import nnls

    usable = [r for r in records if r.completed]
    fitted: dict[str, RoleCosts] = {}
    r2: dict[str, float] = {}
    for role in ROLES:
        rows = [(role_features(r, role), _role_seconds(r, role)) for r in usable]
        rows = [(x, y) for x, y in rows if x[0] + x[1] + x[3] > 0]  # decoded, evaluated or verified tokens
        if len(rows) < 3:
            raise ConfigError(f"too few records with {role} work to fit costs ({len(rows)}; need 3)")
        a = np.array([x for x, _ in rows], dtype=float)
        y = np.array([y for _, y in rows], dtype=float)
        weight = 1.0 / np.sqrt(np.maximum(y, _WEIGHT_FLOOR))
        coef, _ = nnls(a * weight[:, None], y * weight)
        decode, evaluate, call = (float(c) for c in coef[:3])
        verifies = bool(a[:, 3:].any())  # else these records (the draft's) say nothing of verification
        fitted[role] = RoleCosts(
            decode,
            evaluate,
            call,
            verify_evaluate=float(coef[3]) if verifies else None,
            verify_call=float(coef[4]) if verifies else None,
        )
        residual = y - a @ coef
        total = float(((y - y.mean()) ** 2).sum())
        r2[role] = 1.0 - float((residual**2).sum()) / total if total > 0 else math.nan
    return CostModel(
        draft=fitted["draft"],
        target=fitted["target"],
        source="fit",
        r2=min(r2.values()),
        r2_by_role=r2,
        problems=len(usable),
    )


def predict_latency(record: ProblemRecord, costs: CostModel) -> float:
    """Predicted cost latency of a solve: both models' predicted seconds plus its measured policy seconds."""
    return record.policy_seconds + costs.seconds({role: role_features(record, role) for role in ROLES})


@dataclass(frozen=True, slots=True)
class PointPrediction:
    """Measured against predicted mean latency of one sweep point (report, ``arbitrage report``)."""

    point: str  # the point's key, e.g. "verify_target_rate=0.6"
    problems: int  # completed problems
    measured: float  # mean measured latency, seconds
    predicted: float  # mean predicted latency, seconds
    held_out: float = math.nan  # mean latency predicted by a fit to every other point's records

    @property
    def error(self) -> float:
        """Relative error of the prediction (predicted / measured − 1)."""
        return self.predicted / self.measured - 1.0 if self.measured > 0 else math.nan

    @property
    def held_out_error(self) -> float:
        """Relative error of the held-out prediction (NaN where none was made)."""
        return self.held_out / self.measured - 1.0 if self.measured > 0 else math.nan


def predict_points(
    records: Mapping[str, Sequence[ProblemRecord]], costs: CostModel, held_out: bool = False
) -> list[PointPrediction]:
    """Measured and predicted mean latency of every point (completed problems only). With
    ``held_out``, each point is also predicted by a fit to the other points' records (where they leave
    enough to fit)."""
    out = []
    for key, recs in records.items():
        done = [r for r in recs if r.completed]
        if not done:
            continue
        other = math.nan
        if held_out:
            try:
                rest = fit_costs([r for k, rs in records.items() if k != key for r in rs])
            except ConfigError:  # the others alone leave a role without work
                rest = None
            if rest is not None:
                other = float(np.mean([predict_latency(r, rest) for r in done]))
        out.append(
            PointPrediction(
                point=key,
                problems=len(done),
                measured=float(np.mean([r.latency_seconds for r in done])),
                predicted=float(np.mean([predict_latency(r, costs) for r in done])),
                held_out=other,
            )
        )
    return out


def projected_latency(records: Sequence[ProblemRecord], costs: CostModel, ratio: float) -> float:
    """Mean latency of these records if the draft's per-token cost were ``ratio`` × the target's decode."""
    factor = ratio / costs.ratio if costs.ratio > 0 else 1.0
    scaled = CostModel(draft=costs.draft.scaled(factor), target=costs.target)
    done = [r for r in records if r.completed]
    return float(np.mean([predict_latency(r, scaled) for r in done])) if done else math.nan


@dataclass(frozen=True, slots=True)
class Projection:
    """A point's projected speedup over target-only across draft/target cost ratios (projected figures)."""

    point: str
    ratios: tuple[float, ...]  # draft decode cost / target decode cost
    speedups: tuple[float, ...]  # [ratios] target-only mean latency / the point's, both projected
    break_even: float | None  # the ratio where the speedup crosses 1 (None: never in the range)


def project_speedups(
    records: Mapping[str, Sequence[ProblemRecord]],
    costs: CostModel,
    ratios: Sequence[float],
    baseline: str = "target",
) -> list[Projection]:
    """Each point's projected speedup over ``baseline`` (target-only) at each cost ratio."""
    if baseline not in records:
        raise ConfigError(f"no {baseline!r} point to project speedups against")
    base = projected_latency(records[baseline], costs, 1.0)  # target-only: the draft never runs
    out = []
    for key, recs in records.items():
        if key == baseline:
            continue
        speedups = tuple(base / projected_latency(recs, costs, r) for r in ratios)
        out.append(Projection(key, tuple(ratios), speedups, _crossing(ratios, speedups)))
    return out


def _crossing(ratios: Sequence[float], speedups: Sequence[float]) -> float | None:
    """The ratio where ``speedups`` crosses 1, interpolated linearly (the first crossing)."""
    pairs = list(zip(ratios, speedups, strict=True))
    for (r0, s0), (r1, s1) in itertools.pairwise(pairs):
        if (s0 - 1.0) * (s1 - 1.0) <= 0 and s0 != s1:
            return r0 + (1.0 - s0) * (r1 - r0) / (s1 - s0)
    return None


def default_ratios() -> list[float]:
    """Cost ratios from 0.05 to 1 (the projection plot's x axis)."""
    return [round(float(r), 3) for r in np.linspace(0.05, 1.0, 39)]


def _load_sweep_records(sweep_dir: Path) -> dict[str, list[ProblemRecord]]:
    """Every point's records that exist (a point without ``records.jsonl`` is left out)."""
    from arbitrage.evaluation.records import RECORDS, read_records
    from arbitrage.evaluation.report import _sweep_rows

    out = {}
    for row in _sweep_rows(sweep_dir):
        path = sweep_dir / row["point"] / RECORDS
        if path.is_file():
            out[row["point"]] = read_records(path)
    if not out:
        raise ConfigError(f"{sweep_dir} has no records.jsonl under its points")
    return out


def cost_report(
    sweep_dir: Path, costs_file: Path | None = None, ratios: Sequence[float] | None = None
) -> str:
    """The cost-model section of a sweep's report: fitted costs, predicted vs measured latency per
    point, projected speedups over target-only by cost ratio (``speedup_vs_cost_ratio.png``), and with
    ``costs_file`` every point re-costed under measured costs (projected). Writes ``costs.json`` and
    ``costs.md`` into ``sweep_dir``; returns the Markdown."""
    import json

    records = _load_sweep_records(sweep_dir)
    fit = fit_costs([r for recs in records.values() for r in recs])
    ratios = list(ratios or default_ratios())
    predictions = predict_points(records, fit, held_out=True)

    def verify_figure(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "## Cost model (fitted from this sweep's records)",
        "",
        "seconds(model) = decode · decoded tokens + evaluate · evaluated tokens + call · calls + verify "
        "evaluate · verified tokens + verify call · verifications, fitted by non-negative least squares "
        f"over {fit.problems} per-problem records, each weighted by 1/sqrt(seconds) "
        f"(R² draft {fit.r2_by_role['draft']:.3f}, target {fit.r2_by_role['target']:.3f}).",  # type: ignore[index]
        "",
        "| model | decode s/token | evaluate s/token | s/call | verify s/token | s/verification |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, role in (("draft", fit.draft), ("target", fit.target)):
        lines.append(
            f"| {name} | {role.decode:.4f} | {role.evaluate:.4f} | {role.call:.3f} | "
            f"{verify_figure(role.verify_evaluate, 4)} | {verify_figure(role.verify_call, 3)} |"
        )
    lines += [
        "",
        f"Draft/target decode cost ratio: {fit.ratio:.2f}.",
        "",
        "Held out: the point predicted by a fit to every other point's records (work it was not fitted on).",
        "",
        "| point | problems | measured mean s | predicted mean s | error | held out: predicted s | error |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {p.point} | {p.problems} | {p.measured:.2f} | {p.predicted:.2f} | {100 * p.error:+.1f}% | "
        + (
            f"{p.held_out:.2f} | {100 * p.held_out_error:+.1f}% |"
            if not math.isnan(p.held_out)
            else "- | - |"
        )
        for p in predictions
    ]
    worst = max(abs(p.error) for p in predictions)
    held = [abs(p.held_out_error) for p in predictions if not math.isnan(p.held_out)]
    within = sum(abs(p.error) <= 0.05 for p in predictions)
    lines += [
        "",
        f"Largest prediction error: {100 * worst:.1f}% ({within} of {len(predictions)} points within 5%; "
        "goal: within 5%)" + (f"; held out: {100 * max(held):.1f}%." if held else "."),
        "",
    ]
    data: dict[str, Any] = {
        "fit": fit.to_dict(),
        "predictions": [
            dataclasses.asdict(p) | {"error": p.error, "held_out_error": p.held_out_error}
            for p in predictions
        ],
    }
    if "target" in records:
        projections = project_speedups(records, fit, ratios)
        data["projections"] = [dataclasses.asdict(p) for p in projections]
        _plot_projections(projections, fit.ratio, sweep_dir / "speedup_vs_cost_ratio.png")
        lines += [
            "### Projected speedup over target-only by draft/target cost ratio (projected, not measured)",
            "",
            "Every draft coefficient scaled to the ratio, token counts as measured "
            "(`speedup_vs_cost_ratio.png`).",
            "",
            "| point | at measured ratio | at 0.25 | at 0.1 | break-even ratio |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for p in projections:
            at = {r: s for r, s in zip(p.ratios, p.speedups, strict=True)}
            here = projected_latency(records["target"], fit, 1.0) / projected_latency(
                records[p.point], fit, fit.ratio
            )
            even = f"{p.break_even:.2f}" if p.break_even is not None else "none in 0.05-1"
            quarter, tenth = _nearest(at, 0.25), _nearest(at, 0.1)
            lines.append(f"| {p.point} | {here:.2f}x | {quarter:.2f}x | {tenth:.2f}x | {even} |")
        lines.append("")
    if costs_file is not None:
        given = read_costs(costs_file)
        recost = predict_points(records, given)
        base = next((p.predicted for p in recost if p.point == "target"), None)
        lines += [
            f"### Re-costed under {costs_file} ({given.source}: {given.machine or 'machine not stated'}) "
            "— projected, not measured",
            "",
            "| point | projected mean s | projected speedup vs target-only |",
            "| --- | ---: | ---: |",
        ]
        for q in recost:
            speed = f"{base / q.predicted:.2f}x" if base else "-"
            lines.append(f"| {q.point} | {q.predicted:.2f} | {speed} |")
        lines.append("")
        data["recosted"] = {"costs": given.to_dict(), "points": [dataclasses.asdict(p) for p in recost]}
    (sweep_dir / "costs.json").write_text(json.dumps(data, indent=1) + "\n")
    text = "\n".join(lines)
    (sweep_dir / "costs.md").write_text(text + "\n")
    return text


def _nearest(values: Mapping[float, float], ratio: float) -> float:
    return values[min(values, key=lambda r: abs(r - ratio))]


def _plot_projections(projections: Sequence[Projection], measured_ratio: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for p in projections:
        (line,) = ax.plot(p.ratios, p.speedups, label=p.point, linewidth=1.2)
        if p.break_even is not None:
            ax.plot([p.break_even], [1.0], "o", color=line.get_color(), markersize=4)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axvline(measured_ratio, color="grey", linestyle="--", linewidth=0.8)
    ax.text(measured_ratio, ax.get_ylim()[1], " measured ratio", va="top", fontsize=8, color="grey")
    ax.set_xlabel("draft / target per-token cost ratio")
    ax.set_ylabel("projected speedup over target-only")
    ax.set_title("Projected speedup by cost ratio (dots: break-even)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
