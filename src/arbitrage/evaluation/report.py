"""Reports from sweep results: accuracy-vs-acceptance and accuracy-vs-latency plots, speedups at
matched accuracy, curve differences, lift over random, and the RSD waste analysis, as PNG files, JSON
and a Markdown page.

Errored problems (a solve that raised; :mod:`arbitrage.evaluation.records`) are counted and listed per
point, and left out of that point's accuracy and latency, never counted as wrong. When the points'
``records.jsonl`` are present the figures are recomputed from them (so a sweep summarised before
errored problems were told apart reads correctly), and every comparison gets a paired bootstrap 95%
interval over problems (:mod:`arbitrage.evaluation.bootstrap`).

Speedup at matched accuracy: for each policy family its *frontier* is the lowest mean latency that
reaches at least a given accuracy, interpolated linearly between the family's points ordered by
latency (``latency_at``). For families A and B the speedup of A over B at accuracy a is
``latency_B(a) / latency_A(a)``; it is reported at the highest accuracy both families reach (the
matched accuracy is stated) and against target-only decoding at the target's own accuracy.

Random control: mixing draft and target steps at random traces, in expectation, the straight line
between the draft-only point (acceptance 1) and the target-only point (acceptance 0); measured
``random`` points refine it. A policy point's *lift over random* is its accuracy minus the random
control's at the point's own acceptance rate, interpolated linearly between the control points (draft,
target and random points) that bracket it. A lift whose interval contains 0 is "no difference".

Against target-only: every point's accuracy minus target-only's and target-only's mean latency over
the point's (its speedup), on the same problems, with paired intervals (``versus_target``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.evaluation.bootstrap import (
    RESAMPLES,
    SEED,
    Interval,
    PointSamples,
    ResampledPoint,
    percentile_interval,
    resample_points,
)
from arbitrage.evaluation.points import Point, point_from_row
from arbitrage.evaluation.records import RECORDS, ProblemRecord, read_records
from arbitrage.evaluation.summary import summarize

FAMILY_ORDER = ("router", "verify", "oracle", "rsd", "random")
CONTROL_FAMILIES = ("draft", "target", "random")  # the random control: draft-only, target-only, random


def _sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise ConfigError(f"No sweep results in {sweep_dir} (expected {path}); run `arbitrage sweep` first")
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    return rows


def load_records(sweep_dir: Path, rows: list[dict[str, Any]]) -> dict[str, list[ProblemRecord]] | None:
    """Every point's records (by point folder), or None when a point's ``records.jsonl`` is missing."""
    records = {}
    for row in rows:
        path = sweep_dir / str(row.get("point", "")) / RECORDS
        if not row.get("point") or not path.is_file():
            return None
        records[str(row["point"])] = read_records(path)
    return records


def load_points(sweep_dir: Path) -> list[Point]:
    """The sweep's points; recomputed from their records when every point has them."""
    rows = _sweep_rows(sweep_dir)
    records = load_records(sweep_dir, rows)
    if records is not None:
        rows = [{**row, **summarize(records[row["point"]], row["policy"]).to_dict()} for row in rows]
    return [point_from_row(row) for row in rows]


def _latency(p: Point, median: bool) -> float:
    return p.latency_median if median else p.latency


def latency_at(points: list[Point], accuracy: float, median: bool = False) -> float | None:
    """Lowest latency (mean per problem, or ``median``) reaching ``accuracy`` on the family's frontier,
    interpolated linearly between frontier points (None if never reached)."""
    ordered = sorted(points, key=lambda p: _latency(p, median))
    frontier: list[Point] = []
    for p in ordered:  # keep points that improve accuracy as latency grows
        if not frontier or p.accuracy > frontier[-1].accuracy:
            frontier.append(p)
    if not frontier or accuracy > frontier[-1].accuracy:
        return None
    if accuracy <= frontier[0].accuracy:
        return _latency(frontier[0], median)
    for lo, hi in itertools.pairwise(frontier):
        if lo.accuracy <= accuracy <= hi.accuracy:
            t = (accuracy - lo.accuracy) / (hi.accuracy - lo.accuracy)
            return _latency(lo, median) + t * (_latency(hi, median) - _latency(lo, median))
    return None


def _families(points: list[Point]) -> dict[str, list[Point]]:
    families: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        families[p.family].append(p)
    return families


def base_family(family: str) -> str:
    """The policy of a family: ``router`` for ``router@both``."""
    return family.partition("@")[0]


def _ordered(families: Iterable[str]) -> list[str]:
    """The compared families present, in ``FAMILY_ORDER`` of their policy, a policy's variants after
    its plain family."""
    present = [f for f in families if base_family(f) in FAMILY_ORDER]
    return sorted(present, key=lambda f: (FAMILY_ORDER.index(base_family(f)), "@" in f, f))


def curve_pairs(families: Iterable[str]) -> list[tuple[str, str]]:
    """The (family, versus) curve comparisons among ``families``: each of ``CURVE_PAIRS`` for every
    variant of its two policies, and each variant against its policy's plain family."""
    present = _ordered(families)
    pairs = [
        (f, v)
        for a, b in CURVE_PAIRS
        for f in present
        if base_family(f) == a
        for v in present
        if base_family(v) == b
    ]
    pairs += [(f, base_family(f)) for f in present if "@" in f and base_family(f) in present]
    return pairs


def _pairs(families: dict[str, list[Point]]) -> list[tuple[str, str]]:
    """(policy, versus) family pairs to compare: each family against the later ones, then target-only."""
    present = _ordered(families)
    pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1 :]]
    if "target" in families:
        pairs += [(a, "target") for a in present]
    return pairs


def _matched(mine: list[Point], other: list[Point], versus: str) -> float:
    """The accuracy two families are compared at: the target-only point's own accuracy, or the higher
    accuracy both reach."""
    if versus == "target":
        return other[0].accuracy
    return min(max(p.accuracy for p in mine), max(p.accuracy for p in other))


def speedups(points: list[Point]) -> list[dict[str, Any]]:
    """Pairwise speedups at matched accuracy between the policy families present.

    ``speedup`` = versus latency / policy latency, both the mean per-problem latency interpolated on
    each family's accuracy-latency frontier at ``matched_accuracy``; ``median_speedup`` the same with
    median latencies. Pairs with no common accuracy are listed by :func:`unmatched`.
    """
    families = _families(points)
    rows = []
    for name, versus in _pairs(families):
        mine, other = families[name], families[versus]
        matched = _matched(mine, other, versus)
        a, b = latency_at(mine, matched), latency_at(other, matched)
        am, bm = latency_at(mine, matched, median=True), latency_at(other, matched, median=True)
        if a and b:
            rows.append({"policy": name, "versus": versus, "matched_accuracy": matched, "latency": a,
                         "versus_latency": b, "speedup": b / a,
                         "median_latency": am, "versus_median_latency": bm,
                         "median_speedup": bm / am if am and bm else None})  # fmt: skip
    return rows


def unmatched(points: list[Point]) -> list[str]:
    """One sentence for each pair of families :func:`speedups` cannot compare, saying why."""
    families = _families(points)
    compared = {(r["policy"], r["versus"]) for r in speedups(points)}
    notes = []
    for name, versus in _pairs(families):
        if (name, versus) in compared:
            continue
        mine, other = families[name], families[versus]
        matched = _matched(mine, other, versus)
        best = max(p.accuracy for p in mine)
        notes.append(
            f"{name} vs {versus}: no matched accuracy; {name}'s best accuracy {best:.3f} is below "
            f"{versus}'s {matched:.3f}."
            if best < matched
            else f"{name} vs {versus}: no matched accuracy."
        )
    return notes


def accuracy_at_acceptance(points: list[Point], acceptance: float) -> float | None:
    """A family's accuracy at an acceptance rate, interpolated linearly between its points (None
    outside their range)."""
    ordered = sorted((p for p in points if not math.isnan(p.acceptance)), key=lambda p: p.acceptance)
    if not ordered or not ordered[0].acceptance <= acceptance <= ordered[-1].acceptance:
        return None
    for lo, hi in itertools.pairwise(ordered):
        if lo.acceptance <= acceptance <= hi.acceptance:
            if hi.acceptance == lo.acceptance:
                return max(lo.accuracy, hi.accuracy)
            t = (acceptance - lo.acceptance) / (hi.acceptance - lo.acceptance)
            return lo.accuracy + t * (hi.accuracy - lo.accuracy)
    return ordered[0].accuracy  # a single point


def curve_comparison(points: list[Point], family: str, versus: str) -> list[dict[str, Any]]:
    """At each acceptance rate of ``versus``'s points, ``family``'s interpolated accuracy next to it."""
    mine = [p for p in points if p.family == family]
    rows = []
    for p in sorted((p for p in points if p.family == versus), key=lambda p: p.acceptance):
        a = accuracy_at_acceptance(mine, p.acceptance)
        if a is not None:
            row = {"point": p.label, "acceptance": p.acceptance, family: a, versus: p.accuracy}
            rows.append({**row, "difference": a - p.accuracy})
    return rows


def random_lifts(points: list[Point]) -> list[dict[str, Any]]:
    """Each policy point's accuracy minus the random control's at the point's acceptance rate.

    The control is the draft-only, target-only and measured ``random`` points, interpolated linearly
    by acceptance (see the module docstring); points outside its range get no row.
    """
    control = [p for p in points if p.family in CONTROL_FAMILIES]
    rows = []
    for p in points:
        if p.family in CONTROL_FAMILIES or math.isnan(p.acceptance):
            continue
        base = accuracy_at_acceptance(control, p.acceptance)
        if base is not None:
            row = {"point": p.label, "family": p.family, "acceptance": p.acceptance, "accuracy": p.accuracy}
            rows.append({**row, "random_accuracy": base, "lift": p.accuracy - base})
    return rows


def versus_target(points: list[Point]) -> list[dict[str, Any]]:
    """Each point against target-only on the same problems: its accuracy minus the target's and the
    target's mean latency over its own (``speedup`` > 1: faster than the target alone).

    The plain pairing behind the goal "within 0.03 of target-only at lower latency", defined even where
    a family never reaches the target's accuracy (when :func:`speedups` has no matched accuracy).
    """
    target = next((p for p in points if p.family == "target"), None)
    if target is None:
        return []
    rows = []
    for p in points:
        if p.family == "target" or p.latency <= 0:
            continue
        rows.append({"point": p.label, "family": p.family, "acceptance": p.acceptance, "accuracy": p.accuracy,
                     "target_accuracy": target.accuracy, "difference": p.accuracy - target.accuracy,
                     "latency": p.latency, "target_latency": target.latency,
                     "speedup": target.latency / p.latency})  # fmt: skip
    return rows


@dataclass(frozen=True, slots=True)
class Resampled:
    """Every point's figures on the same bootstrap resamples of problems."""

    points: list[Point]  # the point estimates
    samples: dict[str, ResampledPoint]  # by point key
    resamples: int
    seed: int
    problems: int  # problems resampled (the union of the points' problem ids)

    def at(self, b: int) -> list[Point]:
        """The points as computed on resample ``b``."""
        return [
            replace(
                p,
                accuracy=float(r.accuracy[b]),
                acceptance=float(r.acceptance[b]),
                latency=float(r.latency[b]),
                latency_median=float(r.latency[b]),
            )
            for p, r in ((p, self.samples[p.key]) for p in self.points)
        ]

    def interval(
        self, derive: Callable[[list[Point]], dict[Hashable, float | None]]
    ) -> dict[Hashable, Interval]:
        """Bootstrap intervals of the quantities ``derive`` computes from the points, by key."""
        values: dict[Hashable, list[float | None]] = defaultdict(list)
        for b in range(self.resamples):
            derived = derive(self.at(b))
            for key in values.keys() | derived.keys():
                values[key].append(derived.get(key))
        return {key: percentile_interval(v + [None] * (self.resamples - len(v))) for key, v in values.items()}


def resample(
    points: list[Point], records: dict[str, list[ProblemRecord]], resamples: int = RESAMPLES, seed: int = SEED
) -> Resampled:
    """Paired bootstrap resamples of every point, on the union of their problem ids."""
    ids = sorted({r.id for rs in records.values() for r in rs}, key=lambda i: (len(i), i))
    samples = {p.key: PointSamples.from_records(records[p.key], ids) for p in points}
    return Resampled(points, resample_points(samples, resamples, seed), resamples, seed, len(ids))


def _ci(interval: Interval | None, digits: int = 3) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return "–"
    return f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _verdict(interval: Interval | None, null: float, above: str, below: str) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return "no interval"
    if interval.contains(null):
        return "no difference"
    return above if interval.low > null else below


def _plot(points: list[Point], x: str, xlabel: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    families: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        families[p.family].append(p)
    for name, members in families.items():
        members = sorted(members, key=lambda p: getattr(p, x))
        xs = [getattr(p, x) for p in members]
        ys = [p.accuracy for p in members]
        if name in ("draft", "target"):
            color = "black" if name == "draft" else "tab:red"
            ax.scatter(xs, ys, s=90, marker="*", color=color, label=f"{name} only", zorder=3)
        elif name == "random" and x == "acceptance":
            ax.scatter(xs, ys, marker="s", color="grey", label="random (measured)", zorder=3)
        else:
            ax.plot(xs, ys, marker="o", label=name)
    control = sorted((p for p in points if p.family in CONTROL_FAMILIES), key=lambda p: p.acceptance)
    if x == "acceptance" and len(control) >= 2:
        ax.plot([p.acceptance for p in control], [p.accuracy for p in control], linestyle="--",
                color="grey", alpha=0.7, label="random mixing (control)")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (completed problems)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


CURVE_PAIRS = (
    ("router", "rsd"),
    ("rsd", "router"),
    ("verify", "rsd"),
    ("rsd", "verify"),
    ("router", "verify"),
    ("oracle", "rsd"),
    ("router", "oracle"),
)


def compare(points: list[Point], boot: Resampled | None) -> dict[str, Any]:
    """Speedups, curve differences and lifts over random, each row with its interval when ``boot``."""
    table = speedups(points)
    pairs = curve_pairs({p.family for p in points})
    curves = {f"{f}_vs_{v}": rows for f, v in pairs if (rows := curve_comparison(points, f, v))}
    lifts = random_lifts(points)
    against_target = versus_target(points)
    if boot is not None:

        def derive(pts: list[Point]) -> dict[Hashable, float | None]:
            out: dict[Hashable, float | None] = {}
            out.update({("speedup", r["policy"], r["versus"]): r["speedup"] for r in speedups(pts)})
            for f, v in pairs:
                out.update(
                    {("curve", f, v, r["point"]): r["difference"] for r in curve_comparison(pts, f, v)}
                )
            out.update({("lift", r["point"]): r["lift"] for r in random_lifts(pts)})
            for r in versus_target(pts):
                out[("target_difference", r["point"])] = r["difference"]
                out[("target_speedup", r["point"])] = r["speedup"]
            return out

        intervals = boot.interval(derive)
        for r in table:
            ci = intervals.get(("speedup", r["policy"], r["versus"]))
            r["speedup_ci"], r["speedup_defined"] = (ci.to_list(), ci.defined) if ci else (None, 0.0)
            r["verdict"] = _verdict(ci, 1.0, "faster", "slower")
        for name, rows in curves.items():
            f, v = name.split("_vs_")
            for r in rows:
                ci = intervals.get(("curve", f, v, r["point"]))
                r["difference_ci"] = ci.to_list() if ci else None
                r["verdict"] = _verdict(ci, 0.0, "above", "below")
        for r in lifts:
            ci = intervals.get(("lift", r["point"]))
            r["lift_ci"] = ci.to_list() if ci else None
            r["verdict"] = _verdict(ci, 0.0, "above random", "below random")
        for r in against_target:
            ci = intervals.get(("target_difference", r["point"]))
            r["difference_ci"] = ci.to_list() if ci else None
            r["accuracy_verdict"] = _verdict(ci, 0.0, "above target", "below target")
            ci = intervals.get(("target_speedup", r["point"]))
            r["speedup_ci"] = ci.to_list() if ci else None
            r["speed_verdict"] = _verdict(ci, 1.0, "faster", "slower")
    bootstrap = (
        {"resamples": boot.resamples, "seed": boot.seed, "problems": boot.problems, "paired": True}
        if boot is not None
        else None
    )
    return {"bootstrap": bootstrap, "speedups": table, "curves": curves, "random_lift": lifts,
            "versus_target": against_target}  # fmt: skip


def build_report(
    sweep_dir: Path, title: str | None = None, resamples: int = RESAMPLES, seed: int = SEED
) -> Path:
    """Write ``report.md``, the plots, ``speedups.json``, ``curves.json`` and ``comparisons.json``."""
    from arbitrage.evaluation.report_markdown import markdown

    rows = _sweep_rows(sweep_dir)
    records = load_records(sweep_dir, rows)
    points = load_points(sweep_dir)  # each point on the problems it completed (the table)
    compared, boot, excluded = points, None, []
    messages: dict[str, set[str]] = {}
    for key, rs in (records or {}).items():
        messages[key] = {r.error or "" for r in rs if not r.completed}
    if records is not None:  # comparisons: every point on the problems all points completed
        shared = common_problems(records)
        excluded = sorted({r.id for rs in records.values() for r in rs} - shared, key=lambda i: (len(i), i))
        records = {key: [r for r in rs if r.id in shared] if excluded else rs for key, rs in records.items()}
        compared = [
            point_from_row({**row, **summarize(records[row["point"]], row["policy"]).to_dict()})
            for row in rows
        ]
        boot = resample(compared, records, resamples, seed)
    title = title or f"Sweep report: {sweep_dir.name}"
    _plot(points, "acceptance", "acceptance rate (share of steps kept from the draft)",
          sweep_dir / "accuracy_vs_acceptance.png", "accuracy vs acceptance rate")  # fmt: skip
    _plot(points, "latency", "mean latency per problem (s)", sweep_dir / "accuracy_vs_latency.png",
          "accuracy vs latency")  # fmt: skip
    comparisons = {**compare(compared, boot), "excluded_from_comparisons": excluded}
    errored = {p.label: {"ids": list(p.errored_ids), "messages": sorted(messages.get(p.key, set()))}
               for p in points if p.errors}  # fmt: skip
    (sweep_dir / "speedups.json").write_text(json.dumps(comparisons["speedups"], indent=2))
    (sweep_dir / "curves.json").write_text(json.dumps(comparisons["curves"], indent=2))
    (sweep_dir / "comparisons.json").write_text(json.dumps({**comparisons, "errored": errored}, indent=2))
    report = sweep_dir / "report.md"
    report.write_text(markdown(title, points, comparisons, errored, unmatched(compared)))
    return report


def common_problems(records: dict[str, list[ProblemRecord]]) -> set[str]:
    """Ids of the problems every point completed: the comparisons' shared problems."""
    done = [{r.id for r in rs if r.completed} for rs in records.values()]
    return set.intersection(*done) if done else set()
