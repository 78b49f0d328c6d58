"""``arbitrage calibrate-verify``: the verify policy's calibration table from collected step pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def calibrate_verify(
    data: Annotated[
        Path,
        typer.Argument(
            help="Collected step pairs with the target's verification: a folder of shards or a file."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Where to write the table (JSON: score name -> [[quantile, value], ...])."),
    ] = Path("verify_calibration.json"),
) -> None:
    """Measure every verification score's quantiles on DATA, for `--policy verify --target-rate R`."""
    from arbitrage.errors import ConfigError
    from arbitrage.policies.verify import build_calibration, tau_for_rate, write_calibration
    from arbitrage.router.data import read_pairs

    if not data.exists():
        raise ConfigError(f"No step pairs at {data}")
    rows = read_pairs(data)
    table = build_calibration(rows)
    write_calibration(table, out)
    used = sum(1 for row in rows if row.get("t_mean_logprob") is not None)
    typer.echo(f"{used} of {len(rows)} step pairs have the target's verification")
    for name, quantiles in table.items():
        taus = ", ".join(f"r={r:g}: τ={tau_for_rate(quantiles, r):.3f}" for r in (0.1, 0.25, 0.5))
        typer.echo(f"  {name}: {taus}")
    typer.echo(f"written: {out}")
