"""``arbitrage sweep``: a grid of policies and thresholds over the same problems."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt
from arbitrage.prm.registry import DEFAULT_PRM

DEFAULT_POINTS = "draft; target; random:p=0.25,0.5,0.75"


def sweep(
    dataset: opt.Dataset = None,
    data_file: opt.DataFile = None,
    question_field: opt.QuestionField = None,
    answer_field: opt.AnswerField = None,
    data_dir: opt.DataDir = None,
    limit: opt.Limit = None,
    offset: opt.Offset = 0,
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
    prm: opt.Prm = DEFAULT_PRM,
    target_samples: opt.TargetSamples = 1,
    diagnose: opt.Diagnose = False,
    router: opt.Router = None,
    score: opt.Score = None,
    calibration: opt.Calibration = None,
    keep_prefix: opt.KeepPrefix = "verified",
    draft: opt.Draft = opt.DEFAULTS["draft"],
    target: opt.Target = opt.DEFAULTS["target"],
    max_steps: opt.MaxSteps = 40,
    max_tokens: opt.MaxTokens = 2048,
    max_step_tokens: opt.MaxStepTokens = 256,
    separator: opt.Separator = "\\n\\n",
    seed: opt.Seed = 0,
    n_ctx: opt.NCtx = 4096,
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

    from arbitrage.cli.common import open_run, step_params
    from arbitrage.cli.options import flag_errors
    from arbitrage.cli.render import print_sweep_table
    from arbitrage.engine import EngineConfig
    from arbitrage.evaluation.datasets import load_problems
    from arbitrage.evaluation.sweep import parse_points, parse_variant, point_options, run_sweep
    from arbitrage.run import RunSpec

    grid = parse_points(points)
    variants = dict(parse_variant(v) for v in variant or [])
    base = {"seed": seed, "path": str(router) if router else None, "target_samples": target_samples,
            "diagnose": diagnose, "score": score,
            "calibration": str(calibration) if calibration else None}  # fmt: skip
    with flag_errors():  # every point's options, checked before any data or model loads
        given = {k: v for k, v in base.items() if v is not None}
        choices = [(point.policy, point_options(point, given, variants)) for point in grid]
    name, problems = load_problems(dataset, data_file, question_field, answer_field, data_dir, offset, limit)
    config = EngineConfig(
        step=step_params(separator, max_step_tokens, 0.0, seed),
        max_steps=max_steps,
        max_total_tokens=max_tokens,
        keep_prefix=keep_prefix,  # type: ignore[arg-type]  # checked by EngineConfig
    )
    if out is None:
        out = Path("runs") / "sweep" / re.sub(r"[^A-Za-z0-9.=-]+", "-", f"{name}_{draft}_{target}").strip("-")
    out.mkdir(parents=True, exist_ok=True)
    cache_file = None if no_cache else cache or out / "step_cache.sqlite"
    spec = RunSpec(
        draft=draft, target=target, policies=choices, prm=prm, n_ctx=n_ctx, seed=seed, cache=cache_file,
        replay_scores=replay_scores,
    )  # fmt: skip
    with open_run(spec) as run:
        run_config = {
            "data": name, "offset": offset, "draft": draft, "target": target, "max_steps": max_steps,
            "max_tokens": max_tokens, "max_step_tokens": max_step_tokens, "separator": separator,
            "seed": seed, "prm": prm if run.scorer is not None else None, "target_samples": target_samples,
            "diagnose": diagnose,
        }  # fmt: skip
        if keep_prefix != "verified":  # the default stays out, so earlier sweeps' folders still resume
            run_config["keep_prefix"] = keep_prefix
        pairs = list(zip(grid, run.policies, strict=True))
        results = run_sweep(problems, run.draft, run.target, pairs, out, config, run_config, concurrency)
    print_sweep_table(Console(), [s for _, s in results], out)
