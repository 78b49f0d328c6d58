"""Typer option declarations shared by several commands (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from arbitrage.policies.factory import PolicyOptions

if TYPE_CHECKING:
    from arbitrage.prm.base import StepScorer

Draft = Annotated[str, typer.Option(help="Draft model: a named model, a .gguf path, or a backend spec.")]
Target = Annotated[str, typer.Option(help="Target model (same forms as --draft).")]
Policy = Annotated[str, typer.Option(help="Routing policy: draft, target, random, rsd, oracle or router.")]
P = Annotated[float, typer.Option(help="random: probability of escalating a step.")]
MaxSteps = Annotated[int, typer.Option(help="Stop after this many steps.")]
MaxTokens = Annotated[int, typer.Option(help="Stop once the solution holds this many tokens.")]
MaxStepTokens = Annotated[int, typer.Option(help="Cap on tokens per step.")]
Separator = Annotated[str, typer.Option(help="Step separator, with escapes (\\n\\n or \\n).")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")]
Seed = Annotated[int, typer.Option(help="Seed for sampling and the random policy.")]
NCtx = Annotated[int, typer.Option(help="Context window of local models.")]
Dataset = Annotated[
    str | None, typer.Option(help="Named dataset: gsm8k, gsm8k-train, math500, olympiadbench, aime24, amc23.")
]
DataFile = Annotated[Path | None, typer.Option(help="Your own JSON-lines problem file instead of --dataset.")]
QuestionField = Annotated[str | None, typer.Option(help="--data-file: question field (auto-detected).")]
AnswerField = Annotated[str | None, typer.Option(help="--data-file: gold answer field (auto-detected).")]
DataDir = Annotated[
    Path | None, typer.Option(help="Folder of the named datasets (default: shared/datasets).")
]
Limit = Annotated[int | None, typer.Option(help="Number of problems (default: all).")]
Offset = Annotated[int, typer.Option(help="Skip this many problems first.")]

Concurrency = Annotated[
    int,
    typer.Option(help="Problems in flight at once (pays off with batching servers; local models serialise)."),
]

DEFAULTS = {"draft": DEFAULT_DRAFT, "target": DEFAULT_TARGET}
Router = Annotated[
    Path | None,
    typer.Option("--router", help="router: folder of a router saved by `arbitrage train-router`."),
]
Tau = Annotated[
    float | None,
    typer.Option(
        help="oracle: escalate iff s_target − s_draft > τ (default 0); router: escalate when ŷ > τ."
    ),
]
TargetRate = Annotated[
    float | None,
    typer.Option(
        help="router: pick τ from the router's table so about this share of steps go to the target."
    ),
]


Prm = Annotated[
    str,
    typer.Option(
        help="rsd, oracle: process reward model, e.g. judge:MODEL[#PROMPT], arith, judge+arith:MODEL, "
        "hf:PATH, http:URL#MODEL."
    ),
]
Threshold = Annotated[float, typer.Option(help="rsd: accept a draft step iff its reward >= this.")]
TargetSamples = Annotated[
    int, typer.Option(help="oracle: target samples averaged for s_target (extra ones at temperature 0.7).")
]
Diagnose = Annotated[
    bool, typer.Option(help="rsd: also score escalated target steps to count wasted escalations.")
]


def load_policy_scorer(policies: list[str], prm: str, n_ctx: int) -> StepScorer | None:
    """Load the PRM when one of ``policies`` needs it (rsd, oracle); None otherwise."""
    from arbitrage.policies.factory import SCORED_POLICIES
    from arbitrage.prm.registry import ScorerOptions, load_scorer

    if not SCORED_POLICIES.intersection(policies):
        return None
    return load_scorer(prm, ScorerOptions(n_ctx=n_ctx))


def policy_options(
    policy: str,
    p: float,
    seed: int,
    router: Path | None,
    tau: float | None,
    target_rate: float | None,
    threshold: float = 0.7,
    target_samples: int = 1,
    diagnose: bool = False,
    prm: str | None = None,
    n_ctx: int = 4096,
) -> PolicyOptions:
    """PolicyOptions from the CLI, checking the router options (τ or a target rate, not both), with the
    ``prm`` scorer loaded when the policy needs one (rsd, oracle)."""
    from arbitrage.errors import ConfigError

    if policy == "router" and tau is None and target_rate is None:
        raise ConfigError("--policy router needs --tau τ (escalate when ŷ > τ) or --target-rate r")
    if policy != "router" and (router is not None or target_rate is not None):
        raise ConfigError("--router and --target-rate apply to --policy router only")
    if tau is not None and target_rate is not None:
        raise ConfigError("Give either --tau or --target-rate, not both")
    if policy in ("rsd", "oracle"):
        from arbitrage.policies.reward import check_reward_options

        check_reward_options(threshold, tau if tau is not None else 0.0, target_samples, 0.7)
    return PolicyOptions(
        p=p,
        seed=seed,
        scorer=load_policy_scorer([policy], prm, n_ctx) if prm is not None else None,
        router_path=str(router) if router is not None else None,
        tau=tau if tau is not None else 0.0,
        target_rate=target_rate,
        threshold=threshold,
        target_samples=target_samples,
        diagnose=diagnose,
    )
