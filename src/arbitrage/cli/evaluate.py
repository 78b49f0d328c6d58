"""``arbitrage eval``: run a policy over a benchmark, resumably, and summarise accuracy and cost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt


@opt.command
def evaluate(
    problems: opt.Problems = opt.flags(opt.Problems),
    policy: opt.Policy = opt.flags(opt.Policy),
    models: opt.Models = opt.flags(opt.Models),
    steps: opt.Steps = opt.flags(opt.Steps),
    concurrency: opt.Concurrency = 1,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: runs/eval/<data>_<policy>_<draft>_<target>).")
    ] = None,
) -> None:
    """Evaluate a policy on a dataset: per-problem JSON lines, then accuracy, acceptance and latency."""
    from rich.console import Console

    from arbitrage.cli.common import open_run
    from arbitrage.cli.render import print_eval_summary
    from arbitrage.evaluation.runner import run_eval
    from arbitrage.run import RunSpec

    name, loaded = problems.load()
    config = steps.config(policy.keep_prefix)
    draft, target, s = models.draft, models.target, steps
    spec = RunSpec(**models.spec(), policies=[policy.choice(s.seed)], prm=policy.prm,
                   n_ctx=s.n_ctx, seed=s.seed)  # fmt: skip
    with open_run(spec) as run:
        run_config = {
            "data": name, "offset": problems.offset, "policy": run.policy.name, "draft": draft,
            "target": target, "max_steps": s.max_steps, "max_tokens": s.max_tokens,
            "max_step_tokens": s.max_step_tokens, "separator": s.separator, "temperature": s.temperature,
            "seed": s.seed, "prm": policy.prm if run.scorer is not None else None,
        }  # fmt: skip
        for key in ("speculate", "reproducible"):  # as keep_prefix: only when set, so old folders resume
            if getattr(models, key):
                run_config[key] = True
        if policy.keep_prefix != "verified":  # the default stays out, so earlier runs' folders still resume
            run_config["keep_prefix"] = policy.keep_prefix
        if out is None:
            slug = re.sub(r"[^A-Za-z0-9.=-]+", "-", f"{name}_{run.policy.name}_{draft}_{target}").strip("-")
            out = Path("runs") / "eval" / slug
        summary = run_eval(loaded, run.engine(config=config), out, run_config, concurrency=concurrency)
    print_eval_summary(Console(), summary, out)
