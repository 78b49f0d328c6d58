"""``arbitrage solve``: solve one question by step-level speculation and show the trace."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from arbitrage.cli import options as opt
from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from arbitrage.prm.registry import DEFAULT_PRM


def solve(
    question: Annotated[str, typer.Argument(help="The question to solve.")],
    draft: Annotated[
        str, typer.Option(help="Draft model: a named model, a .gguf path, or a backend spec.")
    ] = DEFAULT_DRAFT,
    target: Annotated[str, typer.Option(help="Target model (same forms as --draft).")] = DEFAULT_TARGET,
    policy: opt.Policy = "random",
    p: opt.P = 0.5,
    prm: opt.Prm = DEFAULT_PRM,
    threshold: opt.Threshold = 0.7,
    tau: opt.Tau = None,
    target_samples: opt.TargetSamples = 1,
    diagnose: opt.Diagnose = False,
    router: opt.Router = None,
    target_rate: opt.TargetRate = None,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps.")] = 40,
    max_tokens: Annotated[int, typer.Option(help="Stop once the solution holds this many tokens.")] = 2048,
    max_step_tokens: Annotated[int, typer.Option(help="Cap on tokens per step.")] = 256,
    separator: Annotated[str, typer.Option(help="Step separator, with escapes (\\n\\n or \\n).")] = "\\n\\n",
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling and the random policy.")] = 0,
    n_ctx: Annotated[int, typer.Option(help="Context window of local models.")] = 4096,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full trace as JSON instead.")] = False,
) -> None:
    """Solve QUESTION: the draft writes each step, the policy decides which steps the target rewrites."""
    from rich.console import Console

    from arbitrage.backends.loader import GeneratorOptions
    from arbitrage.cli.common import load_model, step_params
    from arbitrage.cli.render import print_step, print_summary
    from arbitrage.engine import Engine, EngineConfig
    from arbitrage.errors import ConfigError
    from arbitrage.policies import build_policy

    if not question.strip():
        raise ConfigError("The question is empty")
    config = EngineConfig(
        step=step_params(separator, max_step_tokens, temperature, seed),
        max_steps=max_steps,
        max_total_tokens=max_tokens,
    )
    policy_options = opt.policy_options(
        policy, p, seed, router, tau, target_rate, threshold=threshold, target_samples=target_samples,
        diagnose=diagnose, prm=prm, n_ctx=n_ctx,
    )  # fmt: skip
    scorer = policy_options.scorer
    options = GeneratorOptions(n_ctx=n_ctx, seed=seed)
    console = Console(stderr=as_json)
    try:
        routing = build_policy(policy, policy_options)
        draft_model = load_model(draft, options)
    except BaseException:
        if scorer is not None:
            scorer.close()
        raise
    try:
        target_model = load_model(target, options)
    except BaseException:
        draft_model.close()
        if scorer is not None:
            scorer.close()
        raise
    try:
        engine = Engine(draft_model, target_model, routing, config)
        if as_json:
            trace = engine.solve(question)
            typer.echo(json.dumps(trace.to_dict(), indent=2))
        else:
            console.print(
                f"[bold]policy[/] {routing.name}   [bold]draft[/] {draft_model.name}   "
                f"[bold]target[/] {target_model.name}\n"
            )
            trace = engine.solve(question, on_step=lambda record: print_step(console, record))
            print_summary(console, trace)
    finally:
        draft_model.close()
        target_model.close()
        if scorer is not None:
            scorer.close()
