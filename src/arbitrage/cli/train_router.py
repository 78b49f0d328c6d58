"""``arbitrage train-router``: train a router on collected step pairs and save it as one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt


@opt.command
def train_router(
    data: opt.Data,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to save the router in.")],
    training: opt.Training = opt.flags(opt.Training),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing router folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the saved config as JSON.")] = False,
) -> None:
    """Train a router on DATA (split by question id), validate it, and save it to --out."""
    from arbitrage.errors import RouterError
    from arbitrage.router.evaluate import EvalRow, markdown_table
    from arbitrage.router.store import read_config, save_router
    from arbitrage.router.train import load_rows
    from arbitrage.router.train import train_router as run_training

    options = training.options()
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
