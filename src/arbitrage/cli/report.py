"""``arbitrage report``: plots, speedups at matched accuracy and the RSD waste analysis of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep output folder (holding sweep.json).")],
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
) -> None:
    """Write report.md and PNG plots into SWEEP_DIR and print the Markdown."""
    from arbitrage.evaluation.report import build_report

    path = build_report(sweep_dir, title)
    typer.echo(path.read_text())
    typer.echo(f"\nwritten: {path}")
