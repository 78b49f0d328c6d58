"""The Markdown page of a sweep report (``report.md``), from the points and comparisons of
:mod:`arbitrage.evaluation.report`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arbitrage.evaluation.points import Point


def _ci(ci: list[float] | None, spec: str = ".3f") -> str:
    return "–" if not ci else f"[{ci[0]:{spec}}, {ci[1]:{spec}}]"


def _points_table(points: list[Point]) -> list[str]:
    lines = [
        "| policy | problems | errored | accuracy (completed) [95% CI] | acceptance | target-call rate | "
        "mean latency s | median s | decode tokens saved / problem | model calls replayed / live | "
        "PRM calls replayed / live |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in sorted(points, key=lambda p: (p.family, -p.acceptance if not math.isnan(p.acceptance) else 0)):
        lo, hi = p.accuracy_ci
        cells = [
            p.label,
            str(p.problems),
            str(p.errors),
            f"{p.accuracy:.3f} [{lo:.2f}, {hi:.2f}]",
            f"{p.acceptance:.3f}",
            f"{p.target_call_rate:.3f}",
            f"{p.latency:.1f}",
            f"{p.latency_median:.1f}",
            f"{p.kept_tokens_mean:.1f}",
            f"{p.replayed_calls} / {p.live_calls}",
            f"{p.replayed_prm_calls} / {p.live_prm_calls}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [
        *lines,
        "",
        "Accuracy is over the *completed* problems: a problem whose solve raised an error (*errored*) is "
        "not counted as wrong, and not in the latency either; the `errored` column counts them and the "
        "next section lists them. The 95% CI of accuracy is a Wilson interval.",
        "",
        "Latency is the sum of the measured costs of a problem's model and PRM calls. Calls replayed from "
        "the sweep's step and score caches (identical greedy requests made by an earlier point) add the "
        "seconds measured when they first ran; the last two columns say how many of each. It includes "
        "the target's verifications of draft steps.",
        "",
        "Decode tokens saved: target step tokens kept from a verified draft prefix instead of decoded "
        "(prefix keeping of escalated steps), per problem.",
        "",
        "Target-call rate: target step calls per solution step. It can exceed the escalated share, and "
        "even 1, when the engine drops a step a call produced (a repeated step, which ends the solution "
        "with stop reason `repetition`, or an empty final step); that call's seconds stay in the latency.",
    ]


def _errored(errored: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "## Errored problems", ""]
    if not errored:
        return [*lines, "No problem errored."]
    for label, info in errored.items():
        ids = ", ".join(info["ids"])
        lines.append(f"- {label}: {len(info['ids'])} errored (problem ids {ids})")
        lines += [f"  - `{message[:160]}`" for message in info["messages"]]
    return lines


def _speedups(table: list[dict[str, Any]], notes: list[str], boot: bool) -> list[str]:
    lines = ["", "## Speedup at matched accuracy", ""]
    if table:
        lines += ["| policy | versus | matched accuracy | mean latency s | versus mean s | speedup (mean) "
                  "| 95% CI (paired bootstrap) | speedup (median) |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for r in table:
            interval = _ci(r.get("speedup_ci"), ".2f")
            if r.get("speedup_ci") and r["verdict"] == "no difference":
                interval += " (no difference)"
            if r.get("speedup_ci") and r["speedup_defined"] < 0.995:
                interval += f" (defined in {r['speedup_defined']:.0%} of resamples)"
            median = f"{r['median_speedup']:.2f}x" if r["median_speedup"] else "–"
            cells = [r["policy"], r["versus"], f"{r['matched_accuracy']:.3f}", f"{r['latency']:.1f}",
                     f"{r['versus_latency']:.1f}", f"{r['speedup']:.2f}x", interval, median]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "Latencies are interpolated on each family's accuracy-latency frontier at the matched "
            "accuracy: the higher accuracy both families reach, or target-only's own."
            + (
                " The interval recomputes every point's accuracy and mean latency, the matched accuracy "
                "and the speedup on each resample of problems; an interval containing 1 is no "
                "difference. Where a family does not reach the matched accuracy on some resamples, the "
                "interval is over the others and their share is stated: read it with care, as the "
                "pair is then only barely comparable."
                if boot
                else ""
            ),
        ]
    else:
        lines.append("No pair of policy families reaches a common accuracy.")
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return lines


def _curves(curves: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for name, rows in curves.items():
        family, versus = name.split("_vs_")
        above = sum(1 for r in rows if r["difference"] > 0)
        lines += [
            "",
            f"## {family} vs {versus}: accuracy at {versus}'s acceptance rates",
            "",
            f"{family} is above {versus} at {above} of {len(rows)} of {versus}'s points "
            f"({family}'s accuracy interpolated between its own points).",
            "",
            f"| acceptance | {family} | {versus} | difference | 95% CI | verdict |",
            "| ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in rows:
            verdict = r.get("verdict", "–")
            cells = [f"{r['acceptance']:.3f}", f"{r[family]:.3f}", f"{r[versus]:.3f}",
                     f"{r['difference']:+.3f}", _ci(r.get("difference_ci")), verdict]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _lifts(lifts: list[dict[str, Any]]) -> list[str]:
    if not lifts:
        return []
    lines = [
        "",
        "## Lift over random at the same acceptance rate",
        "",
        "Random mixing of draft and target steps lies on the line from draft-only (acceptance 1) to "
        "target-only (acceptance 0), refined by the measured `random` points; the random accuracy at a "
        "point's acceptance is interpolated between the control points that bracket it. A lift whose "
        "interval contains 0 is no difference, not a win.",
        "",
        "| point | acceptance | accuracy | random at same acceptance | lift | 95% CI | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in sorted(lifts, key=lambda r: (r["family"], -r["acceptance"])):
        cells = [r["point"], f"{r['acceptance']:.3f}", f"{r['accuracy']:.3f}", f"{r['random_accuracy']:.3f}",
                 f"{r['lift']:+.3f}", _ci(r.get("lift_ci")), r.get("verdict", "–")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _versus_target(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Each point against target-only",
        "",
        "Accuracy minus target-only's, and target-only's mean latency over the point's (above 1: faster "
        "than running the target alone), on the same problems. A point worth running instead of the "
        "target is not below it in accuracy and is faster.",
        "",
        "| point | acceptance | accuracy | − target | 95% CI | verdict | mean latency s | speedup vs target "
        "| 95% CI | verdict |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["family"], -r["acceptance"])):
        accuracy = [f"{r['accuracy']:.3f}", f"{r['difference']:+.3f}", _ci(r.get("difference_ci")),
                    r.get("accuracy_verdict", "–")]  # fmt: skip
        speed = [f"{r['latency']:.1f}", f"{r['speedup']:.2f}x", _ci(r.get("speedup_ci"), ".2f"),
                 r.get("speed_verdict", "–")]  # fmt: skip
        cells = [r["point"], f"{r['acceptance']:.3f}", *accuracy, *speed]
        lines.append("| " + " | ".join(cells) + " |")
    target = rows[0]
    lines += ["", f"Target-only: accuracy {target['target_accuracy']:.3f}, mean latency "
              f"{target['target_latency']:.1f} s."]  # fmt: skip
    return lines


def _waste(points: list[Point]) -> list[str]:
    waste = [p for p in points if p.family == "rsd" and p.wasted is not None and p.rewarded]
    if not waste:
        return []
    lines = ["", "## RSD waste: escalations whose target step did not beat the draft's reward", "",
             "| point | deferral rate | escalations (both rewards known) | wasted | share wasted |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for p in sorted(waste, key=lambda p: p.acceptance, reverse=True):
        assert p.wasted is not None
        lines.append(f"| {p.label} | {1 - p.acceptance:.3f} | {p.rewarded} | {p.wasted} | "
                     f"{p.wasted / p.rewarded:.3f} |")  # fmt: skip
    return lines


def markdown(
    title: str,
    points: list[Point],
    comparisons: dict[str, Any],
    errored: dict[str, dict[str, Any]],
    notes: list[str],
) -> str:
    """The whole page."""
    boot = comparisons.get("bootstrap")
    lines = [f"# {title}", "", *_points_table(points), *_errored(errored)]
    excluded = comparisons.get("excluded_from_comparisons") or []
    if boot is not None:
        lines += [
            "",
            "## Comparisons",
            "",
            f"The comparisons below are paired: every point on the same {boot['problems']} problems, the "
            "ones that every point completed"
            + (
                f" (problem(s) {', '.join(excluded)} errored in, or were not yet run by, some point and are "
                "left out of every point here, so their figures can differ from the table above)."
                if excluded
                else "."
            ),
        ]
    lines += _speedups(comparisons["speedups"], notes, boot is not None)
    lines += _curves(comparisons["curves"])
    lines += _lifts(comparisons["random_lift"])
    lines += _versus_target(comparisons["versus_target"])
    lines += _waste(points)
    lines += [""]
    if boot is not None:
        lines += [
            f"Intervals: paired bootstrap over the {boot['problems']} problems ({boot['resamples']:,} "
            f"resamples, seed {boot['seed']}): each resample draws problem ids with replacement once, "
            "recomputes every point's accuracy, acceptance and mean latency on them (errored problems "
            "left out of their point) and then the compared quantity; 2.5th–97.5th percentiles.",
        ]
    else:
        lines += ["No intervals on the comparisons: the points' records.jsonl files were not found."]
    lines += ["", "![accuracy vs acceptance](accuracy_vs_acceptance.png)", "",
              "![accuracy vs latency](accuracy_vs_latency.png)", ""]  # fmt: skip
    return "\n".join(lines)
