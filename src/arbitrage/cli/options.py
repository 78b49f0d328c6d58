"""Typer option declarations shared by several commands (one definition each)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET

Draft = Annotated[str, typer.Option(help="Draft model: a named model, a .gguf path, or a backend spec.")]
Target = Annotated[str, typer.Option(help="Target model (same forms as --draft).")]
Policy = Annotated[
    str, typer.Option(help="Routing policy: draft, target, random, rsd, oracle, router or verify.")
]
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
    typer.Option(
        "--router",
        help="router: folder of a router saved by `arbitrage train-router` (default: the router installed "
        "with the package).",
    ),
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
        help="router, verify: pick τ from the router's table (verify: the calibration table) so about "
        "this share of steps go to the target."
    ),
]
Score = Annotated[
    str | None,
    typer.Option(
        help="verify: verification score, escalate iff it exceeds --threshold: target_nll (default), "
        "gsi, target_min_nll, disagree, divergence."
    ),
]
Calibration = Annotated[
    Path | None,
    typer.Option(
        help="verify: calibration table for --target-rate (from `arbitrage calibrate-verify`; "
        "default: the installed one)."
    ),
]
KeepPrefix = Annotated[
    str,
    typer.Option(
        help="Escalated greedy steps keep the draft tokens the target agrees with: verified (when the "
        "policy had the target verify the step), always (verify first), never."
    ),
]


Prm = Annotated[
    str,
    typer.Option(
        help="rsd, oracle: process reward model, e.g. judge:MODEL[#PROMPT], arith, judge+arith:MODEL, "
        "hf:PATH, http:URL#MODEL."
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        help="rsd: accept a draft step iff its reward >= this (default 0.7); verify: escalate iff the "
        "verification score > this."
    ),
]
TargetSamples = Annotated[
    int, typer.Option(help="oracle: target samples averaged for s_target (extra ones at temperature 0.7).")
]
Diagnose = Annotated[
    bool, typer.Option(help="rsd: also score escalated target steps to count wasted escalations.")
]


def flag(option: str) -> str:
    """The command-line flag of a policy option (``target_rate`` -> ``--target-rate``)."""
    return FLAGS.get(option, "--" + option.replace("_", "-"))


FLAGS = {"path": "--router"}  # policy options whose flag is not --<option-name>


@contextmanager
def flag_errors() -> Iterator[None]:
    """Re-raise policy option errors with the options spelled as this CLI's flags."""
    try:
        yield
    except PolicyOptionError as exc:
        raise ConfigError(exc.render(flag)) from None


def policy_choice(policy: str, **flags: Any) -> tuple[str, Any]:
    """``(policy, its validated options)`` from a command's policy flags (``None``: not given).

    Each policy takes the flags it has an option for; a flag given explicitly (not None) that the
    policy has no option for is an error, so ``--router`` with ``--policy random`` never goes unnoticed.
    """
    from arbitrage.policies import POLICIES, policy_entry, policy_options
    from arbitrage.policies.options import option_types

    fields = option_types(policy_entry(policy).options)
    for name, value in flags.items():
        if value is not None and name not in fields and _optional_flag(name):
            owners = [n for n, e in POLICIES.items() if name in option_types(e.options)]
            raise ConfigError(f"{flag(name)} applies to --policy {', '.join(owners)} only")
    values = {
        k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if k in fields and v is not None
    }
    with flag_errors():
        return policy, policy_options(policy, values)


def _optional_flag(name: str) -> bool:
    # flags without a default: given means meant
    return name in ("path", "tau", "target_rate", "threshold", "score", "calibration")
