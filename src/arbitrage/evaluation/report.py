"""Reports from sweep results: accuracy-vs-acceptance and accuracy-vs-latency plots, speedups at
matched accuracy, and the RSD waste analysis, as PNG files and a Markdown page.

Speedup at matched accuracy: for each policy family its *frontier* is the lowest mean latency that
reaches at least a given accuracy, interpolated linearly between the family's points ordered by
latency (``latency_at``). For families A and B the speedup of A over B at accuracy a is
``latency_B(a) / latency_A(a)``; it is reported at the highest accuracy both families reach (the
matched accuracy is stated) and against target-only decoding at the target's own accuracy.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError

FAMILY_ORDER = ("router", "oracle", "rsd", "random")


@dataclass(frozen=True, slots=True)
class Point:
    """One sweep point as the report sees it."""

    family: str  # policy family: draft, target, random, rsd, oracle, router
    label: str
    accuracy: float
    acceptance: float  # step-level acceptance rate
    latency: float  # mean per-problem latency, seconds
    latency_median: float
    target_call_rate: float
    escalations: int
    wasted: int | None
    rewarded: int = 0  # escalations with both rewards known
    accuracy_ci: tuple[float, float] = (float("nan"), float("nan"))
    problems: int = 0
    replayed_calls: int = 0  # model calls replayed from the step cache
    live_calls: int = 0
    replayed_prm_calls: int = 0  # PRM calls replayed from the score cache
    live_prm_calls: int = 0


def load_points(sweep_dir: Path) -> list[Point]:
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise ConfigError(f"No sweep results in {sweep_dir} (expected {path}); run `arbitrage sweep` first")
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    return [
        Point(
            family=row["policy_name"],
            label=row["policy"],
            accuracy=row["accuracy"],
            acceptance=row["acceptance_rate"] if row["acceptance_rate"] is not None else float("nan"),
            latency=row["latency_mean_s"],
            latency_median=row["latency_median_s"],
            target_call_rate=row["target_call_rate"] or 0.0,
            escalations=row["escalations"],
            wasted=row.get("wasted_escalations"),
            rewarded=row.get("rewarded_escalations", row["escalations"]),
            accuracy_ci=tuple(row.get("accuracy_ci", (float("nan"), float("nan")))),
            problems=row.get("problems", 0),
            replayed_calls=row.get("replayed_calls", 0),
            live_calls=row.get("live_calls", 0),
            replayed_prm_calls=row.get("replayed_prm_calls", 0),
            live_prm_calls=row.get("live_prm_calls", 0),
        )
        for row in rows
    ]


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


def _pairs(families: dict[str, list[Point]]) -> list[tuple[str, str]]:
    """(policy, versus) family pairs to compare: each family against the later ones, then target-only."""
    present = [f for f in FAMILY_ORDER if f in families]
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
            row = {"acceptance": p.acceptance, family: a, versus: p.accuracy}
            rows.append({**row, "difference": a - p.accuracy})
    return rows


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
            ax.scatter(xs, ys, s=80, marker="*", label=f"{name} only", zorder=3)
        else:
            ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_report(sweep_dir: Path, title: str | None = None) -> Path:
    """Write ``report.md``, ``accuracy_vs_acceptance.png`` and ``accuracy_vs_latency.png``."""
    points = load_points(sweep_dir)
    title = title or f"Sweep report: {sweep_dir.name}"
    _plot(points, "acceptance", "acceptance rate (share of steps kept from the draft)",
          sweep_dir / "accuracy_vs_acceptance.png", "accuracy vs acceptance rate")  # fmt: skip
    _plot(points, "latency", "mean latency per problem (s)", sweep_dir / "accuracy_vs_latency.png",
          "accuracy vs latency")  # fmt: skip
    lines = [
        f"# {title}",
        "",
        "| policy | problems | accuracy [95% CI] | acceptance | target-call rate | mean latency s | "
        "median s | model calls replayed / live | PRM calls replayed / live |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in sorted(points, key=lambda p: (p.family, -p.acceptance if not math.isnan(p.acceptance) else 0)):
        lo, hi = p.accuracy_ci
        cells = [
            p.label,
            str(p.problems),
            f"{p.accuracy:.3f} [{lo:.2f}, {hi:.2f}]",
            f"{p.acceptance:.3f}",
            f"{p.target_call_rate:.3f}",
            f"{p.latency:.1f}",
            f"{p.latency_median:.1f}",
            f"{p.replayed_calls} / {p.live_calls}",
            f"{p.replayed_prm_calls} / {p.live_prm_calls}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Latency is the sum of the measured costs of a problem's model and PRM calls. Calls replayed from "
        "the sweep's step and score caches (identical greedy requests made by an earlier point) add the "
        "seconds measured when they first ran; the last two columns say how many of each.",
    ]
    table = speedups(points)
    lines += ["", "## Speedup at matched accuracy", ""]
    if table:
        lines += ["| policy | versus | matched accuracy | mean latency s | versus mean s | speedup (mean) "
                  "| speedup (median) |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        lines += [f"| {r['policy']} | {r['versus']} | {r['matched_accuracy']:.3f} | {r['latency']:.1f} | "
                  f"{r['versus_latency']:.1f} | {r['speedup']:.2f}x | "
                  + (f"{r['median_speedup']:.2f}x |" if r["median_speedup"] else "– |")
                  for r in table]  # fmt: skip
        lines += [
            "",
            "Latencies are interpolated on each family's accuracy-latency frontier at the matched "
            "accuracy: the higher accuracy both families reach, or target-only's own.",
        ]
    else:
        lines.append("No pair of policy families reaches a common accuracy.")
    missing = unmatched(points)
    if missing:
        lines += ["", *(f"- {note}" for note in missing)]
    comparisons = {}
    for family, versus in (("router", "rsd"), ("rsd", "router"), ("oracle", "rsd"), ("router", "oracle")):
        rows = curve_comparison(points, family, versus)
        if not rows:
            continue
        comparisons[f"{family}_vs_{versus}"] = rows
        above = sum(1 for r in rows if r["difference"] > 0)
        lines += [
            "",
            f"## {family} vs {versus}: accuracy at {versus}'s acceptance rates",
            "",
            f"{family} is above {versus} at {above} of {len(rows)} of {versus}'s points "
            f"({family}'s accuracy interpolated between its own points).",
            "",
            f"| acceptance | {family} | {versus} | difference |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            cells = [f"{r['acceptance']:.3f}", f"{r[family]:.3f}", f"{r[versus]:.3f}"]
            lines.append("| " + " | ".join(cells) + f" | {r['difference']:+.3f} |")
    (sweep_dir / "curves.json").write_text(json.dumps(comparisons, indent=2))
    waste = [p for p in points if p.family == "rsd" and p.wasted is not None and p.rewarded]
    if waste:
        lines += ["", "## RSD waste: escalations whose target step did not beat the draft's reward", "",
                  "| point | deferral rate | escalations (both rewards known) | wasted | share wasted |",
                  "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for p in sorted(waste, key=lambda p: p.acceptance, reverse=True):
            assert p.wasted is not None
            lines.append(f"| {p.label} | {1 - p.acceptance:.3f} | {p.rewarded} | {p.wasted} | "
                         f"{p.wasted / p.rewarded:.3f} |")  # fmt: skip
    lines += ["", "![accuracy vs acceptance](accuracy_vs_acceptance.png)", "",
              "![accuracy vs latency](accuracy_vs_latency.png)", ""]  # fmt: skip
    (sweep_dir / "speedups.json").write_text(json.dumps(table, indent=2))
    report = sweep_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
