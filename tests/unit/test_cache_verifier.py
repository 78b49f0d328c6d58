"""The step cache wrapper passes verification through to a verifying model, and only to one."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbitrage.backends.base import FinishReason, Generator, StepContext, StepOutput, StepParams, Verifier
from arbitrage.backends.cache import CachingGenerator, StepCache
from arbitrage.backends.scripted import ScriptedGenerator


class PlainGenerator:
    """A generator without the verifier role."""

    name = "plain"

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        return StepOutput(text="x", finish_reason=FinishReason.EOS, model=self.name, tokens=1)

    def close(self) -> None:
        pass


def test_a_verifying_model_stays_a_verifier(tmp_path: Path) -> None:
    inner = ScriptedGenerator("target", ["Add 3 and 5.", "The answer is 8."])
    cache = StepCache(tmp_path / "steps.sqlite")
    wrapped = CachingGenerator(inner, cache)
    assert isinstance(wrapped, Verifier) and isinstance(wrapped, Generator)
    context, params = StepContext("q"), StepParams()
    draft = StepOutput(text="Add 3 and 4.", finish_reason=FinishReason.STEP, model="draft", tokens=4)
    v = wrapped.verify_step(context, draft, params)
    assert inner.verifications == [(context, "Add 3 and 4.")]  # the inner model verified it
    assert v.model == "target" and v.first_divergence == 3
    out = wrapped.continue_step(context, params, v)
    assert (out.text, out.extra["kept_tokens"]) == ("Add 3 and 5.", 3)
    assert len(cache) == 0  # verifications and continuations are not cached
    wrapped.close()
    assert inner.closed


def test_a_plain_model_is_not_made_a_verifier(tmp_path: Path) -> None:
    wrapped = CachingGenerator(PlainGenerator(), StepCache(tmp_path / "steps.sqlite"))
    assert isinstance(wrapped, Generator) and not isinstance(wrapped, Verifier)
    with pytest.raises(AttributeError, match="verify_step"):
        wrapped.verify_step  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'other'"):
        wrapped.other  # noqa: B018
