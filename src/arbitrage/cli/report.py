"""``arbitrage report``: plots, speedups at matched accuracy with paired bootstrap intervals, lift over
random, errored problems and the RSD waste analysis of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep output folder (holding sweep.json).")],
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    resamples: Annotated[
        int, typer.Option(min=100, help="Bootstrap resamples of problems for the comparisons' 95% intervals.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")] = 0,
    costs: Annotated[
        Path | None,
        typer.Option(
            help="A cost file (from `arbitrage bench-costs`): also re-cost every point under it "
            "(marked projected)."
        ),
    ] = None,
) -> None:
    """Write report.md, comparisons.json, the cost model (costs.md) and PNG plots into SWEEP_DIR and
    print the Markdown."""
    from arbitrage.evaluation.costs import cost_report
    from arbitrage.evaluation.report import build_report

    path = build_report(sweep_dir, title, resamples=resamples, seed=seed)
    typer.echo(path.read_text())
    typer.echo(cost_report(sweep_dir, costs))
    typer.echo(f"\nwritten: {path}, {sweep_dir / 'costs.md'}")
