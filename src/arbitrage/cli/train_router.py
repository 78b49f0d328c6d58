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
    from arbitrage.router.report import training_summary
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
    typer.echo(training_summary(trained, path))
