"""Early escalation on real models (smollm2-135m through llama.cpp): escalating at every probe is
target-only byte for byte, never escalating is draft-only, and the probes, agreed prefixes and
before-draft decisions show in the trace.

Draft: smollm2-135m with another prompt style (same tokenizer, different steps); target: smollm2-135m
with sequential verification, so that a kept prefix gives exactly the target's own step.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arbitrage.backends.base import StepParams
from arbitrage.backends.llamacpp import LlamaCppGenerator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.evaluation.datasets import load_problems
from arbitrage.policies import build_policy
from arbitrage.policies.early import EarlyPolicy
from arbitrage.prompts import PromptStyle
from tests.integration.conftest import load

pytestmark = pytest.mark.slow

# short steps keep it fast: the first test solves four times, the second needs three steps
CONFIG = EngineConfig(step=StepParams(max_step_tokens=16), max_steps=2, max_total_tokens=48)
THREE_STEPS = EngineConfig(step=StepParams(max_step_tokens=16), max_steps=3, max_total_tokens=48)
OTHER_STYLE = PromptStyle(
    system="You are a careful math tutor.", user_template="Problem: {question}\nSolve it."
)


@pytest.fixture(scope="module")
def question() -> str:
    _, problems = load_problems("gsm8k", None, None, None, None, 0, 1)
    return problems[0].question


@pytest.fixture(scope="module")
def target() -> Iterator[LlamaCppGenerator]:
    gen = load("smollm2-135m", verify="sequential")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def draft() -> Iterator[LlamaCppGenerator]:
    gen = load("smollm2-135m", prompt_style=OTHER_STYLE)
    yield gen
    gen.close()


def test_the_probe_keeps_target_and_draft_text_exact(
    question: str, draft: LlamaCppGenerator, target: LlamaCppGenerator
) -> None:
    target_only = Engine(draft, target, build_policy("target"), CONFIG).solve(question)
    draft_only = Engine(draft, target, build_policy("draft"), CONFIG).solve(question)
    always = Engine(draft, target, EarlyPolicy("target_min_nll", -1e9, probe_tokens=4), CONFIG).solve(
        question
    )
    never = Engine(draft, target, EarlyPolicy("target_min_nll", 1e9, probe_tokens=4), CONFIG).solve(question)
    assert always.solution == target_only.solution
    assert all(s.decision.point == "probe" and s.role == "target" for s in always.steps)
    for step in always.steps:  # the target continued from the probe's agreed prefix
        assert step.probe is not None and step.probe.agreed is not None
        assert step.kept_tokens == min(step.probe.agreed, step.tokens)
    assert never.solution == draft_only.solution
    assert all(s.role == "draft" and s.probe is not None for s in never.steps)
    assert never.usage["target"].verify_calls == len(never.steps)


def test_decisions_before_the_draft_read_its_view_of_the_target_step(
    question: str, draft: LlamaCppGenerator, target: LlamaCppGenerator
) -> None:
    # τ 0: every step with evidence escalates before the draft writes; the first has none
    policy = EarlyPolicy("draft_nll", 0.0, probe_tokens=0)
    trace = Engine(draft, target, policy, THREE_STEPS).solve(question)
    roles = [s.role for s in trace.steps]
    assert roles[0] == "draft" and set(roles[1:]) == {"target"} and len(roles) >= 3
    assert trace.steps[1].decision.info["evidence"] == "the draft's proposal for step 0"
    assert trace.steps[2].decision.info["evidence"].startswith("the draft's view of step 1")
    assert trace.steps[2].draft is None and trace.steps[2].decision.score > 0
    assert trace.usage["draft"].verify_calls >= 1  # it read the target's step 1
    assert trace.usage["draft"].calls == 1  # and wrote only the first step
