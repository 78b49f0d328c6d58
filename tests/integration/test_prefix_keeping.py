"""Prefix keeping on real models: escalating every step with the target's verification gives the
target-only solution byte for byte, and the target decodes fewer tokens.

Target smollm2-135m; drafts gemma3-270m (another family and tokenizer) and smollm2-135m with another
prompt style (same tokenizer, different steps). Needs the llama.cpp backend's ``verify_step`` and
``continue_step``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arbitrage.backends.base import StepParams, Verifier
from arbitrage.backends.llamacpp import LlamaCppGenerator
from arbitrage.engine import Engine, EngineConfig, KeepPrefix
from arbitrage.evaluation.datasets import load_problems
from arbitrage.policies import build_policy, policy_options
from arbitrage.prompts import PromptStyle
from tests.integration.conftest import load

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not hasattr(LlamaCppGenerator, "verify_step"), reason="the llama.cpp backend cannot verify steps yet"
    ),
]


def config(keep_prefix: KeepPrefix = "verified") -> EngineConfig:
    return EngineConfig(
        step=StepParams(max_step_tokens=48), max_steps=6, max_total_tokens=200, keep_prefix=keep_prefix
    )


OTHER_STYLE = PromptStyle(
    system="You are a careful math tutor.", user_template="Problem: {question}\nSolve it."
)


@pytest.fixture(scope="module")
def questions() -> list[str]:
    _, problems = load_problems("gsm8k", None, None, None, None, 0, 3)
    return [p.question for p in problems]


@pytest.fixture(scope="module")
def target() -> Iterator[LlamaCppGenerator]:
    gen = load("smollm2-135m")
    yield gen
    gen.close()


@pytest.fixture(scope="module", params=["gemma3-270m", "smollm2-135m-other-style"])
def draft(request: pytest.FixtureRequest) -> Iterator[LlamaCppGenerator]:
    if request.param == "gemma3-270m":
        gen = load("gemma3-270m")
    else:
        gen = load("smollm2-135m", prompt_style=OTHER_STYLE)
    yield gen
    gen.close()


def test_always_escalating_with_prefix_keeping_is_target_only(
    questions: list[str], draft: LlamaCppGenerator, target: LlamaCppGenerator
) -> None:
    assert isinstance(target, Verifier)
    always = build_policy("random", policy_options("random", p=1.0))
    verify_all = build_policy("verify", policy_options("verify", score="disagree", threshold=-1.0))
    reference = Engine(draft, target, build_policy("target"), config())
    kept = 0
    for question in questions:
        expected = reference.solve(question)
        assert expected.kept_tokens == 0
        # random(p=1) never verifies: "always" has the engine verify before each escalation
        keep_always = Engine(draft, target, always, config("always"))
        # the verify policy verifies every step itself and escalates every step (threshold below 0)
        keep_verified = Engine(draft, target, verify_all, config())
        for engine in (keep_always, keep_verified):
            trace = engine.solve(question)
            assert trace.solution == expected.solution
            assert [s.role for s in trace.steps] == ["target"] * len(trace.steps)
            assert trace.usage["target"].verify_calls >= len(trace.steps)
            assert all(s.verification is not None for s in trace.steps)
            kept += trace.kept_tokens
    assert kept > 0  # the target agreed with some draft tokens, and did not decode them again
