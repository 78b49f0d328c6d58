from __future__ import annotations

from collections.abc import Iterator

import pytest

from arbitrage.backends.llamacpp import LlamaCppGenerator
from arbitrage.models.registry import NAMED_MODELS
from arbitrage.models.store import resolve_model_path


def load(name: str, **kwargs: object) -> LlamaCppGenerator:
    """A real model as the tests use it: in the reproducible mode (``determinism="auto"``) unless a test
    asks for another, since most tests check what that mode guarantees (a step a function of its text)."""
    kwargs.setdefault("determinism", "auto")
    return LlamaCppGenerator(
        resolve_model_path(name), name=name, chat_format=NAMED_MODELS[name].chat_format, n_ctx=2048, **kwargs
    )


@pytest.fixture
def smol() -> Iterator[LlamaCppGenerator]:
    gen = load("smollm2-135m")
    yield gen
    gen.close()


@pytest.fixture
def smol2() -> Iterator[LlamaCppGenerator]:
    """A second smollm2 instance: its own KV cache, as a separate role would have."""
    gen = load("smollm2-135m")
    yield gen
    gen.close()
