"""``arbitrage solve``: solve one question by step-level speculation and show the trace."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from arbitrage.prm.registry import DEFAULT_PRM


def solve(
    question: Annotated[str, typer.Argument(help="The question to solve.")],
    draft: Annotated[
        str, typer.Option(help="Draft model: a named model, a .gguf path, or a backend spec.")
    ] = DEFAULT_DRAFT,
    target: Annotated[str, typer.Option(help="Target model (same forms as --draft).")] = DEFAULT_TARGET,
    policy: Annotated[
        str, typer.Option(help="Routing policy: draft, target, random, rsd or oracle.")
    ] = "random",
    p: Annotated[float, typer.Option(help="random: probability of escalating a step.")] = 0.5,
    prm: Annotated[
        str,
        typer.Option(
            help="rsd, oracle: process reward model, e.g. judge:MODEL[#PROMPT], arith, "
            "judge+arith:MODEL, hf:PATH, http:URL#MODEL."
        ),
    ] = DEFAULT_PRM,
    threshold: Annotated[float, typer.Option(help="rsd: accept a draft step iff its reward >= this.")] = 0.7,
    tau: Annotated[float, typer.Option(help="oracle: escalate iff s_target - s_draft > tau.")] = 0.0,
    target_samples: Annotated[
        int,
        typer.Option(help="oracle: target samples averaged for s_target (extra ones at temperature 0.7)."),
    ] = 1,
    diagnose: Annotated[
        bool, typer.Option(help="rsd: also score escalated target steps to count wasted escalations.")
    ] = False,
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
    from arbitrage.policies import PolicyOptions, build_policy
    from arbitrage.policies.factory import SCORED_POLICIES
    from arbitrage.prm.base import StepScorer

    if not question.strip():
        raise ConfigError("The question is empty")
    config = EngineConfig(
        step=step_params(separator, max_step_tokens, temperature, seed),
        max_steps=max_steps,
        max_total_tokens=max_tokens,
    )
    scorer: StepScorer | None = None
    if policy in SCORED_POLICIES:
        from arbitrage.policies.reward import check_reward_options
        from arbitrage.prm.registry import ScorerOptions, load_scorer

        check_reward_options(threshold, tau, target_samples, 0.7)
        scorer = load_scorer(prm, ScorerOptions(n_ctx=n_ctx))
    policy_options = PolicyOptions(
        p=p, seed=seed, scorer=scorer, threshold=threshold, tau=tau, target_samples=target_samples,
        diagnose=diagnose,
    )  # fmt: skip
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
