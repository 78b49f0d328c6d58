"""``arbitrage train-router``: train a router on collected step pairs and save it as one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from arbitrage.router.train import TrainOptions

# Training options shared by train-router and eval-router --ablation (one definition each).
Data = Annotated[
    Path, typer.Argument(help="Collected step pairs: a folder of part-*.parquet shards, or one Parquet file.")
]
Kind = Annotated[
    str, typer.Option(help="Router kind: features (scikit-learn, fast) or lm (fine-tuned transformer).")
]
Classes = Annotated[int, typer.Option(help="Label scheme: 2 (binary, y = 1[Δ > 0]), 4 or 10 Δ bins.")]
Score = Annotated[
    str,
    typer.Option(help="Class probabilities -> ŷ: p_positive (P(Δ > 0)) or expected (E[Δ] mapped to [0, 1])."),
]
Annotate = Annotated[
    bool, typer.Option("--annotate/--no-annotate", help="History annotation: who wrote each earlier step.")
]
Downsample = Annotated[
    bool,
    typer.Option("--downsample/--no-downsample", help="Balance the two labels by downsampling the majority."),
]
Label = Annotated[
    str,
    typer.Option(
        "--label",
        help="Advantage the labels come from: prm (y = 1[Δ > 0], the PRM's judgement) or outcome "
        "(y = 1[outcome_advantage > 0], grounded labels from `collect --labels outcome`; rows without "
        "them are dropped).",
    ),
]
Inputs = Annotated[
    str,
    typer.Option(
        help="features router inputs: draft (the paper's router: the draft's side only), target (the "
        "target's verification of the draft step) or both. target/both verify every draft step with the "
        "target at routing time."
    ),
]
ValFraction = Annotated[float, typer.Option(help="Share of question ids held out for validation.")]
Seed = Annotated[int, typer.Option(help="Seed of the split, the downsampling and the model.")]
Estimator = Annotated[str, typer.Option(help="features: logistic (default) or gbt (gradient boosting).")]
Backbone = Annotated[
    str | None,
    typer.Option(
        help="lm: backbone to fine-tune: a local Hugging Face model folder, a .gguf file, or a named model."
    ),
]
Epochs = Annotated[float, typer.Option(help="lm: passes over the training rows.")]
BatchSize = Annotated[int, typer.Option(help="lm: rows per optimizer step.")]
LearningRate = Annotated[float, typer.Option("--lr", help="lm: peak learning rate (AdamW, linear schedule).")]
MaxLength = Annotated[int, typer.Option(help="lm: tokens per input (question + history + draft step).")]
MaxSteps = Annotated[int | None, typer.Option(help="lm: stop after this many optimizer steps.")]
Device = Annotated[str, typer.Option(help="lm: auto (CUDA when available), cpu, cuda or cuda:N.")]
TrainLayers = Annotated[
    int | None,
    typer.Option(
        help="lm: train only the head and the last N blocks; 0: the head only, on cached frozen features "
        "(fast on CPU). Default: the whole model."
    ),
]
HeadLearningRate = Annotated[
    float, typer.Option("--head-lr", help="lm --train-layers 0: learning rate of the head.")
]


def make_options(
    *,
    kind: str,
    classes: int,
    score: str,
    annotate: bool,
    downsample: bool,
    val_fraction: float,
    seed: int,
    estimator: str,
    backbone: str | None,
    epochs: float,
    batch_size: int,
    lr: float,
    max_length: int,
    max_steps: int | None,
    device: str,
    train_layers: int | None = None,
    head_lr: float = 5e-3,
    label: str = "prm",
    inputs: str = "draft",
) -> TrainOptions:
    """TrainOptions from CLI values (validated there); keyword-only so that no two values can swap."""
    from arbitrage.errors import RouterError
    from arbitrage.router.lm import LMOptions
    from arbitrage.router.train import TrainOptions

    if kind == "lm" and backbone is None:
        raise RouterError(
            "--kind lm needs --backbone: a Hugging Face model folder, a .gguf file or a named model"
        )
    lm = LMOptions(
        backbone=backbone,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        max_length=max_length,
        max_steps=max_steps,
        device=device,
        train_layers=train_layers,
        head_learning_rate=head_lr,
    )
    return TrainOptions(
        kind=kind,
        classes=classes,
        score=score,
        annotate=annotate,
        downsample=downsample,
        val_fraction=val_fraction,
        seed=seed,
        estimator=estimator,
        lm=lm,
        label_source=label,
        inputs=inputs,
    )


def train_router(
    data: Data,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to save the router in.")],
    kind: Kind = "features",
    classes: Classes = 2,
    score: Score = "p_positive",
    label: Label = "prm",
    inputs: Inputs = "draft",
    annotate: Annotate = True,
    downsample: Downsample = True,
    val_fraction: ValFraction = 0.2,
    seed: Seed = 0,
    estimator: Estimator = "logistic",
    backbone: Backbone = None,
    epochs: Epochs = 2.0,
    batch_size: BatchSize = 8,
    lr: LearningRate = 3e-5,
    max_length: MaxLength = 512,
    max_steps: MaxSteps = None,
    device: Device = "auto",
    train_layers: TrainLayers = None,
    head_lr: HeadLearningRate = 5e-3,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing router folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the saved config as JSON.")] = False,
) -> None:
    """Train a router on DATA (split by question id), validate it, and save it to --out."""
    from arbitrage.errors import RouterError
    from arbitrage.router.evaluate import EvalRow, markdown_table
    from arbitrage.router.store import read_config, save_router
    from arbitrage.router.train import load_rows
    from arbitrage.router.train import train_router as run_training

    options = make_options(
        kind=kind,
        classes=classes,
        score=score,
        annotate=annotate,
        downsample=downsample,
        val_fraction=val_fraction,
        seed=seed,
        estimator=estimator,
        backbone=backbone,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        max_steps=max_steps,
        device=device,
        train_layers=train_layers,
        head_lr=head_lr,
        label=label,
        inputs=inputs,
    )
    if out.exists():  # fail before training, not after
        if not force:
            raise RouterError(f"{out} already exists (pass --force to replace it)")
        read_config(out)  # --force replaces router folders only
    rows = load_rows(data)
    trained = run_training(rows, options, source=str(data), progress=True)
    path = save_router(out, trained.router, trained.config, trained.split, overwrite=force)
    if as_json:
        typer.echo(json.dumps(trained.config, indent=2, default=str))
        return
    d, inference = trained.config["data"], trained.config["inference"]
    dropped = {k: v for k, v in d.get("rows_dropped", {}).items() if v}
    if dropped:
        typer.echo("dropped rows: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()))
    typer.echo(
        f"trained {options.label} on {d['train_rows_used']} of {d['train_rows']} training rows; "
        f"validated on {d['val_rows']} rows of {trained.metrics.questions} held-out questions"
    )
    typer.echo(f"label scheme {trained.scheme.name}: Δ edges {[round(e, 4) for e in trained.scheme.edges]}\n")
    typer.echo(markdown_table([EvalRow(options.label, trained.metrics)]))
    from arbitrage.router.metrics import tau_for_rate

    rates = ", ".join(
        f"{r:.0%} -> τ {tau_for_rate(trained.tau_table, r).tau:.4f}" for r in (0.1, 0.2, 0.3, 0.5)
    )
    typer.echo(f"\nescalation rate -> τ (validation): {rates}")
    if inference:
        typer.echo(
            f"inference: {inference['median_seconds'] * 1e3:.3f} ms per step "
            f"(median of {inference['calls']}, p90 {inference['p90_seconds'] * 1e3:.3f} ms); "
            f"training {trained.config['train_seconds']:.1f} s"
        )
    typer.echo(f"saved to {path}")
