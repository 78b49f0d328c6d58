"""Evaluate routers the way the paper does: saved routers on held-out rows, and the ablation tables.

- :func:`evaluate_saved`: score a saved router on the rows of questions it was *not* trained on (its
  own validation questions, plus any question collected since), never on a training question; and
  cross-validate its training options over k question-grouped folds (:func:`cross_validate`).
- :func:`run_ablation`: the paper's three tables (history annotation on vs off, 2 vs 4 vs 10 classes,
  downsampling on vs off), each variant cross-validated over the same k folds. Every variant changes
  one option of the base options (defaults: annotated, binary, downsampled), so the base variant is a
  row of every table.

- :func:`compare_inputs`: draft-only, target-side and combined ``features`` routers side by side, and
  the raw verification scores alone as untrained baselines (−GSI, −target mean logprob, −agreement:
  lower means the target likes the draft's step less, so escalate), each against the PRM's Δ and
  against the outcome advantage where the rows have it, over the same k folds (rows with the target's
  verification only, so every scorer sees the same rows).

Cross-validation (k question-grouped folds, default 5): question ids are dealt into k folds (sklearn
``GroupKFold`` with a seeded shuffle), so all steps of a question sit in one fold; for each fold a router
is trained on the other k−1 folds and scored on it. Each metric is reported as the mean over the folds
with a 95% interval (:class:`arbitrage.router.metrics.FoldMetrics`), not as one split's number: one
split of a few dozen held-out questions moves ρ by more than the differences being compared. ``folds=1``
is the single split by ``val_fraction`` of earlier versions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from arbitrage.errors import RouterError
from arbitrage.router.base import VerificationSummary
from arbitrage.router.labels import CLASS_COUNTS, LABEL_SOURCES
from arbitrage.router.metrics import FoldMetrics, RouterMetrics, router_metrics
from arbitrage.router.store import LoadedRouter, fingerprint
from arbitrage.router.train import (
    RouterData,
    TrainedRouter,
    TrainOptions,
    advantage,
    fit_router,
    labelled,
    prepare,
    usable_rows,
    variant,
)

logger = logging.getLogger(__name__)

DEFAULT_FOLDS = 5


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One router (or ablation variant) scored on held-out rows. Read by the tables and the JSON."""

    name: str  # what is being compared, e.g. "annotated" / "10 classes" / a router folder
    # a saved router: on its held-out rows; a cross-validated variant: all out-of-fold scores pooled
    metrics: RouterMetrics
    details: dict[str, Any] = field(default_factory=dict)  # options, label scheme, timings
    folds: FoldMetrics | None = None  # over k question-grouped folds (None: not cross-validated)

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "metrics": self.metrics.to_dict(), "details": self.details}
        return {**data, "folds": self.folds.to_dict() if self.folds is not None else None}


def question_folds(question_ids: Sequence[str], folds: int, seed: int) -> list[np.ndarray]:
    """Row indices of each of ``folds`` held-out folds; a question's rows share a fold (seeded)."""
    from sklearn.model_selection import GroupKFold

    unique = len(set(question_ids))
    if folds < 2 or folds > unique:
        raise RouterError(
            f"--folds must be within [2, {unique}] (the rows hold {unique} questions), got {folds}"
        )
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    groups = np.asarray(question_ids)
    return [held for _, held in splitter.split(np.zeros(len(groups)), groups=groups)]


def cross_validate(
    rows: Sequence[Mapping[str, Any]],
    options: TrainOptions,
    folds: int = DEFAULT_FOLDS,
    progress: bool = False,
    scored_against: str | None = None,
) -> tuple[FoldMetrics, list[TrainedRouter]]:
    """Train ``options`` on k−1 folds and score the held-out fold, for each of ``folds`` folds.

    ``scored_against``: the label source the held-out scores are measured against (default: the one the
    router trains on), e.g. a router trained on the PRM's Δ scored against the outcome advantage; rows
    without that source's advantage are left out."""
    if scored_against is not None:
        rows = [r for r in rows if advantage(r, scored_against) is not None]
    # validates the rows; its info is reused
    base = prepare(rows, options.val_fraction, options.seed, label_source=options.label_source,
                   inputs=options.inputs)  # fmt: skip
    rows, _ = usable_rows(rows, options.label_source, options.inputs)
    everything = labelled(rows, options.label_source)
    truth = everything.deltas if scored_against is None else labelled(rows, scored_against).deltas
    per_fold, trained = [], []
    scores, held_rows = [], []
    for k, held in enumerate(question_folds(everything.question_ids, folds, options.seed), start=1):
        train_index = np.setdiff1d(np.arange(len(everything)), held)
        info = {**base.info, "train_rows": int(train_index.size), "val_rows": int(held.size), "fold": k}
        data = RouterData(everything.subset(train_index), everything.subset(held), base.fingerprint,
                          1 / folds, options.seed, info)  # fmt: skip
        logger.info("fold %d/%d: %s", k, folds, options.label)
        result = fit_router(data, options, progress)
        if scored_against is None:
            per_fold.append(result.metrics)
        else:
            ids = [everything.question_ids[i] for i in held]
            per_fold.append(router_metrics(result.val_scores, truth[held], ids))
        trained.append(result)
        scores.append(result.val_scores)
        held_rows.append(held)
    order = np.concatenate(held_rows)
    pooled = router_metrics(np.concatenate(scores), truth[order],
                            [everything.question_ids[i] for i in order])  # fmt: skip
    return FoldMetrics(folds, options.seed, tuple(per_fold), pooled), trained


def options_of(loaded: LoadedRouter, fallback: TrainOptions) -> TrainOptions:
    """The training options recorded in a saved router's config (``fallback`` for what it lacks, e.g.
    the lm router's backbone and fine-tuning settings)."""
    config, labels = loaded.config, loaded.config.get("labels", {})
    kind_config = config.get("kind_config", {})
    classes = int(labels.get("requested_classes", labels.get("num_classes", fallback.classes)))
    return replace(
        fallback,
        kind=str(config.get("kind", fallback.kind)),
        classes=classes if classes in CLASS_COUNTS else fallback.classes,
        score=str(labels.get("score", fallback.score)),
        annotate=bool(config.get("annotate", fallback.annotate)),
        downsample=bool(config.get("downsample", fallback.downsample)),
        seed=int(config.get("split", {}).get("seed", fallback.seed)),
        estimator=str(kind_config.get("estimator", fallback.estimator)),
        label_source=str(config.get("label_source", "prm")),
        inputs=str(config.get("inputs", "draft")),
    )


def evaluate_saved(
    loaded: LoadedRouter,
    rows: Sequence[Mapping[str, Any]],
    folds: int = 0,
    fallback: TrainOptions | None = None,
    progress: bool = False,
) -> EvalRow:
    """Metrics of a saved router on the rows whose question it was not trained on; with ``folds`` ≥ 2,
    also its training options cross-validated on all ``rows`` over that many question-grouped folds
    (an lm router needs ``fallback`` options naming a backbone for that, or is not cross-validated)."""
    held = [r for r in rows if str(r["question_id"]) not in loaded.train_questions]
    if not held:
        raise RouterError(
            f"Every question in these {len(rows)} rows was used to train {loaded.path}; evaluate on rows of "
            "other questions (its validation split or a new collection)"
        )
    source, inputs = str(loaded.config.get("label_source", "prm")), str(loaded.config.get("inputs", "draft"))
    held, _ = usable_rows(held, source, inputs)
    data = labelled(held, source)
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
    cv = None
    if folds >= 2:
        options = options_of(loaded, fallback or TrainOptions())
        if options.kind == "lm" and options.lm.backbone is None:
            details["cross_validation"] = "skipped: an lm router is retrained per fold only with --backbone"
            logger.warning("%s: not cross-validated (an lm router needs --backbone to retrain)", loaded.path)
        else:
            cv, _ = cross_validate(rows, options, folds, progress)
            details["cross_validated_options"] = options.label
    return EvalRow(str(loaded.path), metrics, details, cv)


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
    folds: int = DEFAULT_FOLDS,
) -> AblationResult:
    """Train every variant of :data:`ABLATIONS` over ``folds`` question-grouped folds of ``rows`` (the
    same folds for every variant) and score each on its held-out folds; ``folds=1``: one split."""
    data: RouterData = prepare(rows, base.val_fraction, base.seed, label_source=base.label_source,
                               inputs=base.inputs)  # fmt: skip
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
                done[options] = _variant_row(rows, data, options, folds, progress)
            row = done[options]
            tables[title].append(EvalRow(name, row.metrics, {"variant": row.name, **row.details}, row.folds))
    info = {**data.info, "fingerprint": data.fingerprint, "val_questions": len(set(data.val.question_ids)),
            "folds": folds}  # fmt: skip
    return AblationResult(base, info, tables)


def _variant_row(
    rows: Sequence[Mapping[str, Any]], data: RouterData, options: TrainOptions, folds: int, progress: bool
) -> EvalRow:
    if folds <= 1:
        trained = fit_router(data, options, progress)
        details = {
            "labels": trained.scheme.to_dict(),
            "train_rows_used": trained.config["data"]["train_rows_used"],
            "train_seconds": trained.config["train_seconds"],
            "inference": trained.config["inference"],
        }
        return EvalRow(options.label, trained.metrics, details)
    cv, fits = cross_validate(rows, options, folds, progress)
    details = {
        "labels": fits[0].scheme.to_dict(),  # fold 1's (edges are fitted per fold)
        "train_rows_used": round(float(np.mean([f.config["data"]["train_rows_used"] for f in fits]))),
        "train_seconds": float(np.mean([f.config["train_seconds"] for f in fits])),
        "inference": fits[0].config["inference"],
    }
    return EvalRow(options.label, cv.pooled, details, cv)


# untrained baselines: one verification number as the escalation score (higher = escalate sooner)
BASELINES: dict[str, Callable[[VerificationSummary], float]] = {
    "−GSI (target − draft mean logprob)": lambda v: -v.gsi,
    "−target mean logprob": lambda v: -v.mean_logprob,
    "−target agreement": lambda v: -v.agreement,
}
INPUT_VARIANTS = (
    ("draft", "router: draft-only features"),
    ("target", "router: target-side features"),
    ("both", "router: draft + target features"),
)
LABEL_NAMES = {"prm": "PRM Δ", "outcome": "outcome advantage"}


@dataclass(frozen=True, slots=True)
class InputsComparison:
    """Routers by inputs and the raw verification baselines, per label source (:func:`compare_inputs`)."""

    base: TrainOptions
    data: dict[str, Any]  # rows used, rows dropped, folds
    tables: dict[str, list[EvalRow]]  # label source ("prm" / "outcome") -> one row per scorer

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_options": self.base.label,
            "data": self.data,
            "tables": {s: [r.to_dict() for r in rows] for s, rows in self.tables.items()},
        }


def baseline_row(name: str, rows: Sequence[Mapping[str, Any]], source: str, folds: int, seed: int) -> EvalRow:
    """One raw verification score (no training) over the same question folds as the routers."""
    data = labelled(rows, source)
    score = BASELINES[name]
    scores = np.asarray(
        [score(e.verification) if e.verification is not None else np.nan for e in data.examples]
    )
    ids = data.question_ids
    per_fold = tuple(
        router_metrics(scores[h], data.deltas[h], [ids[i] for i in h])
        for h in question_folds(ids, folds, seed)
    )
    pooled = router_metrics(scores, data.deltas, ids)
    return EvalRow(
        name, pooled, {"baseline": True, "label_source": source}, FoldMetrics(folds, seed, per_fold, pooled)
    )


def compare_inputs(
    rows: Sequence[Mapping[str, Any]],
    base: TrainOptions,
    folds: int = DEFAULT_FOLDS,
    progress: bool = False,
    on_variant: Callable[[str], None] | None = None,
) -> InputsComparison:
    """Features routers on draft / target / both inputs and the verification baselines, per label source.

    Only rows with the target's verification take part (all scorers on the same rows); each label source
    uses the rows that have its advantage. A router is trained on the label source it is scored against.
    """
    verified = [r for r in rows if r.get("t_tokens") is not None]
    if not verified:
        raise RouterError(
            f"None of the {len(rows)} rows has the target's verification (t_* columns): collect with a "
            "target that can verify steps"
        )
    tables: dict[str, list[EvalRow]] = {}
    used: dict[str, int] = {}
    for source in LABEL_SOURCES:
        subset = [r for r in verified if advantage(r, source) is not None]
        if not subset:
            continue
        used[source] = len(subset)
        table = []
        # routers trained on this source; for a grounded source also on the PRM's Δ, scored against it
        # (which labels to train on)
        for trained_on in (source,) if source == "prm" else (source, "prm"):
            crossed = trained_on != source
            for inputs, name in INPUT_VARIANTS:
                options = variant(base, kind="features", inputs=inputs, label_source=trained_on)
                if on_variant is not None:
                    on_variant(f"{options.label} vs {LABEL_NAMES[source]}")
                cv, _ = cross_validate(
                    subset, options, folds, progress, scored_against=source if crossed else None
                )
                details = {"options": options.label, "label_source": trained_on}
                if crossed:
                    details["scored_against"] = source
                shown = f"{name}, trained on {LABEL_NAMES[trained_on]}" if crossed else name
                table.append(EvalRow(shown, cv.pooled, details, cv))
        table.extend(baseline_row(name, subset, source, folds, base.seed) for name in BASELINES)
        tables[source] = table
    info = {"rows": len(rows), "verified_rows": len(verified), "rows_per_label_source": used, "folds": folds,
            "questions": len({r["question_id"] for r in verified})}  # fmt: skip
    return InputsComparison(base, info, tables)
