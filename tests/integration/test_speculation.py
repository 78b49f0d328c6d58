"""Token-level speculation on real models: the target's greedy text is unchanged, proposals are
counted in the trace (also from a draft with another vocabulary, at the text level), and the adaptive
controller switches speculation off where its costs say so.

Target and proposer are smollm2-135m (two instances, two KV caches). A second prompt style makes the
proposer see other text than the target does, so that it proposes tokens the target rejects. Contexts
stay under 256 tokens: there llama.cpp (flash attention) gives a batch of fewer than 8 tokens the same
numbers as decoding them one at a time, so the output must be identical byte for byte.
"""

from __future__ import annotations

import pytest

from arbitrage.backends.base import StepParams
from arbitrage.backends.speculation import PriorCosts, Speculation, SpeculationConfig
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.policies import build_policy, policy_options
from arbitrage.prompts import PromptStyle
from arbitrage.run import attach_speculation
from tests.integration.conftest import load

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is 12 * 7? Explain briefly.",
    "Tom has 5 apples and buys 3 more. How many apples does he have?",
    "List three prime numbers and add them.",
]
CONFIG = EngineConfig(step=StepParams(max_step_tokens=40), max_steps=4, max_total_tokens=110)


def solve_all(target, draft) -> list[str]:  # type: ignore[no-untyped-def]
    engine = Engine(draft, target, build_policy("target", policy_options("target")), CONFIG)
    return [engine.solve(q).solution for q in QUESTIONS]


def spec_totals(engine_traces) -> dict[str, int]:  # type: ignore[no-untyped-def]
    totals = {"rounds": 0, "proposed": 0, "accepted": 0, "plain_tokens": 0}
    for trace in engine_traces:
        for step in trace.steps:
            stats = step.target.extra["speculation"]
            for key in totals:
                totals[key] += stats[key]
    return totals


@pytest.mark.parametrize("style", [None, PromptStyle(system="Be terse.", user_template="Q: {question}")])
def test_speculation_keeps_the_target_text_byte_for_byte(style: PromptStyle | None) -> None:
    target = load("smollm2-135m", determinism="off")
    proposer = (
        load("smollm2-135m", prompt_style=style, determinism="off")
        if style
        else load("smollm2-135m", determinism="off")
    )
    try:
        plain = solve_all(target, proposer)
        target.speculate_with(Speculation(proposer, SpeculationConfig(adaptive=False, k_start=3)))
        engine = Engine(proposer, target, build_policy("target", policy_options("target")), CONFIG)
        traces = [engine.solve(q) for q in QUESTIONS]
        assert [t.solution for t in traces] == plain
        totals = spec_totals(traces)
        assert totals["rounds"] > 0 and totals["proposed"] > 0
        assert 0 < totals["accepted"] <= totals["proposed"]
        # every token but a step's first (read after the prefill) follows one feed of the token before
        # it: a plain decode, a kept proposal, or the start of a round
        feeds = sum(s.target.tokens - 1 for t in traces for s in t.steps)
        assert totals["accepted"] + totals["rounds"] + totals["plain_tokens"] == feeds
    finally:
        target.close()
        proposer.close()


def test_costs_that_cannot_pay_switch_speculation_off() -> None:
    target, proposer = load("smollm2-135m", determinism="off"), load("smollm2-135m", determinism="off")
    try:
        # a proposer said (by its measured costs) to cost five target decodes a token
        prior = PriorCosts(decode=0.01, batch_token=0.01, proposer=0.05)
        target.speculate_with(Speculation(proposer, SpeculationConfig(probe_every=1000), prior))
        engine = Engine(proposer, target, build_policy("target", policy_options("target")), CONFIG)
        traces = [engine.solve(q) for q in QUESTIONS[:2]]
        totals = spec_totals(traces)
        assert totals["rounds"] == 0 and totals["plain_tokens"] > 0
    finally:
        target.close()
        proposer.close()


def test_sampled_steps_do_not_speculate() -> None:
    target, proposer = load("smollm2-135m", determinism="off"), load("smollm2-135m", determinism="off")
    try:
        target.speculate_with(Speculation(proposer, SpeculationConfig(adaptive=False)))
        from arbitrage.backends.base import StepContext

        out = target.generate_step(StepContext(QUESTIONS[0]), StepParams(max_step_tokens=8, temperature=0.7))
        assert "speculation" not in out.extra
    finally:
        target.close()
        proposer.close()


def test_a_proposer_with_another_vocabulary_is_refused_as_tokens() -> None:
    target, other = load("smollm2-135m", determinism="off"), load("gemma3-270m", determinism="off")
    try:
        with pytest.raises(ConfigError, match=r"vocabularies differ.*TextLevelProposer"):
            target.speculate_with(Speculation(other))
    finally:
        target.close()
        other.close()


def test_a_draft_with_another_vocabulary_speculates_at_the_text_level() -> None:
    # gemma3-270m (262,144 tokens) proposes text for smollm2-135m (49,152): the writer's greedy text is
    # unchanged byte for byte, and some proposals are kept
    target, other = load("smollm2-135m", determinism="off"), load("gemma3-270m", determinism="off")
    try:
        plain = solve_all(target, other)
        speculation = attach_speculation(target, other, SpeculationConfig(adaptive=False, k_start=3))
        assert speculation.proposer.name == "gemma3-270m (text level)"
        engine = Engine(other, target, build_policy("target", policy_options("target")), CONFIG)
        traces = [engine.solve(q) for q in QUESTIONS]
        assert [t.solution for t in traces] == plain
        totals = spec_totals(traces)
        assert totals["rounds"] > 0 and 0 < totals["accepted"] <= totals["proposed"]
        feeds = sum(s.target.tokens - 1 for t in traces for s in t.steps)
        assert totals["accepted"] + totals["rounds"] + totals["plain_tokens"] == feeds
    finally:
        target.close()
        other.close()


def test_the_aligned_mode_refuses_speculation() -> None:
    target, proposer = load("smollm2-135m", determinism="aligned"), load("smollm2-135m", determinism="off")
    try:
        with pytest.raises(ConfigError, match="determinism"):
            target.speculate_with(Speculation(proposer))
    finally:
        target.close()
        proposer.close()
