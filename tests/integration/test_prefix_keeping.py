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
    _, problems = load_problems("gsm8k", None, None, None, None, 0, 2)
    return [p.question for p in problems]


@pytest.fixture(scope="module")
def target() -> Iterator[LlamaCppGenerator]:
    # sequential verification: byte-identical whatever the build (batched is where it is batch-invariant)
    gen = load("smollm2-135m", verify="sequential")
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


def test_batched_verification_does_not_depend_on_what_the_cache_held(
    questions: list[str], draft: LlamaCppGenerator
) -> None:
    """The default (batched) verification of a step gives the same numbers bit for bit after any history:
    a fresh cache, another question, or the target's own decode of the same context."""
    from arbitrage.backends.base import StepContext

    target = load("smollm2-135m")  # batched verification, the default
    try:
        params = config().step
        context = StepContext(questions[0], ())
        step = draft.generate_step(context, params)
        views = [target.verify_step(context, step, params)]
        target.generate_step(StepContext(questions[1], ()), params)  # another question in the cache
        views.append(target.verify_step(context, step, params))
        own = target.generate_step(context, params)  # the same context, decoded token by token
        later = StepContext(questions[0], (own.text,))
        target.generate_step(later, params)  # and a longer one after it
        views.append(target.verify_step(context, step, params))
        first = views[0]
        assert first.n > 0 and not first.extra["sequential"]
        for view in views[1:]:
            assert view.tokens == first.tokens
            assert view.token_logprobs == first.token_logprobs
            assert view.greedy_tokens == first.greedy_tokens
    finally:
        target.close()
