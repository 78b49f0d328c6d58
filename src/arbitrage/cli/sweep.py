"""``arbitrage sweep``: a grid of policies and thresholds over the same problems."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt

DEFAULT_POINTS = "draft; target; random:p=0.25,0.5,0.75"
POINT_OPTIONS = ("policy", "p", "threshold", "tau", "target_rate")  # set per point, not by flags


@opt.command
def sweep(
    problems: opt.Problems = opt.flags(opt.Problems),
    points: Annotated[
        str,
        typer.Option(
            help="Grid: 'draft; target; random:p=0.25,0.5; rsd:threshold=0.5,0.7; oracle:tau=0,0.1; "
            "router:target_rate=0.2,0.4; verify:threshold=0.5,1.0' (router points need --router). "
            "policy@NAME points take the options of --variant NAME."
        ),
    ] = DEFAULT_POINTS,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            help="A named set of fixed options for policy@NAME points, e.g. 'both: path=runs/routers/both' "
            "for router@both:target_rate=0.2,0.4 next to the --router points (repeatable).",
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Name every point of this run policy@LABEL, a family of its own in the report, so that "
            "a run with other model flags shares a folder with a plain one, e.g. --speculate --label "
            "lossless --points target writes target@lossless next to target.",
        ),
    ] = None,
    policy: opt.Policy = opt.flags(opt.Policy, omit=POINT_OPTIONS),
    models: opt.Models = opt.flags(opt.Models),
    steps: opt.Steps = opt.flags(opt.Steps, omit=("temperature",)),  # greedy
    concurrency: opt.Concurrency = 1,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Step cache file (default OUT/step_cache.sqlite); model steps replay at live cost."
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure every model and PRM call live.")
    ] = False,
    replay_scores: Annotated[
        bool,
        typer.Option(
            "--replay-scores",
            help="Replay PRM scores from the cache too (faster; their latency is then the stored one, "
            "not what a live run measures).",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: runs/sweep/<data>_<draft>_<target>).")
    ] = None,
) -> None:
    """Run every policy point on the same problems (greedy), then summarise each; see `arbitrage report`."""
    from rich.console import Console

    from arbitrage.cli.common import default_out, open_run, run_config
    from arbitrage.cli.options import flag_errors
    from arbitrage.evaluation.render import print_sweep_table
    from arbitrage.evaluation.sweep import (
        label_points,
        parse_points,
        parse_variant,
        point_options,
        run_sweep,
    )
    from arbitrage.run import RunSpec

    grid = parse_points(points)
    variants = dict(parse_variant(v) for v in variant or [])
    if label is not None:
        grid, variants = label_points(grid, variants, label)
    base = {k: v for k, v in policy.given(steps.seed).items() if k not in POINT_OPTIONS}
    with flag_errors():  # every point's options, checked before any data or model loads
        given = {k: str(v) if isinstance(v, Path) else v for k, v in base.items() if v is not None}
        choices = [(point.policy, point_options(point, given, variants)) for point in grid]
    name, loaded = problems.load()
    s, config = steps, steps.config(policy.keep_prefix)
    out = out or default_out("sweep", name, models.draft, models.target)
    out.mkdir(parents=True, exist_ok=True)
    cache_file = None if no_cache else cache or out / "step_cache.sqlite"
    spec = RunSpec(**models.spec(), policies=choices, prm=policy.prm, n_ctx=s.n_ctx,
                   seed=s.seed, cache=cache_file, replay_scores=replay_scores)  # fmt: skip
    with open_run(spec) as run:
        recorded = run_config(name, problems, models, s, policy, run.scorer is not None,
                              target_samples=policy.target_samples, diagnose=policy.diagnose,
                              **models.recorded())  # fmt: skip
        pairs = list(zip(grid, run.policies, strict=True))
        results = run_sweep(loaded, run.draft, run.target, pairs, out, config, recorded, concurrency)
    print_sweep_table(Console(), [s for _, s in results], out)
