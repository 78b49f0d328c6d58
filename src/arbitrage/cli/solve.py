"""``arbitrage solve``: solve one question by step-level speculation and show the trace."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from arbitrage.cli import options as opt


@opt.command
def solve(
    question: Annotated[str, typer.Argument(help="The question to solve.")],
    models: opt.Models = opt.flags(opt.Models),
    policy: opt.Policy = opt.flags(opt.Policy, policy="auto"),
    steps: opt.Steps = opt.flags(opt.Steps),
    as_json: Annotated[bool, typer.Option("--json", help="Print the full trace as JSON instead.")] = False,
) -> None:
    """Solve QUESTION: the draft writes each step, the policy decides which steps the target rewrites."""
    from rich.console import Console

    from arbitrage.cli.common import open_run
    from arbitrage.errors import ConfigError
    from arbitrage.evaluation.render import print_step, print_summary
    from arbitrage.run import RunSpec

    if not question.strip():
        raise ConfigError("The question is empty")
    config = steps.config(policy.keep_prefix)
    spec = RunSpec(**models.spec(), policies=[policy.choice(steps.seed)],
                   prm=policy.prm, n_ctx=steps.n_ctx, seed=steps.seed)  # fmt: skip
    with open_run(spec) as run:
        engine = run.engine(config=config)
        if as_json:
            typer.echo(json.dumps(engine.solve(question).to_dict(), indent=2))
            return
        console = Console()
        console.print(
            f"[bold]policy[/] {run.policy.name}   [bold]draft[/] {run.draft.name}   "
            f"[bold]target[/] {run.target.name}\n"
        )
        trace = engine.solve(question, on_step=lambda record: print_step(console, record))
        print_summary(console, trace)
