"""``arbitrage eval``: run a policy over a benchmark, resumably, and summarise accuracy and cost."""

from __future__ import annotations

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

    from arbitrage.cli.common import default_out, open_run, run_config
    from arbitrage.evaluation.render import print_eval_summary
    from arbitrage.evaluation.runner import run_eval
    from arbitrage.run import RunSpec

    name, loaded = problems.load()
    s, config = steps, steps.config(policy.keep_prefix)
    spec = RunSpec(**models.spec(), policies=[policy.choice(s.seed)], prm=policy.prm,
                   n_ctx=s.n_ctx, seed=s.seed)  # fmt: skip
    with open_run(spec) as run:
        recorded = run_config(name, problems, models, s, policy, run.scorer is not None,
                              policy=run.policy.name, temperature=s.temperature,
                              **models.recorded())  # fmt: skip
        out = out or default_out("eval", name, run.policy.name, models.draft, models.target)
        summary = run_eval(loaded, run.engine(config=config), out, recorded, concurrency=concurrency)
    print_eval_summary(Console(), summary, out)
