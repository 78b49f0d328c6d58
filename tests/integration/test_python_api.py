"""The README's Python API on the real SmolLM2-135M GGUF (as draft and target), through llama.cpp."""

from __future__ import annotations

import pytest

import arbitrage

pytestmark = pytest.mark.slow


def test_the_python_api_with_a_real_model() -> None:
    spec = arbitrage.RunSpec(
        draft="smollm2-135m",
        target="smollm2-135m",
        policies=[("random", arbitrage.policy_options("random", p=0.5))],
        n_ctx=1024,
    )
    with arbitrage.Run(spec) as run:
        config = arbitrage.EngineConfig(max_steps=3, step=arbitrage.StepParams(max_step_tokens=48))
        trace = run.engine(config=config).solve("Tom has 3 apples and buys 5 more. How many apples now?")
    assert 1 <= len(trace.steps) <= 3 and all(s.model == "smollm2-135m" for s in trace.steps)
    assert trace.policy == "random(p=0.5)"
    assert trace.usage["draft"].calls == len(trace.steps)  # the draft proposes every step
