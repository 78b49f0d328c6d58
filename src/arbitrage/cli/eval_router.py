"""``arbitrage eval-router``: saved routers on held-out rows, and the paper's ablation tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt


@opt.command
def eval_router(
    data: opt.Data,
    router: Annotated[
        list[Path] | None, typer.Option("--router", help="Saved router folder to evaluate (repeatable).")
    ] = None,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Train and compare variants on one split: annotated vs not, 2/4/10 classes, "
            "downsampling on/off.",
        ),
    ] = False,
    compare_inputs: Annotated[
        bool,
        typer.Option(
            "--compare-inputs",
            help="Features routers on draft / target / both inputs and the raw verification scores (GSI, "
            "target mean logprob, agreement) as baselines, against PRM Δ and outcome labels where present.",
        ),
    ] = False,
    folds: Annotated[
        int,
        typer.Option(
            "--folds",
            min=0,
            help="Question-grouped folds: each metric as a mean over K folds with a 95% interval. --router: "
            "its training options retrained per fold (0: only the saved router). --ablation: 1 = one split.",
        ),
    ] = 5,
    training: opt.Training = opt.flags(opt.Training, omit=("classes", "annotate", "downsample")),
    out: Annotated[
        Path | None, typer.Option(help="Write eval_router.md and eval_router.json to this folder.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of Markdown.")] = False,
) -> None:
    """Evaluate routers on DATA: Spearman ρ (ŷ vs Δ), balanced accuracy, per-label accuracy, ROC-AUC.

    --router PATH scores a saved router on the rows of questions it was not trained on, and retrains its
    options on K question-grouped folds (--folds) to show how much one split's numbers move. --ablation
    trains the variants of the paper's three ablation tables (the training options below set the base
    variant) over K folds by question id and scores each on its held-out questions: mean and 95% interval
    over the folds.
    """
    from arbitrage.router.base import RouterError
    from arbitrage.router.report import evaluation_report
    from arbitrage.router.store import load_router
    from arbitrage.router.train import load_rows

    routers = router or []
    if not routers and not ablation and not compare_inputs:
        raise RouterError(
            "Nothing to evaluate: give --router PATH (repeatable), --ablation or --compare-inputs"
        )
    # check everything that can fail fast before any training
    loaded = [load_router(p, device=training.device) for p in routers]
    options = training.options() if ablation or compare_inputs or (loaded and folds >= 2) else None
    rows = load_rows(data)
    report, text = evaluation_report(
        data, rows, loaded, folds, options, ablation=ablation, inputs=compare_inputs,
        on_variant=lambda label: typer.echo(f"training {label}", err=True),
    )  # fmt: skip
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval_router.md").write_text(text)
        (out / "eval_router.json").write_text(json.dumps(report, indent=2, default=str))
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else text)
    if out is not None and not as_json:
        typer.echo(f"written to {out / 'eval_router.md'} and {out / 'eval_router.json'}")
