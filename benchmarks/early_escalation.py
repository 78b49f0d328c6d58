"""Which decision points are worth it? Early escalation projected on collected steps, then measured live.

**Offline** (the default; seconds, no model): every decision point, before the draft writes (m = 0),
after its first m = 1, 2, 4, 8 tokens, or on its whole step, with each score the ``early`` policy has
at that point (the target's verification of the probe, or the draft's own confidence), at escalation
rates 0.1-0.9, costed on the collected step pairs of ``data/collect/gsm8k-train-v2`` under this machine's
measured costs (``benchmarks/results/costs/``, ``benchmarks/results/llama_kernels/``) by
:mod:`arbitrage.evaluation.early`. Per point: the projected speed over target-only, the escalation rate,
and how well the steps it escalates are chosen (AUROC for the PRM label ``y = 1[Δ > 0]`` and the outcome
label, the share of the positive advantage Δ it captures); the random control and the best possible
choice at each rate (steps ranked by Δ) for comparison, and the speed as the draft gets cheaper (draft /
target cost ratio 0.05-1). Writes ``OUT/projection.json`` and ``OUT/projection.png`` and prints a summary.
All of it is projected, not measured.

    python benchmarks/early_escalation.py                      # -> benchmarks/results/early_escalation/
    python benchmarks/early_escalation.py --write-calibration  # also rebuild the early policy's table

``--write-calibration`` rebuilds ``src/arbitrage/data/early_calibration.json`` (τ for ``--target-rate``
at every probe length) from the same pairs.

**Live** (``live``): the same decision points as ``arbitrage sweep`` points on GSM8K test problems,
with draft-only, target-only and ``verify`` on the same problems, resumable (rerun the same command), then
the measured speed and accuracy next to the projection. Hours on a 2-core CPU: schedule it.

    python benchmarks/early_escalation.py live --limit 50      # -> benchmarks/results/early_escalation/live
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.costs import read_costs
from arbitrage.evaluation.bootstrap import RESAMPLES, SEED
from arbitrage.evaluation.early import (
    FULL_STEP,
    BatchCurve,
    PairCosts,
    StepFigures,
    auroc,
    project,
)
from arbitrage.policies.early import (
    build_early_calibration,
    ordered_steps,
    probe_scores,
    write_early_calibration,
)
from arbitrage.policies.options import DRAFT_SCORES
from arbitrage.router.data import read_pairs

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "data" / "collect" / "gsm8k-train-v2"
COSTS = ROOT / "benchmarks" / "results" / "costs" / "qwen2.5-coder-0.5b__qwen2.5-coder-1.5b.json"
KERNELS = ROOT / "benchmarks" / "results" / "llama_kernels" / "kernels.json"
OUT = ROOT / "benchmarks" / "results" / "early_escalation"
CALIBRATION = ROOT / "src" / "arbitrage" / "data" / "early_calibration.json"
DRAFT, TARGET = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"

POINTS: tuple[int | None, ...] = (0, 1, 2, 4, 8, FULL_STEP)
# the target-side scores costed (divergence is left out: its ties, 0 for most probes, make a rate unreachable)
TARGET_SCORES = ("target_min_nll", "target_nll", "gsi")
RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TABLE_RATES = (0.2, 0.4)
RATIOS = tuple(round(0.05 * i, 2) for i in range(1, 21))
RANDOM_SEEDS = 20
# the live grid: (variant name, probe_tokens, score); each becomes early@NAME:target_rate=<rates>
LIVE_VARIANTS = (
    ("m0", 0, "draft_nll"),  # before the draft writes: its confidence on the last step
    ("m1", 1, "draft_entropy"),  # the draft's first token (the default): STEER's signal
    ("m4d", 4, "draft_nll"),  # the draft's first 4 tokens, its own confidence
    ("m2t", 2, "target_min_nll"),  # the target verifies 2 tokens: the first strong disagreement
    ("m8t", 8, "target_nll"),  # the target verifies 8 tokens
    ("m1r", 1, "random"),  # the control at m = 1: the random policy's draw, after a 1-token probe
    ("m0r", 0, "random"),  # the control before the draft writes (nothing of an escalated step is drafted)
)
LIVE_RATES = "0.2,0.4"


def label(m: int | None) -> str:
    return "whole step" if m is None else ("before the draft" if m == 0 else f"probe m={m}")


# -- offline ------------------------------------------------------------------------------------------


def load_costs(costs_path: Path, kernels_path: Path | None) -> tuple[PairCosts, str]:
    """This machine's costs: per-token figures from bench-costs, batch curves from the kernel table
    (flash attention on, tiled matmul on: the default build) where it has the two models."""
    costs = read_costs(costs_path)
    draft_batch = target_batch = None
    source = f"{costs_path.relative_to(ROOT)}"
    if kernels_path is not None and kernels_path.is_file():
        rows = {(r["model"], r["flash_attn"], r["tiled_mm"]): r for r in json.loads(kernels_path.read_text())}
        if (DRAFT, True, True) in rows and (TARGET, True, True) in rows:
            draft_batch = BatchCurve.from_kernels(rows[DRAFT, True, True], costs.draft.evaluate)
            target_batch = BatchCurve.from_kernels(rows[TARGET, True, True], costs.target.evaluate)
            source += f" + batch sizes from {kernels_path.relative_to(ROOT)}"
    return PairCosts.from_model(costs, draft_batch, target_batch), source


def scores_at(
    steps: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]], m: int | None
) -> list[dict[str, float]]:
    probe = 10**6 if m is None else m  # the whole step: every token
    return [probe_scores(row, probe, previous) for row, previous in steps]


def threshold(values: Sequence[float | None], rate: float) -> float:
    """τ escalating about ``rate`` of all steps (unscored steps never escalate): the 1 − rate quantile
    with unscored steps below every scored one, as the calibration table does."""
    scored = sorted(v for v in values if v is not None)
    ordered = [-math.inf] * (len(values) - len(scored)) + scored
    position = (1 - rate) * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    a, b = ordered[low], ordered[high]
    return a if a == b or math.isinf(a) else a + (b - a) * (position - low)


def offline(args: argparse.Namespace) -> dict[str, Any]:
    rows = read_pairs(args.pairs)
    steps = ordered_steps(r for r in rows if r.get("t_tokens") is not None and r.get("draft_logprobs"))
    figures = [StepFigures.of(row) for row, _ in steps]
    # solves: consecutive steps of one question
    solves: list[list[int]] = []
    for k, (_, previous) in enumerate(steps):
        if previous is None or not solves:
            solves.append([])
        solves[-1].append(k)
    solve_figures = [[figures[k] for k in solve] for solve in solves]
    index = {(s, i): k for s, solve in enumerate(solves) for i, k in enumerate(solve)}
    costs, cost_source = load_costs(args.costs, args.kernels)
    positive = math.fsum(max(f.delta, 0.0) for f in figures)
    outcome = [f.y_outcome for f in figures]
    has_outcome = all(y is not None for y in outcome)

    def run(m: int | None, chosen: Sequence[bool], side: bool, pair: PairCosts = costs) -> dict[str, Any]:
        projection = project(solve_figures, lambda s, i: chosen[index[s, i]], m, pair, target_side=side)
        up = [f for f, c in zip(figures, chosen, strict=True) if c]
        return {
            "speedup": projection.speedup,
            "escalation_rate": projection.escalation_rate,
            "delta_captured": math.fsum(max(f.delta, 0.0) for f in up) / positive if positive else math.nan,
            "y_precision": statistics.fmean(f.y for f in up) if up else math.nan,
            "seconds_per_step": projection.seconds / projection.steps,
        }

    def random_run(m: int | None, rate: float, seed: int, side: bool) -> dict[str, Any]:
        chosen = [random.Random(f"{seed}|{k}").random() < rate for k in range(len(figures))]
        return run(m, chosen, side)

    target_only = project(solve_figures, lambda s, i: True, 0, costs)
    draft_only = project(solve_figures, lambda s, i: False, 0, costs)
    points: list[dict[str, Any]] = []
    controls: list[dict[str, Any]] = []
    for m in POINTS:
        table = scores_at(steps, m)
        names = list(DRAFT_SCORES) + ([] if m == 0 else list(TARGET_SCORES))
        for name in names:
            side = name not in DRAFT_SCORES
            values = [s.get(name) for s in table]
            fill = min((v for v in values if v is not None), default=0.0) - 1.0
            filled = [fill if v is None else v for v in values]
            entry: dict[str, Any] = {
                "probe_tokens": m,
                "point": label(m),
                "score": name,
                "side": "target" if side else "draft",
                "auroc_y": auroc(filled, [f.y for f in figures]),
                "auroc_outcome": auroc(filled, [int(y or 0) for y in outcome]) if has_outcome else None,
                "rates": {},
            }
            for rate in RATES:
                tau = threshold(values, rate)
                chosen = [v is not None and v > tau for v in values]
                entry["rates"][str(rate)] = {"tau": tau, **run(m, chosen, side)}
            points.append(entry)
        # the controls at this point, for each side it has: random escalation (mean over seeds) and the
        # best choice at the rate (the steps of largest Δ)
        ranked = sorted(range(len(figures)), key=lambda k: -figures[k].delta)
        for side in (False,) if m == 0 else (False, True):
            for rate in RATES:
                draws = [random_run(m, rate, seed, side) for seed in range(RANDOM_SEEDS)]
                top = set(ranked[: round(rate * len(figures))])
                controls.append({
                    "probe_tokens": m, "point": label(m), "side": "target" if side else "draft", "rate": rate,
                    "random": {key: statistics.fmean(d[key] for d in draws) for key in draws[0]},
                    "best_by_delta": run(m, [k in top for k in range(len(figures))], side),
                })  # fmt: skip
    # the speed as the draft gets cheaper, at the table's rates, for each point's best score per side
    ratio_scan: list[dict[str, Any]] = []
    for m in POINTS:
        for side_name in ("draft",) if m == 0 else ("draft", "target"):
            best = max((p for p in points if p["probe_tokens"] == m and p["side"] == side_name),
                       key=lambda p: p["auroc_y"])  # fmt: skip
            values = [s.get(best["score"]) for s in scores_at(steps, m)]
            for rate in TABLE_RATES:
                tau = threshold(values, rate)
                chosen = [v is not None and v > tau for v in values]
                speeds = [
                    run(m, chosen, side_name == "target", costs.with_ratio(r))["speedup"] for r in RATIOS
                ]
                ratio_scan.append({"probe_tokens": m, "point": label(m), "side": side_name, "rate": rate,
                                   "score": best["score"], "ratios": list(RATIOS), "speedups": speeds,
                                   "break_even": _crossing(RATIOS, speeds)})  # fmt: skip
    return {
        "what": "projected, not measured: collected step pairs costed under measured per-token costs",
        "pairs": str(Path(args.pairs).resolve().relative_to(ROOT)),
        "steps": len(figures),
        "solves": len(solves),
        "costs": cost_source,
        "cost_ratio": costs.ratio,
        "target_only_seconds_per_step": target_only.target_only_seconds / target_only.steps,
        "draft_only_speedup": draft_only.target_only_seconds / draft_only.draft_only_seconds,
        "y_rate": statistics.fmean(f.y for f in figures),
        "outcome_rate": statistics.fmean(int(y or 0) for y in outcome) if has_outcome else None,
        "points": points,
        "controls": controls,
        "ratio_scan": ratio_scan,
        "live_grid": live_grid(),
    }


def _crossing(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if (y0 - 1) * (y1 - 1) <= 0 and y0 != y1:
            return x0 + (1 - y0) * (x1 - x0) / (y1 - y0)
    return None


def summary(data: Mapping[str, Any], args_top: int = 2) -> str:
    """The projection as Markdown: each point's best scores per side (by AUROC for y), their speed and
    choice at the table's rates."""
    lines = [
        f"Projected (not measured) on {data['steps']} collected steps of {data['solves']} solutions, costs "
        f"{data['costs']} (draft/target decode ratio {data['cost_ratio']:.2f}); draft-only "
        f"{data['draft_only_speedup']:.2f}x target-only. Share of steps with Δ > 0: {data['y_rate']:.2f}.",
        "",
        "| decision point | score | AUROC y | AUROC outcome | "
        + " | ".join(f"at rate {r}: speed, Δ+ captured (escalated)" for r in TABLE_RATES)
        + " | random at the same rates | best choice at the same rates (top Δ) |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in TABLE_RATES) + " | ---: | ---: |",
    ]
    controls = {(c["probe_tokens"], c["side"], c["rate"]): c for c in data["controls"]}

    def cell(at: Mapping[str, float]) -> str:
        return f"{at['speedup']:.2f}x, {at['delta_captured']:.2f} ({at['escalation_rate']:.2f})"

    for m in POINTS:
        mine = [p for p in data["points"] if p["probe_tokens"] == m]
        for side in ("draft", "target"):
            for p in sorted((p for p in mine if p["side"] == side), key=lambda p: -p["auroc_y"])[:args_top]:
                cells = [cell(p["rates"][str(r)]) for r in TABLE_RATES]
                rnd = " / ".join(cell(controls[m, side, r]["random"]) for r in TABLE_RATES)
                best = " / ".join(cell(controls[m, side, r]["best_by_delta"]) for r in TABLE_RATES)
                outcome = f"{p['auroc_outcome']:.3f}" if p["auroc_outcome"] is not None else "-"
                lines.append(f"| {p['point']} | {p['score']} ({side}) | {p['auroc_y']:.3f} | {outcome} | "
                             + " | ".join(cells) + f" | {rnd} | {best} |")  # fmt: skip
    lines += ["", "Speed over target-only as the draft gets cheaper (each point's best score per side by AUROC "
              "y; the draft's every cost scaled to the ratio):", "",
              "| decision point | rate | score | at the measured ratio | at 0.25 | at 0.1 | faster than target-only "
              "below ratio |", "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for scan in data["ratio_scan"]:
        at = dict(zip(scan["ratios"], scan["speedups"], strict=True))
        here = next(
            p["rates"][str(scan["rate"])]["speedup"]
            for p in data["points"]
            if p["probe_tokens"] == scan["probe_tokens"] and p["score"] == scan["score"]
        )
        even = f"{scan['break_even']:.2f}" if scan["break_even"] is not None else "-"
        lines.append(f"| {scan['point']} | {scan['rate']} | {scan['score']} ({scan['side']}) | {here:.2f}x | "
                     f"{at[0.25]:.2f}x | "
                     f"{at[0.1]:.2f}x | {even} |")  # fmt: skip
    return "\n".join(lines)


def plot(data: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    colours = {m: f"C{i}" for i, m in enumerate(POINTS)}
    controls = data["controls"]
    for m in POINTS:
        for side, style in (("draft", "-"), ("target", "--")):
            mine = [p for p in data["points"] if p["probe_tokens"] == m and p["side"] == side]
            if not mine:
                continue
            best = max(mine, key=lambda p: p["auroc_y"])
            rates = [best["rates"][str(r)] for r in RATES]
            name = f"{label(m)}, {best['score']}"
            axes[0].plot([r["escalation_rate"] for r in rates], [r["speedup"] for r in rates], style,
                         marker="o", color=colours[m], label=name, markersize=3)  # fmt: skip
            axes[1].plot([r["speedup"] for r in rates], [r["delta_captured"] for r in rates], style,
                         marker="o", color=colours[m], label=name, markersize=3)  # fmt: skip
        rnd = [c["random"] for c in controls if c["probe_tokens"] == m and c["side"] == "draft"]
        axes[1].plot([r["speedup"] for r in rnd], [r["delta_captured"] for r in rnd], ":", color=colours[m],
                     linewidth=0.8)  # fmt: skip
    for scan in data["ratio_scan"]:
        if scan["rate"] == TABLE_RATES[0]:
            style = "-" if scan["side"] == "draft" else "--"
            axes[2].plot(scan["ratios"], scan["speedups"], style, color=colours[scan["probe_tokens"]],
                         label=f"{scan['point']} ({scan['score']})")  # fmt: skip
    axes[0].set_xlabel("escalation rate")
    axes[0].set_ylabel("projected speed over target-only")
    axes[0].set_title("Speed by escalation rate (solid: draft side, dashed: target)")
    axes[1].set_xlabel("projected speed over target-only")
    axes[1].set_ylabel("share of positive advantage Δ escalated")
    axes[1].set_title("Choice vs speed, rates 0.1-0.9 (dotted: random, draft side)")
    axes[2].axvline(data["cost_ratio"], color="grey", linestyle="--", linewidth=0.8)
    axes[2].set_xlabel("draft / target per-token cost ratio")
    axes[2].set_ylabel("projected speed over target-only")
    axes[2].set_title(f"As the draft gets cheaper (rate {TABLE_RATES[0]})")
    axes[0].axhline(1.0, color="black", linewidth=0.6)
    axes[1].axvline(1.0, color="black", linewidth=0.6)
    axes[2].axhline(1.0, color="black", linewidth=0.6)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle("Early escalation on collected GSM8K steps (projected, not measured)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- live ---------------------------------------------------------------------------------------------


def live_grid(rates: str = LIVE_RATES) -> dict[str, Any]:
    points = ["draft", *(f"early@{name}:target_rate={rates}" for name, _, _ in LIVE_VARIANTS),
              f"verify:target_rate={rates}", "target"]  # fmt: skip
    variants = [f"{name}: probe_tokens={m}, score={score}" for name, m, score in LIVE_VARIANTS]
    return {"points": "; ".join(points), "variants": variants}


def live(args: argparse.Namespace) -> None:
    grid = live_grid(args.rates)
    out = Path(args.out)
    command = [sys.executable, "-m", "arbitrage.cli.main", "sweep", "--dataset", "gsm8k", "--limit",
               str(args.limit), "--offset", str(args.offset), "--points", args.points or grid["points"],
               "--out", str(out), "--draft", DRAFT, "--target", TARGET]  # fmt: skip
    for variant in grid["variants"]:
        command += ["--variant", variant]
    if args.no_cache:
        command.append("--no-cache")
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    compare(out, Path(args.projection))


def compare(out: Path, projection_path: Path) -> None:
    """Measured mean latency and accuracy of every live point, next to the projection where it has one
    (paired intervals: ``arbitrage report OUT``)."""
    rows = json.loads((out / "sweep.json").read_text())
    projection = json.loads(projection_path.read_text()) if projection_path.is_file() else None
    target = next((r for r in rows if r["point"] == "target"), None)
    lines = ["| point | problems | accuracy | escalations | mean s | speed vs target-only (measured, ratio of "
             "means) | projected speed |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for row in rows:
        mean = row["latency_mean_s"]
        speed = f"{target['latency_mean_s'] / mean:.2f}x" if target and mean else "-"
        lines.append(f"| {row['point']} | {row['problems']} | {row['accuracy']:.3f} | {row['escalations']} | "
                     f"{mean:.2f} | {speed} | {_projected(row, projection)} |")  # fmt: skip
    paired = paired_comparisons(out, rows)
    if paired:
        lines += ["", "Paired on the same problems (bootstrap 95%, 2,000 resamples): each early point against "
                  "target-only and against its cost-matched control (the random score at the same decision "
                  "point and rate).", "",
                  "| point | versus | problems | accuracy difference [95% CI] | speed [95% CI] |",
                  "| --- | --- | ---: | --- | --- |"]  # fmt: skip
        for r in paired:
            lines.append(f"| {r['point']} | {r['versus']} | {r['problems']} | {_ci(r['difference'], r['difference_ci'], '+.3f')} | "
                         f"{_ci(r['speed'], r['speed_ci'], '.2f', 'x')} |")  # fmt: skip
        (out / "compare.json").write_text(json.dumps(paired, indent=1) + "\n")
    text = "\n".join(lines)
    (out / "compare.md").write_text(text + "\n")
    print(text)


def _ci(value: float, ci: Sequence[float], spec: str, unit: str = "") -> str:
    return f"{value:{spec}}{unit} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


def paired_comparisons(
    out: Path, rows: Sequence[Mapping[str, Any]], resamples: int = RESAMPLES, seed: int = SEED
) -> list[dict[str, Any]]:
    """Each early point against target-only and against its control (same m, score random, same rate):
    accuracy difference and speed (the other's mean latency over the point's), with the sweep report's
    paired bootstrap (every point on the same resamples of problems; errored problems left out of the
    point they errored in)."""
    from arbitrage.evaluation.bootstrap import (
        PointSamples,
        percentile_interval,
        resample_point,
        resample_points,
    )
    from arbitrage.evaluation.report import load_records

    records = load_records(out, [dict(row) for row in rows])
    if records is None:
        return []
    variants = {name: (m, score) for name, m, score in LIVE_VARIANTS}

    def key(row: Mapping[str, Any]) -> tuple[int, str, str] | None:
        v = variants.get(str(row.get("variant") or ""))
        return None if row.get("policy_name") != "early" or v is None else (v[0], v[1], str(row.get("value")))

    ids = sorted({r.id for point in records.values() for r in point})
    samples = {point: PointSamples.from_records(recs, ids) for point, recs in records.items()}
    boot = resample_points(samples, resamples, seed)
    whole = {point: resample_point(s, np.arange(len(ids))[None, :]) for point, s in samples.items()}
    by_key = {k: str(r["point"]) for r in rows if (k := key(r)) is not None}
    has_target = "target" in records
    result: list[dict[str, Any]] = []
    for row in rows:
        k = key(row)
        if k is None or k[1] == "random":
            continue
        mine = str(row["point"])
        others = [("target", "target")] if has_target else []
        if (control := by_key.get((k[0], "random", k[2]))) is not None:
            others.append((control, f"random control ({control})"))
        for other, label in others:
            difference = percentile_interval(boot[mine].accuracy - boot[other].accuracy)
            speed = percentile_interval(boot[other].latency / boot[mine].latency)
            if difference.to_list() is None or speed.to_list() is None:
                continue
            result.append({
                "point": mine, "versus": label, "problems": int(samples[mine].completed.sum()),
                "difference": float(whole[mine].accuracy[0] - whole[other].accuracy[0]),
                "difference_ci": difference.to_list(),
                "speed": float(whole[other].latency[0] / whole[mine].latency[0]),
                "speed_ci": speed.to_list(),
            })  # fmt: skip
    return result


def _projected(row: Mapping[str, Any], projection: Mapping[str, Any] | None) -> str:
    """The offline projection's speed for a live early point (its variant's m and score, its rate)."""
    variant = {name: (m, score) for name, m, score in LIVE_VARIANTS}.get(row.get("variant") or "")
    if projection is None or row.get("policy_name") != "early" or variant is None:
        return "-"
    m, score = variant
    if score == "random":  # the control's projection: the random choice at that decision point
        for c in projection.get("controls", []):
            if c["probe_tokens"] == m and c["side"] == "draft" and str(c["rate"]) == str(row.get("value")):
                return f"{c['random']['speedup']:.2f}x"
        return "-"
    for p in projection["points"]:
        if p["probe_tokens"] == m and p["score"] == score:
            at = p["rates"].get(str(row.get("value")))
            return f"{at['speedup']:.2f}x" if at else "-"
    return "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode")
    ap.add_argument("--pairs", type=Path, default=PAIRS, help="collected step pairs (a collect folder)")
    ap.add_argument("--costs", type=Path, default=COSTS, help="measured costs (arbitrage bench-costs)")
    ap.add_argument("--kernels", type=Path, default=KERNELS, help="batch-size timings (llama_kernels.py)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--write-calibration", action="store_true", help=f"rebuild {CALIBRATION.relative_to(ROOT)}"
    )
    lv = sub.add_parser("live", help="run the decision points live on GSM8K test problems (resumable)")
    lv.add_argument("--limit", type=int, default=50)
    lv.add_argument("--offset", type=int, default=0)
    lv.add_argument("--rates", default=LIVE_RATES, help="target rates of the early and verify points")
    lv.add_argument("--points", default=None, help="another sweep grid (default: the early grid)")
    lv.add_argument("--out", type=Path, default=OUT / "live")
    lv.add_argument("--projection", type=Path, default=OUT / "projection.json")
    lv.add_argument("--no-cache", action="store_true", help="measure every call live (no step cache)")
    args = ap.parse_args()
    if args.mode == "live":
        live(args)
        return
    if args.write_calibration:
        table = build_early_calibration(read_pairs(args.pairs))
        write_early_calibration(table, CALIBRATION, source=str(Path(args.pairs).resolve().relative_to(ROOT)))
        print(f"written: {CALIBRATION.relative_to(ROOT)}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = offline(args)
    (args.out / "projection.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(data, args.out / "projection.png")
    text = summary(data)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    print(f"\nwritten: {(args.out / 'projection.json').relative_to(ROOT)}, projection.png, summary.md")


if __name__ == "__main__":
    main()
