"""Typer option declarations shared by several commands (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET

Draft = Annotated[str, typer.Option(help="Draft model: a named model, a .gguf path, or a backend spec.")]
Target = Annotated[str, typer.Option(help="Target model (same forms as --draft).")]
Policy = Annotated[str, typer.Option(help="Routing policy: draft, target or random.")]
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

DEFAULTS = {"draft": DEFAULT_DRAFT, "target": DEFAULT_TARGET}
