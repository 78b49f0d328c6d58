"""``arbitrage sweep``: a grid of policies and thresholds over the same problems."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
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
            "router:target_rate=0.2,0.4' (router points need --router)."
        ),
    ] = DEFAULT_POINTS,
    prm: opt.Prm = DEFAULT_PRM,
    target_samples: opt.TargetSamples = 1,
    diagnose: opt.Diagnose = False,
    router: opt.Router = None,
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
            help="Step and PRM-score cache file (default OUT/step_cache.sqlite); shared caches reuse calls."
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure every model and PRM call live.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: runs/sweep/<data>_<draft>_<target>).")
    ] = None,
) -> None:
    """Run every policy point on the same problems (greedy), then summarise each; see `arbitrage report`."""
    from rich.console import Console

    from arbitrage.backends.cache import CachingGenerator, StepCache
    from arbitrage.backends.loader import GeneratorOptions
    from arbitrage.cli.common import load_model, step_params
    from arbitrage.cli.evaluate import load_problems
    from arbitrage.cli.render import print_sweep_table
    from arbitrage.engine import EngineConfig
    from arbitrage.evaluation.sweep import parse_points, run_sweep
    from arbitrage.policies import PolicyOptions
    from arbitrage.policies.factory import SCORED_POLICIES
    from arbitrage.prm.cache import CachingScorer, ScoreCache

    grid = parse_points(points)
    name, problems = load_problems(dataset, data_file, question_field, answer_field, data_dir, offset, limit)
    config = EngineConfig(
        step=step_params(separator, max_step_tokens, 0.0, seed),
        max_steps=max_steps,
        max_total_tokens=max_tokens,
    )
    if out is None:
        out = Path("runs") / "sweep" / re.sub(r"[^A-Za-z0-9.=-]+", "-", f"{name}_{draft}_{target}").strip("-")
    out.mkdir(parents=True, exist_ok=True)
    run_config = {
        "data": name, "offset": offset, "draft": draft, "target": target, "max_steps": max_steps,
        "max_tokens": max_tokens, "max_step_tokens": max_step_tokens, "separator": separator, "seed": seed,
        "prm": prm if SCORED_POLICIES.intersection(p.policy for p in grid) else None,
        "target_samples": target_samples, "diagnose": diagnose,
    }  # fmt: skip
    scorer = opt.load_policy_scorer([p.policy for p in grid], prm, n_ctx)
    options = GeneratorOptions(n_ctx=n_ctx, seed=seed)
    style = hashlib.sha256(json.dumps(asdict(options.prompt_style), sort_keys=True).encode()).hexdigest()[:12]
    draft_model = load_model(draft, options)
    target_model = load_model(target, options)
    step_cache = None if no_cache else StepCache(cache or out / "step_cache.sqlite")
    score_cache = None
    if step_cache is not None:
        draft_model = CachingGenerator(draft_model, step_cache, f"{draft}|{style}")
        target_model = CachingGenerator(target_model, step_cache, f"{target}|{style}")
        if scorer is not None:  # PRM rewards replay too (same file, their own table)
            score_cache = ScoreCache(step_cache.path)
            scorer = CachingScorer(scorer, score_cache, f"{prm}|{scorer.name}")
    policy_options = PolicyOptions(
        seed=seed, router_path=str(router) if router else None, scorer=scorer, target_samples=target_samples,
        diagnose=diagnose,
    )  # fmt: skip
    try:
        results = run_sweep(
            problems, draft_model, target_model, grid, out, config, policy_options, run_config, concurrency
        )
    finally:
        draft_model.close()
        target_model.close()
        if step_cache is not None:
            step_cache.close()
        if score_cache is not None:
            score_cache.close()
        if scorer is not None:
            scorer.close()
    print_sweep_table(Console(), [s for _, s in results], out)
