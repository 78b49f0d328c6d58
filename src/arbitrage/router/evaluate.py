"""Evaluate routers the way the paper does: saved routers on held-out rows, and the ablation tables.

- :func:`evaluate_saved`: score a saved router on the rows of questions it was *not* trained on (its
  own validation questions, plus any question collected since), never on a training question.
- :func:`run_ablation`: one split, five trainings, the paper's three tables: history annotation on vs
  off, 2 vs 4 vs 10 classes, downsampling on vs off. Every variant changes one option of the base
  options (defaults: annotated, binary, downsampled), so the base variant is a row of every table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from arbitrage.errors import RouterError
from arbitrage.router.metrics import RouterMetrics, router_metrics
from arbitrage.router.store import LoadedRouter, fingerprint
from arbitrage.router.train import RouterData, TrainOptions, fit_router, labelled, prepare, variant

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One router (or ablation variant) scored on held-out rows. Read by the tables and the JSON."""

    name: str  # what is being compared, e.g. "annotated" / "10 classes" / a router folder
    metrics: RouterMetrics
    details: dict[str, Any] = field(default_factory=dict)  # options, label scheme, timings

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metrics": self.metrics.to_dict(), "details": self.details}


def evaluate_saved(loaded: LoadedRouter, rows: Sequence[Mapping[str, Any]]) -> EvalRow:
    """Metrics of a saved router on the rows whose question it was not trained on."""
    held = [r for r in rows if str(r["question_id"]) not in loaded.train_questions]
    if not held:
        raise RouterError(
            f"Every question in these {len(rows)} rows was used to train {loaded.path}; evaluate on rows of "
            "other questions (its validation split or a new collection)"
        )
    data = labelled(held)
    scores = loaded.router.score_batch(data.examples)
    metrics = router_metrics(scores, data.deltas, data.question_ids)
    details = {
        "path": str(loaded.path),
        "kind": loaded.kind,
        "labels": loaded.config.get("labels", {}).get("name"),
        "annotate": loaded.config.get("annotate"),
        "downsample": loaded.config.get("downsample"),
        "rows_skipped_as_training": len(rows) - len(held),
        "fingerprint": fingerprint(held),
        "inference": loaded.config.get("inference", {}),
    }
    return EvalRow(str(loaded.path), metrics, details)


ABLATIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "History annotation": [("annotated", {"annotate": True}), ("not annotated", {"annotate": False})],
    "Label classes": [
        ("2 classes", {"classes": 2}),
        ("4 classes", {"classes": 4}),
        ("10 classes", {"classes": 10}),
    ],
    "Downsampling": [("downsampled", {"downsample": True}), ("all rows", {"downsample": False})],
}


@dataclass(frozen=True, slots=True)
class AblationResult:
    """The three ablation tables on one split."""

    base: TrainOptions
    data: dict[str, Any]  # row counts, fingerprint, models
    tables: dict[str, list[EvalRow]]  # table title -> rows

    def to_dict(self) -> dict[str, Any]:
        base = asdict(self.base)
        base["lm"] = self.base.lm.to_dict()
        return {
            "base_options": base,
            "data": self.data,
            "tables": {t: [r.to_dict() for r in rows] for t, rows in self.tables.items()},
        }


def run_ablation(
    rows: Sequence[Mapping[str, Any]],
    base: TrainOptions,
    on_variant: Callable[[str], None] | None = None,
    progress: bool = False,
) -> AblationResult:
    """Train every variant of :data:`ABLATIONS` on one split of ``rows`` and score it on the held-out rows."""
    data: RouterData = prepare(rows, base.val_fraction, base.seed)
    done: dict[TrainOptions, EvalRow] = {}
    tables: dict[str, list[EvalRow]] = {}
    for title, variants in ABLATIONS.items():
        tables[title] = []
        for name, changes in variants:
            options = variant(base, **changes)
            if options not in done:
                if on_variant is not None:
                    on_variant(options.label)
                logger.info("== ablation variant: %s", options.label)
                trained = fit_router(data, options, progress)
                details = {
                    "labels": trained.scheme.to_dict(),
                    "train_rows_used": trained.config["data"]["train_rows_used"],
                    "train_seconds": trained.config["train_seconds"],
                    "inference": trained.config["inference"],
                }
                done[options] = EvalRow(options.label, trained.metrics, details)
            row = done[options]
            tables[title].append(EvalRow(name, row.metrics, {"variant": row.name, **row.details}))
    info = {**data.info, "fingerprint": data.fingerprint, "val_questions": len(set(data.val.question_ids))}
    return AblationResult(base, info, tables)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _with_ci(x: float | None, ci: tuple[float, float] | None) -> str:
    return _fmt(x) if ci is None or x is None else f"{x:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"


HEADER = (
    "| {first} | Spearman ρ [95% CI] | balanced acc. [95% CI] | acc. label 0 | acc. label 1 | ROC-AUC "
    "| escalation @0.5 | rows |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def markdown_table(rows: Sequence[EvalRow], first: str = "router") -> str:
    """A Markdown table of metrics, one line per row."""
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
    parts = [
        f"Ablation of the {result.base.kind} router on {d['rows']} step pairs "
        f"from {d['questions']} questions "
        f"({d['train_rows']} training / {d['val_rows']} held-out rows from {d['val_questions']} questions, "
        f"split by question id, seed {result.base.seed}); base variant: {result.base.label}.",
    ]
    for title, rows in result.tables.items():
        parts.append(f"### {title}\n\n{markdown_table(rows, 'variant')}")
    parts.append(
        "Intervals: 95% bootstrap over held-out questions (1,000 resamples; a question's rows move "
        "together). Accuracies at ŷ > 0.5."
    )
    return "\n\n".join(parts) + "\n"
