"""Train a router on collected step pairs: split by question, label, downsample, fit, validate.

1. **Split by question id**, never by row: all steps of a question land on the same side, so a router
   is never validated on a question it has seen steps of. The held-out questions are the
   ``val_fraction`` of question ids that rank first by ``sha256(seed:question_id)``: seeded and
   independent of row order.
2. **Labels** from the advantage by the label scheme (binary, 4 or 10 classes), its edges fitted on
   training rows. The advantage is the PRM's Δ (``label_source="prm"``, the default: y = 1[Δ > 0]) or
   the grounded outcome advantage (``"outcome"``: y = 1[outcome_t − outcome_d > 0], from
   ``collect --labels outcome``; rows without it are dropped, with a count in the config).
   Routers with target-side ``inputs`` (``target`` / ``both``) drop rows without the target's
   verification the same way.
3. **Downsampling** (on by default): the larger side of the binary oracle label (usually the "accept",
   Δ ≤ 0, side) is randomly cut, seeded, to the size of the smaller, so the router sees as many
   escalate as accept examples; with multi-class labels the balance is between the two sides, and the
   classes within a side keep their proportions. Validation rows are never downsampled: their metrics
   and the τ table describe the real mix.
4. **History annotation** (on by default): the lm router's text tags each earlier step with the model
   that wrote it, the features router gets the routing-history features. Off: neither.
5. Fit the router kind, score the validation rows, compute the metrics and the τ → escalation-rate table,
   and time the router's inference per step.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.errors import RouterError
from arbitrage.router.base import Router, RouterExample, SavableRouter
from arbitrage.router.features import INPUTS
from arbitrage.router.labels import CLASS_COUNTS, LABEL_SOURCES, SCORE_MAPPINGS, LabelScheme, fit_scheme
from arbitrage.router.lm import LMOptions
from arbitrage.router.metrics import RouterMetrics, TauRow, router_metrics, tau_table
from arbitrage.router.store import fingerprint

logger = logging.getLogger(__name__)

KIND_NAMES = ("features", "lm")


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """How to train a router (the ``arbitrage train-router`` options)."""

    kind: str = "features"  # "features" | "lm"
    classes: int = 2  # label scheme: 2 (binary), 4 or 10 Δ bins
    score: str = "p_positive"  # class probabilities -> ŷ: "p_positive" or "expected"
    annotate: bool = True  # history annotation
    downsample: bool = True  # class-balanced downsampling of the majority side
    val_fraction: float = 0.2  # share of question ids held out for validation
    seed: int = 0  # split, downsampling and model initialisation
    estimator: str = "logistic"  # features router: "logistic" or "gbt"
    lm: LMOptions = field(default_factory=LMOptions)  # lm router: backbone and fine-tuning
    label_source: str = "prm"  # advantage trained on: "prm" (Δ) or "outcome" (outcome_advantage)
    inputs: str = "draft"  # features router: "draft" (the paper's), "target" or "both"

    def __post_init__(self) -> None:
        if self.label_source not in LABEL_SOURCES:
            raise RouterError(f"--label must be one of {', '.join(LABEL_SOURCES)}, got {self.label_source!r}")
        if self.inputs not in INPUTS:
            raise RouterError(f"--inputs must be one of {', '.join(INPUTS)}, got {self.inputs!r}")
        if self.kind != "features" and self.inputs != "draft":
            raise RouterError(
                f"--inputs {self.inputs} needs --kind features (the lm router reads the draft side)"
            )
        if self.kind not in KIND_NAMES:
            raise RouterError(f"Unknown router --kind {self.kind!r} (known: {', '.join(KIND_NAMES)})")
        if self.classes not in CLASS_COUNTS:
            raise RouterError(
                f"--classes must be one of {', '.join(map(str, CLASS_COUNTS))}, got {self.classes}"
            )
        if self.score not in SCORE_MAPPINGS:
            raise RouterError(f"--score must be one of {', '.join(SCORE_MAPPINGS)}, got {self.score!r}")
        if not 0 < self.val_fraction < 1:
            raise RouterError(f"--val-fraction must be within (0, 1), got {self.val_fraction}")

    @property
    def label(self) -> str:
        """Short description of the variant, e.g. ``features binary annotated downsampled``."""
        classes = "binary" if self.classes == 2 else f"{self.classes}-class"
        extra = (f" {self.inputs} inputs" if self.inputs != "draft" else "") + (
            f" {self.label_source} labels" if self.label_source != "prm" else ""
        )
        return (
            f"{self.kind} {classes}{'' if self.score == 'p_positive' else '/' + self.score} "
            f"{'annotated' if self.annotate else 'unannotated'} "
            f"{'downsampled' if self.downsample else 'all rows'}{extra}"
        )


@dataclass(frozen=True, slots=True)
class LabelledRows:
    """Rows of one split as router inputs with their advantages."""

    examples: list[RouterExample]
    deltas: np.ndarray  # [rows] the advantage trained on: Δ = s_t − s_d, or the outcome advantage
    question_ids: list[str]  # [rows]

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, index: np.ndarray) -> LabelledRows:
        return LabelledRows(
            [self.examples[i] for i in index], self.deltas[index], [self.question_ids[i] for i in index]
        )


@dataclass(frozen=True, slots=True)
class RouterData:
    """Collected rows split by question id into training and validation sets."""

    train: LabelledRows
    val: LabelledRows
    fingerprint: str  # sha256 of all rows used (train + validation)
    val_fraction: float
    seed: int
    info: dict[str, Any]  # counts and the models/PRM the rows came from

    @property
    def split(self) -> dict[str, list[str]]:
        return {
            "train_questions": sorted(set(self.train.question_ids)),
            "val_questions": sorted(set(self.val.question_ids)),
        }


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a collection folder or Parquet file, with clear errors when there are none."""
    from arbitrage.router.data import read_pairs

    path = Path(path).expanduser()
    if not path.exists():
        raise RouterError(f"Step-pair data not found: {path} (collect some with `arbitrage collect`)")
    try:
        rows = read_pairs(path)
    except Exception as exc:  # pyarrow raises several types for a damaged or foreign file
        raise RouterError(f"Cannot read step pairs from {path}: {exc}") from exc
    if not rows:
        raise RouterError(
            f"No step pairs in {path} (expected part-*.parquet shards from `arbitrage collect`)"
        )
    return rows


def split_questions(question_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """(training, validation) question ids: the held-out share ranks first by sha256(seed:id)."""
    unique = sorted(set(question_ids))
    if len(unique) < 2:
        raise RouterError(
            f"The rows hold {len(unique)} question(s); a train/validation split needs at least 2"
        )
    ranked = sorted(unique, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    n_val = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
    return set(ranked[n_val:]), set(ranked[:n_val])


ADVANTAGE_COLUMNS = {"prm": "delta", "outcome": "outcome_advantage"}  # label source -> its column


def advantage(row: Mapping[str, Any], label_source: str = "prm") -> float | None:
    """The row's advantage for a label source (None where the row has none)."""
    value = row.get(ADVANTAGE_COLUMNS[label_source])
    return None if value is None else float(value)


def usable_rows(
    rows: Sequence[Mapping[str, Any]], label_source: str = "prm", inputs: str = "draft"
) -> tuple[list[Mapping[str, Any]], dict[str, int]]:
    """The rows a router can train on: with the label source's advantage and, for target-side inputs,
    the target's verification; and how many were dropped for lacking either."""
    kept, dropped = [], {"without_label": 0, "without_verification": 0}
    for row in rows:
        if advantage(row, label_source) is None:
            dropped["without_label"] += 1
        elif inputs != "draft" and row.get("t_tokens") is None:
            dropped["without_verification"] += 1
        else:
            kept.append(row)
    if not kept and rows:
        need = f"{ADVANTAGE_COLUMNS[label_source]}" + (" and the t_* columns" if inputs != "draft" else "")
        raise RouterError(
            f"None of the {len(rows)} rows has {need} (collect with --labels outcome / a verifying target)"
        )
    for reason, count in dropped.items():
        if count:
            logger.warning("dropped %d of %d rows %s", count, len(rows), reason.replace("_", " "))
    return kept, dropped


def labelled(rows: Sequence[Mapping[str, Any]], label_source: str = "prm") -> LabelledRows:
    return LabelledRows(
        [RouterExample.from_pair(r) for r in rows],
        np.asarray([advantage(r, label_source) for r in rows], dtype=float),
        [str(r["question_id"]) for r in rows],
    )


def prepare(
    rows: Sequence[Mapping[str, Any]],
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    label_source: str = "prm",
    inputs: str = "draft",
) -> RouterData:
    """Drop rows without the label (or the verification the inputs need), split by question id and turn
    them into router inputs."""
    if not rows:
        raise RouterError("No step pairs to train on")
    rows, dropped = usable_rows(rows, label_source, inputs)
    column = ADVANTAGE_COLUMNS[label_source]
    bad = [r for r in rows if not np.isfinite(float(r[column]))]
    if bad:
        raise RouterError(f"{len(bad)} rows have a non-finite {column} (first: {bad[0]['question_id']!r})")
    train_q, _ = split_questions([str(r["question_id"]) for r in rows], val_fraction, seed)
    train = [r for r in rows if str(r["question_id"]) in train_q]
    val = [r for r in rows if str(r["question_id"]) not in train_q]
    info = {
        "rows": len(rows),
        "train_rows": len(train),
        "val_rows": len(val),
        "questions": len({r["question_id"] for r in rows}),
        "positive_rate": float(np.mean([float(r[column]) > 0 for r in rows])),
        "label_source": label_source,
        "rows_dropped": dropped,
        "draft_models": sorted({str(r["draft_model"]) for r in rows}),
        "target_models": sorted({str(r["target_model"]) for r in rows}),
        "prms": sorted({str(r["prm"]) for r in rows}),
    }
    return RouterData(
        labelled(train, label_source),
        labelled(val, label_source),
        fingerprint(rows),
        val_fraction,
        seed,
        info,
    )


def downsample(positive: np.ndarray, seed: int) -> np.ndarray:
    """Indices keeping every row of the smaller binary side and as many, drawn at random, of the larger."""
    positive = np.asarray(positive, dtype=bool)
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    small, large = (pos, neg) if pos.size <= neg.size else (neg, pos)
    rng = np.random.default_rng(seed)
    keep = rng.choice(large, size=small.size, replace=False) if small.size else large[:0]
    return np.sort(np.concatenate([small, keep]))


@dataclass(slots=True)
class TrainedRouter:
    """A freshly trained router with everything :func:`save_router` records."""

    router: SavableRouter
    options: TrainOptions
    scheme: LabelScheme
    metrics: RouterMetrics  # on the validation rows
    tau_table: list[TauRow]  # on the validation rows
    val_scores: np.ndarray  # [validation rows] ŷ
    config: dict[str, Any]  # router.json content (without format/version)
    split: dict[str, list[str]]


def _fit(
    train: LabelledRows, labels: np.ndarray, scheme: LabelScheme, options: TrainOptions, progress: bool
) -> SavableRouter:
    if options.kind == "features":
        from arbitrage.router.features import FeaturesRouter

        return FeaturesRouter.fit(
            train.examples,
            labels,
            scheme,
            annotate=options.annotate,
            estimator=options.estimator,
            seed=options.seed,
            inputs=options.inputs,
        )
    from arbitrage.router.lm import LMRouter

    return LMRouter.fit(
        train.examples,
        labels,
        scheme,
        annotate=options.annotate,
        options=options.lm,
        seed=options.seed,
        progress=progress,
    )


def time_inference(router: Router, examples: Sequence[RouterExample], limit: int) -> dict[str, float]:
    """Wall seconds of one-decision scoring calls (median and 90th percentile) on up to ``limit`` examples."""
    times = []
    for example in list(examples)[:limit]:
        t0 = time.perf_counter()
        router.score_batch([example])
        times.append(time.perf_counter() - t0)
    if not times:
        return {}
    times.sort()
    return {
        "calls": len(times),
        "median_seconds": statistics.median(times),
        "p90_seconds": times[int(0.9 * (len(times) - 1))],
    }


def fit_router(data: RouterData, options: TrainOptions, progress: bool = False) -> TrainedRouter:
    """Train one router variant on ``data.train`` and validate it on ``data.val`` (``progress``: lm bar)."""
    train = data.train
    positive = train.deltas > 0
    if positive.all() or not positive.any():
        side = "Δ > 0 (target better)" if positive.all() else "Δ ≤ 0 (draft as good)"
        raise RouterError(
            f"All {len(train)} training rows have {side}: a router needs steps where the target did better "
            "and steps where it did not; collect more questions"
        )
    # 1. label scheme fitted on all training rows, then (optionally) balance the two sides
    scheme = fit_scheme(train.deltas, options.classes, options.score)
    if options.downsample:
        train = train.subset(downsample(positive, options.seed))
    labels = scheme.labels(train.deltas)
    logger.info(
        "training %s on %d rows (%d escalate)", options.label, len(train), int((train.deltas > 0).sum())
    )
    # 2. fit
    t0 = time.perf_counter()
    router = _fit(train, labels, scheme, options, progress)
    train_seconds = time.perf_counter() - t0
    # 3. validate: metrics and the τ table on the untouched validation rows
    scores = router.score_batch(data.val.examples)
    metrics = router_metrics(scores, data.val.deltas, data.val.question_ids)
    table = tau_table(scores)
    timing = time_inference(router, data.val.examples, 200 if options.kind == "features" else 16)
    config = {
        "kind": options.kind,
        "annotate": options.annotate,
        "downsample": options.downsample,
        "label_source": options.label_source,  # the advantage the labels came from: prm Δ or outcome
        "inputs": options.inputs,  # draft | target | both: target-side inputs need a verification
        "labels": scheme.to_dict(),
        "kind_config": router.config(),
        "split": {"by": "question_id", "val_fraction": data.val_fraction, "seed": data.seed},
        "data": {
            **data.info,
            "fingerprint": data.fingerprint,
            "train_rows_used": len(train),
            "train_label_counts": np.bincount(labels, minlength=scheme.num_classes).tolist(),
        },
        "metrics": metrics.to_dict(),
        "tau_table": [{"tau": r.tau, "rate": r.rate} for r in table],
        "train_seconds": train_seconds,
        "inference": timing,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return TrainedRouter(router, options, scheme, metrics, table, scores, config, data.split)


def train_router(
    rows: Sequence[Mapping[str, Any]], options: TrainOptions, source: str = "", progress: bool = False
) -> TrainedRouter:
    """Split, train and validate (the whole of ``arbitrage train-router`` before saving)."""
    data = prepare(
        rows, options.val_fraction, options.seed, label_source=options.label_source, inputs=options.inputs
    )
    trained = fit_router(data, options, progress)
    trained.config["data"]["source"] = source
    return trained


def variant(options: TrainOptions, **changes: Any) -> TrainOptions:
    """``options`` with some fields changed (ablation variants)."""
    return replace(options, **changes)
