"""The ``arbitrage`` command: entry point, logging setup, and error handling for every command."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from arbitrage.cli.bench_costs import bench_costs
from arbitrage.cli.calibrate_verify import calibrate_verify
from arbitrage.cli.collect import collect
from arbitrage.cli.eval_prm import eval_prm
from arbitrage.cli.eval_router import eval_router
from arbitrage.cli.evaluate import evaluate
from arbitrage.cli.models import models_app
from arbitrage.cli.report import report
from arbitrage.cli.serve import serve
from arbitrage.cli.solve import solve
from arbitrage.cli.sweep import sweep
from arbitrage.cli.train_router import train_router

app = typer.Typer(
    name="arbitrage",
    help="Step-level speculative reasoning: a small draft model writes each step, a large target "
    "rewrites only the steps where it pays off.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models")
app.command()(solve)
app.command("eval")(evaluate)
app.command()(sweep)
app.command()(report)
app.command()(serve)
app.command("train-router")(train_router)
app.command("eval-router")(eval_router)
app.command("eval-prm")(eval_prm)
app.command()(collect)
app.command("calibrate-verify")(calibrate_verify)
app.command("bench-costs")(bench_costs)


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
    ] = 0,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    from arbitrage.errors import ArbitrageError

    try:
        app()
    except ArbitrageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
