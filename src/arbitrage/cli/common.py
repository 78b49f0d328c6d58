"""Helpers shared by CLI commands: option parsing and model loading with progress."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from arbitrage.backends.base import Generator, StepParams
from arbitrage.backends.loader import GeneratorOptions, load_generator, split_spec
from arbitrage.errors import ConfigError

if TYPE_CHECKING:
    from arbitrage.run import Run, RunSpec


def parse_separator(raw: str) -> str:
    """Turn a separator typed on the command line (``\\n\\n``) into the real characters."""
    try:
        value = codecs.decode(raw, "unicode_escape")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Invalid --separator {raw!r}: {exc}") from exc
    if not value:
        raise ConfigError("--separator must not be empty")
    return value


def load_model(spec: str, options: GeneratorOptions) -> Generator:
    """Load a generator, drawing fetch progress for named models not yet in the cache."""
    from arbitrage.cli.progress import fetch_with_progress
    from arbitrage.models.registry import NAMED_MODELS
    from arbitrage.models.store import ModelStore

    scheme, rest = split_spec(spec)
    if scheme == "llamacpp" and rest in NAMED_MODELS:
        fetch_with_progress(ModelStore(options.settings), rest)
    return load_generator(spec, options)


def step_params(separator: str, max_step_tokens: int, temperature: float, seed: int) -> StepParams:
    return StepParams(
        separator=parse_separator(separator),
        max_step_tokens=max_step_tokens,
        temperature=temperature,
        seed=seed if temperature > 0 else None,
    )


def open_run(spec: RunSpec) -> Run:
    """Open a :class:`~arbitrage.run.Run` whose named models are fetched with progress; policy option
    errors come out spelled as flags."""
    from arbitrage.cli.options import flag_errors
    from arbitrage.run import Run

    with flag_errors():
        return Run(spec, load_model=load_model).open()
