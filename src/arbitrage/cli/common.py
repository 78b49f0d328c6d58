"""Model loading with progress and output folders, shared by CLI commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.backends.base import Generator
from arbitrage.backends.loader import GeneratorOptions, load_generator, split_spec

if TYPE_CHECKING:
    from arbitrage.cli.options import Models, Policy, Problems, Steps
    from arbitrage.run import Run, RunSpec


def load_model(spec: str, options: GeneratorOptions) -> Generator:
    """Load a generator, drawing fetch progress for named models not yet in the cache."""
    from arbitrage.cli.progress import fetch_with_progress
    from arbitrage.models.registry import NAMED_MODELS
    from arbitrage.models.store import ModelStore

    scheme, rest = split_spec(spec)
    if scheme == "llamacpp" and rest in NAMED_MODELS:
        fetch_with_progress(ModelStore(options.settings), rest)
    return load_generator(spec, options)


def open_run(spec: RunSpec) -> Run:
    """Open a :class:`~arbitrage.run.Run` whose named models are fetched with progress; policy option
    errors come out spelled as flags."""
    from arbitrage.cli.options import flag_errors
    from arbitrage.run import Run

    with flag_errors():
        return Run(spec, load_model=load_model).open()


def default_out(command: str, *names: str) -> Path:
    """``runs/<command>/<names joined by _>``, spelled for a folder name."""
    return Path("runs") / command / re.sub(r"[^A-Za-z0-9.=-]+", "-", "_".join(names)).strip("-")


def run_config(data: str, problems: Problems, models: Models, steps: Steps, policy: Policy, scored: bool, /,
               **more: Any) -> dict[str, Any]:  # fmt: skip
    """What identifies an ``eval`` or ``sweep`` output folder (its run.json): a rerun with the same values
    resumes it. ``scored``: the run loaded the PRM. The default ``keep_prefix`` stays out, so earlier
    runs' folders still resume."""
    s = steps
    config = {
        "data": data, "offset": problems.offset, "draft": models.draft, "target": models.target,
        "max_steps": s.max_steps, "max_tokens": s.max_tokens, "max_step_tokens": s.max_step_tokens,
        "separator": s.separator, "seed": s.seed, "prm": policy.prm if scored else None, **more,
    }  # fmt: skip
    if policy.keep_prefix != "verified":
        config["keep_prefix"] = policy.keep_prefix
    return config
