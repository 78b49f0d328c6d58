"""Router evaluations and trainings as Markdown: the metric tables, and what ``eval-router`` and
``train-router`` report (measured by :mod:`arbitrage.router.evaluate` and :mod:`arbitrage.router.train`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from arbitrage.router.evaluate import (
    LABEL_NAMES,
    AblationResult,
    EvalRow,
    InputsComparison,
    compare_inputs,
    evaluate_saved,
    run_ablation,
)
from arbitrage.router.metrics import FoldStat, tau_for_rate
from arbitrage.router.store import LoadedRouter
from arbitrage.router.train import TrainedRouter, TrainOptions


def evaluation_report(
    data: Path,
    rows: list[dict[str, Any]],
    routers: Sequence[LoadedRouter],
    folds: int,
    options: TrainOptions | None,
    *,
    ablation: bool = False,
    inputs: bool = False,
    on_variant: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], str]:
    """What ``eval-router`` reports on the step pairs ``rows`` (read from ``data``): ``(JSON, Markdown)``.

    The saved ``routers`` on their held-out questions (with ``folds >= 2`` and ``options``, their
    training options cross-validated too), the ablation tables (``ablation``) and the router inputs
    against the verification baselines (``inputs``), both trained from ``options``.
    """
    report: dict[str, Any] = {"data": str(data)}
    markdown: list[str] = []
    if routers:
        results = [evaluate_saved(r, rows, folds, options, progress=True) for r in routers]
        report["routers"] = [r.to_dict() for r in results]
        markdown.append(f"## Routers on held-out questions of {data}\n\n{markdown_table(results)}\n")
        crossed = [r for r in results if r.folds is not None]
        if crossed:
            markdown.append(
                f"## The same training options over {folds} question-grouped folds of {data}\n\n"
                f"{fold_table(crossed)}\n\n{FOLD_NOTE}\n"
            )
    if ablation and options is not None:
        result = run_ablation(rows, options, on_variant=on_variant, progress=True, folds=max(folds, 1))
        report["ablation"] = result.to_dict()
        markdown.append(f"## Ablation\n\n{ablation_markdown(result)}")
    if inputs and options is not None:
        comparison = compare_inputs(rows, options, max(folds, 2), progress=True, on_variant=on_variant)
        report["inputs"] = comparison.to_dict()
        markdown.append(f"## Router inputs and verification baselines\n\n{comparison_markdown(comparison)}")
    return report, "\n".join(markdown)


def training_summary(trained: TrainedRouter, path: Path) -> str:
    """What ``train-router`` prints about a router it trained and saved to ``path``."""
    d, inference, label = trained.config["data"], trained.config["inference"], trained.options.label
    lines = []
    dropped = {k: v for k, v in d.get("rows_dropped", {}).items() if v}
    if dropped:
        lines.append("dropped rows: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()))
    lines.append(
        f"trained {label} on {d['train_rows_used']} of {d['train_rows']} training rows; "
        f"validated on {d['val_rows']} rows of {trained.metrics.questions} held-out questions"
    )
    lines.append(
        f"label scheme {trained.scheme.name}: Δ edges {[round(e, 4) for e in trained.scheme.edges]}\n"
    )
    lines.append(markdown_table([EvalRow(label, trained.metrics)]))
    rates = ", ".join(
        f"{r:.0%} -> τ {tau_for_rate(trained.tau_table, r).tau:.4f}" for r in (0.1, 0.2, 0.3, 0.5)
    )
    lines.append(f"\nescalation rate -> τ (validation): {rates}")
    if inference:
        lines.append(
            f"inference: {inference['median_seconds'] * 1e3:.3f} ms per step "
            f"(median of {inference['calls']}, p90 {inference['p90_seconds'] * 1e3:.3f} ms); "
            f"training {trained.config['train_seconds']:.1f} s"
        )
    lines.append(f"saved to {path}")
    return "\n".join(lines)


def comparison_markdown(result: InputsComparison) -> str:
    """One table: a line per scorer, ρ and ROC-AUC (fold means, 95% intervals) per label source."""
    sources = list(result.tables)
    names = list(dict.fromkeys(r.name for table in result.tables.values() for r in table))
    head = "| scorer | " + " | ".join(f"ρ vs {LABEL_NAMES[s]} | ROC-AUC vs {LABEL_NAMES[s]}" for s in sources)
    lines = [head + " |", "| --- |" + " ---: | ---: |" * len(sources)]
    for name in names:
        cells = []
        for s in sources:
            row = next((r for r in result.tables[s] if r.name == name), None)
            if row is None or row.folds is None:  # a scorer measured against the other label only
                cells += ["–", "–"]
                continue
            cells += [_fold_cell(row.folds.stat("spearman")), _fold_cell(row.folds.stat("roc_auc"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    d = result.data
    counts = ", ".join(f"{LABEL_NAMES[s]}: {n} rows" for s, n in d["rows_per_label_source"].items())
    intro = (
        f"Step pairs with the target's verification: {d['verified_rows']} of {d['rows']} rows, "
        f"{d['questions']} questions ({counts}); {d['folds']} question-grouped folds, "
        f"seed {result.base.seed}. "
        "Routers: the features router trained on the label it is scored against, and (rows "
        f'"trained on {LABEL_NAMES["prm"]}") trained on the PRM\'s Δ and scored against the grounded '
        "label, to choose the labels to train on; baselines: one verification number as the escalation "
        "score, no training."
    )
    return f"{intro}\n\n" + "\n".join(lines) + f"\n\n{FOLD_NOTE}\n"


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _with_ci(x: float | None, ci: tuple[float, float] | None) -> str:
    return _fmt(x) if ci is None or x is None else f"{x:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"


HEADER = (
    "| {first} | Spearman ρ [95% CI] | balanced acc. [95% CI] | acc. label 0 | acc. label 1 | ROC-AUC "
    "| escalation @0.5 | rows |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


FOLD_HEADER = (
    "| {first} | Spearman ρ mean [95% CI] | balanced acc. mean [95% CI] | ROC-AUC mean [95% CI] "
    "| acc. label 0 | acc. label 1 | escalation @0.5 | ρ per fold | pooled ρ | rows |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
)


def _fold_cell(stat: FoldStat) -> str:
    return _with_ci(stat.mean, stat.ci)


def fold_table(rows: Sequence[EvalRow], first: str = "router") -> str:
    """A Markdown table of cross-validated rows: each metric's mean over the folds and its interval."""
    lines = [FOLD_HEADER.format(first=first)]
    for row in rows:
        f = row.folds
        if f is None:
            continue
        per_fold = ", ".join(_fmt(v, 2) for v in f.stat("spearman").values)
        lines.append(
            f"| {row.name} | {_fold_cell(f.stat('spearman'))} | {_fold_cell(f.stat('balanced_accuracy'))} | "
            f"{_fold_cell(f.stat('roc_auc'))} | {_fmt(f.stat('accuracy_label0').mean)} | "
            f"{_fmt(f.stat('accuracy_label1').mean)} | {_fmt(f.stat('escalation_rate').mean)} | {per_fold} | "
            f"{_fmt(f.pooled.spearman)} | {f.pooled.rows} |"
        )
    return "\n".join(lines)


def markdown_table(rows: Sequence[EvalRow], first: str = "router") -> str:
    """A Markdown table of metrics, one line per row (their fold summaries: :func:`fold_table`)."""
    lines = [HEADER.format(first=first)]
    for row in rows:
        m = row.metrics
        lines.append(
            f"| {row.name} | {_with_ci(m.spearman, m.spearman_ci)} | "
            f"{_with_ci(m.balanced_accuracy, m.balanced_accuracy_ci)} | {_fmt(m.accuracy_label0)} | "
            f"{_fmt(m.accuracy_label1)} | {_fmt(m.roc_auc)} | {_fmt(m.escalation_rate)} | {m.rows} |"
        )
    return "\n".join(lines)


def ablation_markdown(result: AblationResult) -> str:
    """The three ablation tables, each under a heading, with the data and base options above them."""
    d = result.data
    folds = int(d.get("folds", 1))
    if folds > 1:
        split = (f"{folds} folds by question id, seed {result.base.seed}: each variant trained "
                 f"{folds} times, each time scored on the questions it did not see")  # fmt: skip
    else:
        seed = result.base.seed
        split = (f"{d['train_rows']} training / {d['val_rows']} held-out rows from "
                 f"{d['val_questions']} questions, split by question id, seed {seed}")  # fmt: skip
    parts = [
        f"Ablation of the {result.base.kind} router on {d['rows']} step pairs from {d['questions']} "
        f"questions ({split}); base variant: {result.base.label}.",
    ]
    for title, rows in result.tables.items():
        table = fold_table(rows, "variant") if folds > 1 else markdown_table(rows, "variant")
        parts.append(f"### {title}\n\n{table}")
    parts.append(FOLD_NOTE if folds > 1 else BOOTSTRAP_NOTE)
    return "\n\n".join(parts) + "\n"


BOOTSTRAP_NOTE = (
    "Intervals: 95% bootstrap over held-out questions (1,000 resamples; a question's rows move "
    "together). Accuracies at ŷ > 0.5."
)
FOLD_NOTE = (
    "Means over the question-grouped folds, with 95% t intervals (mean ± t·sd/√k over the k per-fold "
    "values; the folds share training rows, so the intervals are approximate). Pooled ρ: all out-of-fold "
    "scores together. Accuracies at ŷ > 0.5."
)
