"""``arbitrage solve``: solve one question by step-level speculation and show the trace."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from arbitrage.cli import options as opt
from arbitrage.prm.registry import DEFAULT_PRM


def solve(
    question: Annotated[str, typer.Argument(help="The question to solve.")],
    draft: opt.Draft = opt.DEFAULTS["draft"],
    target: opt.Target = opt.DEFAULTS["target"],
    policy: opt.Policy = "verify",
    p: opt.P = 0.5,
    prm: opt.Prm = DEFAULT_PRM,
    threshold: opt.Threshold = None,
    tau: opt.Tau = None,
    target_samples: opt.TargetSamples = 1,
    diagnose: opt.Diagnose = False,
    router: opt.Router = None,
    target_rate: opt.TargetRate = None,
    score: opt.Score = None,
    calibration: opt.Calibration = None,
    keep_prefix: opt.KeepPrefix = "verified",
    max_steps: opt.MaxSteps = 40,
    max_tokens: opt.MaxTokens = 2048,
    max_step_tokens: opt.MaxStepTokens = 256,
    separator: opt.Separator = "\\n\\n",
    temperature: opt.Temperature = 0.0,
    seed: opt.Seed = 0,
    n_ctx: opt.NCtx = 4096,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full trace as JSON instead.")] = False,
) -> None:
    """Solve QUESTION: the draft writes each step, the policy decides which steps the target rewrites."""
    from rich.console import Console

    from arbitrage.cli.common import open_run, step_params
    from arbitrage.cli.render import print_step, print_summary
    from arbitrage.engine import EngineConfig
    from arbitrage.errors import ConfigError
    from arbitrage.run import RunSpec

    if not question.strip():
        raise ConfigError("The question is empty")
    config = EngineConfig(
        step=step_params(separator, max_step_tokens, temperature, seed),
        max_steps=max_steps,
        max_total_tokens=max_tokens,
        keep_prefix=keep_prefix,  # type: ignore[arg-type]  # checked by EngineConfig
    )
    choice = opt.policy_choice(
        policy, p=p, seed=seed, path=router, tau=tau, target_rate=target_rate, threshold=threshold,
        target_samples=target_samples, diagnose=diagnose, score=score, calibration=calibration,
    )  # fmt: skip
    spec = RunSpec(draft=draft, target=target, policies=[choice], prm=prm, n_ctx=n_ctx, seed=seed)
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
