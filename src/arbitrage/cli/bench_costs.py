"""``arbitrage bench-costs``: measure a draft/target pair's per-token costs on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt


@opt.command
def bench_costs(
    models: opt.Models = opt.flags(opt.Models, omit=("speculate", "reproducible")),
    tokens: Annotated[int, typer.Option(min=8, help="Tokens decoded per measurement.")] = 48,
    repeats: Annotated[int, typer.Option(min=1, help="Measurements per model (the median is kept).")] = 3,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the costs (default: this pair's file under $ARBITRAGE_HOME/costs, "
            "which `--policy auto` reads)."
        ),
    ] = None,
    n_ctx: opt.NCtx = 4096,
) -> None:
    """Measure decode, batched-evaluation and per-call seconds of DRAFT and TARGET (any backends)."""
    import json

    from arbitrage.costs import costs_cache_path
    from arbitrage.evaluation.costbench import describe_costs, measure_costs
    from arbitrage.run import Run, RunSpec
    from arbitrage.settings import load_settings

    with Run(RunSpec(draft=models.draft, target=models.target, n_ctx=n_ctx)) as run:
        costs = measure_costs(run.draft, run.target, tokens=tokens, repeats=repeats)
    path = out or costs_cache_path(load_settings().home, models.draft, models.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(costs.to_dict(), indent=1) + "\n")
    typer.echo(describe_costs(costs))
    typer.echo(f"written: {path}")
