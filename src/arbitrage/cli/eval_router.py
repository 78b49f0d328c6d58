"""``arbitrage eval-router``: saved routers on held-out rows, and the paper's ablation tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    from arbitrage.router.evaluate import (
        FOLD_NOTE,
        ablation_markdown,
        comparison_markdown,
        evaluate_saved,
        fold_table,
        markdown_table,
        run_ablation,
    )
    from arbitrage.router.evaluate import (
        compare_inputs as run_comparison,
    )
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
    report: dict[str, Any] = {"data": str(data)}
    markdown: list[str] = []
    if loaded:
        results = [evaluate_saved(r, rows, folds, options, progress=True) for r in loaded]
        report["routers"] = [r.to_dict() for r in results]
        markdown.append(f"## Routers on held-out questions of {data}\n\n{markdown_table(results)}\n")
        crossed = [r for r in results if r.folds is not None]
        if crossed:
            markdown.append(
                f"## The same training options over {folds} question-grouped folds of {data}\n\n"
                f"{fold_table(crossed)}\n\n{FOLD_NOTE}\n"
            )
    if ablation and options is not None:
        result = run_ablation(
            rows,
            options,
            on_variant=lambda label: typer.echo(f"training {label}", err=True),
            progress=True,
            folds=max(folds, 1),
        )
        report["ablation"] = result.to_dict()
        markdown.append(f"## Ablation\n\n{ablation_markdown(result)}")
    if compare_inputs and options is not None:
        comparison = run_comparison(
            rows,
            options,
            max(folds, 2),
            progress=True,
            on_variant=lambda label: typer.echo(f"training {label}", err=True),
        )
        report["inputs"] = comparison.to_dict()
        markdown.append(f"## Router inputs and verification baselines\n\n{comparison_markdown(comparison)}")
    text = "\n".join(markdown)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval_router.md").write_text(text)
        (out / "eval_router.json").write_text(json.dumps(report, indent=2, default=str))
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else text)
    if out is not None and not as_json:
        typer.echo(f"written to {out / 'eval_router.md'} and {out / 'eval_router.json'}")
