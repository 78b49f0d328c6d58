"""What the CLI shows, as rich text and tables: a solve's steps and summary, an evaluation's and a sweep's
summaries, the step scorers' results (``eval-prm``). Built from the result objects; the caller passes the
console, so the library itself prints nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from arbitrage.evaluation.summary import EvalSummary
from arbitrage.trace import SolveTrace, StepRecord


def print_step(console: Console, record: StepRecord) -> None:
    """One accepted step, marked by the model that wrote it."""
    if record.role == "target":
        tag = f"[bold magenta]target {escape(record.model)} ↑[/]"
    else:
        tag = f"[bold cyan]draft  {escape(record.model)}[/]"
    why = f" [dim]({escape(record.decision.reason)})[/]" if record.decision.reason else ""
    rewards = _reward_text(record)
    rewards = f" [yellow]{escape(rewards)}[/]" if rewards else ""
    console.print(f"{tag} [dim]step {record.index + 1}, {record.tokens} tok[/]{rewards}{why}")
    console.print(record.text, markup=False, highlight=False)
    console.print()


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_summary(console: Console, trace: SolveTrace) -> None:
    """Steps and tokens per model, seconds, target-call rate, answer."""
    table = Table(title="summary", show_header=True)
    for column in (
        "model",
        "role",
        "steps kept",
        "calls",
        "tokens gen.",
        "prefill tok",
        "seconds",
        "decode tok/s",
    ):
        table.add_column(column, justify="right")
    for role, usage in trace.usage.items():
        kept = sum(1 for s in trace.steps if s.role == role)
        table.add_row(
            usage.model or "-",
            role,
            str(kept),
            str(usage.calls),
            str(usage.generated_tokens),
            str(usage.prefill_tokens),
            _fmt(usage.seconds),
            _fmt(usage.decode_tokens_per_second, ".1f"),
        )
    console.print(table)
    console.print(
        f"steps {len(trace.steps)}   acceptance rate {_fmt(trace.acceptance_rate)}   "
        f"target-call rate {_fmt(trace.target_call_rate)}   policy s {trace.policy_seconds:.3f}   "
        f"wall s {trace.wall_seconds:.1f}   stop {trace.stop_reason}"
    )
    target = trace.usage["target"]
    if target.spec_rounds or trace.policy.startswith("auto"):
        reason = trace.steps[0].decision.reason if trace.steps else ""
        share = f"{target.spec_accepted}/{target.spec_proposed}" if target.spec_proposed else "none"
        console.print(
            f"policy {escape(trace.policy)}   speculation rounds {target.spec_rounds}, "
            f"proposed tokens kept {share}"
        )
        if reason.startswith("auto"):
            console.print(f"[dim]{escape(reason)}[/]")
    if any(s.decision.draft_reward is not None for s in trace.steps) or trace.diagnostic_seconds:
        wasted = trace.wasted_escalations
        waste = "-" if wasted is None else f"{wasted}/{trace.escalations_with_rewards}"
        console.print(
            f"PRM (policy) s {trace.policy_seconds:.2f}   diagnostics s {trace.diagnostic_seconds:.2f} "
            f"(not in latency)   latency (wall) s {trace.wall_latency_seconds:.1f}   "
            f"wasted escalations {waste}"
        )
    console.print(f"[bold]answer[/] {escape(str(trace.answer))}")


def print_eval_summary(console: Console, summary: EvalSummary, out: Path) -> None:
    """The headline numbers of an evaluation run."""
    lo, hi = summary.accuracy_ci
    title = f"{summary.policy}: {summary.problems} problems, {summary.errors} errored"
    table = Table(title=title, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    s = summary
    rows = [
        ("accuracy (completed problems)",
         f"{s.accuracy:.3f} ({s.correct}/{s.completed}, 95% CI {lo:.3f}–{hi:.3f})"),
        ("errored (not in accuracy)", f"{s.errors}" + (f": {', '.join(s.errored_ids)}" if s.errors else "")),
        ("acceptance rate (steps)", _fmt(summary.acceptance_rate, ".3f")),
        ("acceptance rate (tokens)", _fmt(summary.token_acceptance_rate, ".3f")),
        ("target-call rate", _fmt(summary.target_call_rate, ".3f")),
        ("steps / problem", f"{summary.steps_mean:.1f}"),
        ("draft / target tokens / problem", f"{s.draft_tokens_mean:.0f} / {s.target_tokens_mean:.0f}"),
        ("latency mean / median / p90 (s)",
         f"{summary.latency_mean_s:.1f} / {summary.latency_median_s:.1f} / {summary.latency_p90_s:.1f}"),
        ("policy (PRM/router) s per problem", f"{summary.policy_seconds_mean:.3f}"),
        ("escalations", str(summary.escalations)),
    ]  # fmt: skip
    if summary.wasted_escalations is not None:
        rows.append(("wasted escalations (diagnosed)", str(summary.wasted_escalations)))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if summary.errors:
        console.print(
            f"[yellow]{summary.errors} errored problem(s) are not counted in accuracy or latency; "
            "rerun the same command to solve them again[/]"
        )
    console.print(f"records: {out / 'records.jsonl'}   summary: {out / 'summary.json'}")


def print_sweep_table(console: Console, summaries: list[EvalSummary], out: Path) -> None:
    """One row per sweep point."""
    table = Table(title=f"sweep: {out}")
    for column in (
        "policy",
        "accuracy (completed)",
        "errored",
        "acceptance",
        "target calls",
        "latency median s",
        "replayed/live calls",
    ):
        table.add_column(column, justify="right")
    for s in summaries:
        table.add_row(
            s.policy,
            f"{s.accuracy:.3f} ({s.correct}/{s.completed})",
            str(s.errors),
            _fmt(s.acceptance_rate, ".3f"),
            _fmt(s.target_call_rate, ".3f"),
            f"{s.latency_median_s:.1f}",
            f"{s.replayed_calls}/{s.live_calls}",
        )
    console.print(table)
    console.print("accuracy is over the completed problems; errored ones (their solve raised) are counted "
                  "apart and run again when the sweep is resumed")  # fmt: skip
    console.print(f"sweep summary: {out / 'sweep.json'}   plots: arbitrage report {out}")


def _reward_text(record: StepRecord) -> str:
    """Rewards behind a decision, e.g. "draft 0.82 target 0.91 Δ +0.09", or ""."""
    d = record.decision
    parts = []
    if d.draft_reward is not None:
        parts.append(f"draft {d.draft_reward:.2f}")
    if d.target_reward is not None:
        parts.append(f"target {d.target_reward:.2f}")
    if d.advantage is not None:
        parts.append(f"Δ {d.advantage:+.2f}")
    return "  ".join(parts)


def print_prm_table(console: Console, results: list[dict[str, Any]], rows: int) -> None:
    """The eval-prm table: one row per scorer."""
    table = Table(title=f"step scorers on {rows} labelled steps")
    for column in ("scorer", "AUROC", "95% CI", "mean right", "mean wrong", "s/call", "prefill tok/call",
                   "vs result", "vs operand", "draft AUROC"):  # fmt: skip
        table.add_column(column, justify="right" if column != "scorer" else "left")
    for r in results:
        kinds = r.get("by_kind", {})
        ci = r.get("auroc_ci")
        table.add_row(
            escape(str(r["spec"])),
            _fmt(r.get("auroc"), ".3f"),
            f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "-",
            _fmt(r.get("mean_right"), ".3f"),
            _fmt(r.get("mean_wrong"), ".3f"),
            _fmt(r.get("seconds_per_call"), ".3f"),
            _fmt(r.get("prefill_tokens_per_call"), ".0f"),
            _fmt(kinds.get("corrupt-result", {}).get("auroc_vs_gold"), ".3f"),
            _fmt(kinds.get("corrupt-operand", {}).get("auroc_vs_gold"), ".3f"),
            _fmt(kinds.get("draft", {}).get("auroc"), ".3f"),
        )
    console.print(table)
