"""Model loading with progress, shared by CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from arbitrage.backends.base import Generator
from arbitrage.backends.loader import GeneratorOptions, load_generator, split_spec

if TYPE_CHECKING:
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
