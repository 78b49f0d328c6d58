"""The llama.cpp backend on the real SmolLM2-135M GGUF (and Gemma 3 270M for the cross-family pair)."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepParams
from arbitrage.backends.llamacpp import ALIGNED_CHUNK, LlamaCppGenerator
from arbitrage.backends.llamacpp_probe import extra_bufts_allowed, run_probe
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ModelFileError
from arbitrage.models.store import resolve_model_path
from arbitrage.policies import DraftOnlyPolicy, RandomPolicy, StepView, TargetOnlyPolicy
from arbitrage.settings import Settings
from arbitrage.trace import Decision

from .conftest import load

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"


def test_step_stops_at_the_separator(smol: LlamaCppGenerator) -> None:
    out = smol.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=200))
    assert out.finish_reason == FinishReason.STEP
    assert "\n\n" not in out.text and out.text
    assert out.tokens == len(out.token_logprobs) == len(out.token_entropies) > 0
    assert all(lp <= 0 for lp in out.token_logprobs)
    assert out.prefill_tokens == out.prompt_tokens  # cold cache
    assert out.model == "smollm2-135m"


def test_single_newline_separator(smol: LlamaCppGenerator) -> None:
    out = smol.generate_step(StepContext(QUESTION), StepParams(separator="\n", max_step_tokens=200))
    assert out.finish_reason in (FinishReason.STEP, FinishReason.EOS)
    assert "\n" not in out.text


def test_token_cap_bounds_a_step_that_never_ends(smol: LlamaCppGenerator) -> None:
    out = smol.generate_step(StepContext(QUESTION), StepParams(separator="@@never@@", max_step_tokens=7))
    assert out.finish_reason == FinishReason.LENGTH
    assert out.tokens == 7


def test_eos_ends_the_solve() -> None:
    # flash attention off: with it this greedy answer of smollm2-135m never ends (a model quirk, not ours)
    smol = load("smollm2-135m", settings=Settings(llama_flash_attn="off"))
    try:
        trace = Engine(smol, smol, DraftOnlyPolicy(), EngineConfig(max_steps=40, stop_on_boxed=False)).solve(
            "Say hello to Anna in one short sentence."
        )
    finally:
        smol.close()
    assert trace.stop_reason == "eos"
    assert trace.steps[-1].finish_reason == FinishReason.EOS


@pytest.mark.parametrize("determinism", ["off", "aligned"])
def test_kv_cache_reuse_prefills_only_new_tokens(determinism: str) -> None:
    smol = load("smollm2-135m", determinism=determinism)
    try:
        # aligned mode reuses whole 32-token chunks of canonically evaluated text only: decoded tokens and
        # the partial chunk before them are evaluated again (batched) at the next call
        aligned = determinism == "aligned"
        params = StepParams(max_step_tokens=60)
        first = smol.generate_step(StepContext(QUESTION), params)
        assert first.prefill_tokens == first.prompt_tokens
        # 1. continuing its own step: the step's tokens are already cached, only the separator is new
        second = smol.generate_step(StepContext(QUESTION, (first.text,)), params)
        assert second.prefill_tokens <= (first.tokens + 3 + ALIGNED_CHUNK if aligned else 3)
        # 2. continuing a step written by another model: only that text (+ separator) is new
        foreign = "Tom starts with 3 apples and then buys 5 apples more at the market."
        new_tokens = len(smol.tokenize(foreign + "\n\n"))
        third = smol.generate_step(StepContext(QUESTION, (first.text, second.text, foreign)), params)
        if aligned:
            assert new_tokens - 3 <= third.prefill_tokens <= new_tokens + second.tokens + 3 + ALIGNED_CHUNK
        else:
            assert abs(third.prefill_tokens - new_tokens) <= 3
            assert third.prefill_tokens < third.prompt_tokens / 3
        # 3. an unrelated question only shares the chat template's opening
        other = smol.generate_step(StepContext("What is the capital of France?"), params)
        assert other.prefill_tokens < other.prompt_tokens or aligned
        assert other.prefill_tokens >= len(smol.tokenize("What is the capital of France?"))
    finally:
        smol.close()


def test_greedy_steps_are_deterministic_across_instances(
    smol: LlamaCppGenerator, smol2: LlamaCppGenerator
) -> None:
    params = StepParams(max_step_tokens=40)
    smol2.generate_step(StepContext("unrelated warm-up question?"), params)  # different cache state
    a = smol.generate_step(StepContext(QUESTION), params)
    b = smol2.generate_step(StepContext(QUESTION), params)
    assert a.text == b.text


def test_sampling_with_a_seed_is_reproducible(smol: LlamaCppGenerator) -> None:
    params = StepParams(max_step_tokens=30, temperature=1.0, top_p=0.9, seed=7)
    a = smol.generate_step(StepContext(QUESTION), params)
    b = smol.generate_step(StepContext(QUESTION), params)
    assert a.text == b.text


class AlwaysEscalate:
    name = "always"
    skip_draft = False

    def decide(self, view: StepView) -> Decision:
        return Decision(escalate=True)


def test_always_escalate_equals_target_only_decoding(
    smol: LlamaCppGenerator, smol2: LlamaCppGenerator
) -> None:
    config = EngineConfig(max_steps=4, step=StepParams(max_step_tokens=48))
    gemma = load("gemma3-270m")
    try:
        escalated = Engine(gemma, smol, AlwaysEscalate(), config).solve(QUESTION)
        target_only = Engine(gemma, smol2, TargetOnlyPolicy(), config).solve(QUESTION)
        draft_only = Engine(gemma, smol, DraftOnlyPolicy(), config).solve(QUESTION)
    finally:
        gemma.close()
    assert escalated.solution == target_only.solution
    assert all(s.model == "smollm2-135m" for s in escalated.steps)
    assert all(s.model == "gemma3-270m" for s in draft_only.steps)


def test_cross_family_pair_completes() -> None:
    gemma = load("gemma3-270m")
    smol = load("smollm2-135m")
    try:
        config = EngineConfig(max_steps=6, step=StepParams(max_step_tokens=64))
        trace = Engine(gemma, smol, RandomPolicy(0.5, seed=1), config).solve(QUESTION)
    finally:
        gemma.close()
        smol.close()
    assert trace.stop_reason is not None and trace.steps
    assert {s.role for s in trace.steps} == {"draft", "target"}
    assert {s.model for s in trace.steps} == {"gemma3-270m", "smollm2-135m"}
    dropped = 1 if trace.stop_reason == "repetition" else 0  # the loop guard discards the repeated step
    assert trace.usage["draft"].calls == len(trace.steps) + dropped


def test_corrupt_gguf_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.gguf"
    good = resolve_model_path("smollm2-135m")
    bad.write_bytes(good.read_bytes()[:4096])  # truncated: right magic, missing tensors
    with pytest.raises(ModelFileError, match="corrupt"):
        LlamaCppGenerator(bad, extra_bufts=False)


def test_extra_buffer_type_setting_is_applied(tmp_path: Path) -> None:
    path = resolve_model_path("smollm2-135m")
    assert extra_bufts_allowed(path, Settings(home=tmp_path, llama_extra_bufts="off")) is False
    assert extra_bufts_allowed(path, Settings(home=tmp_path, llama_extra_bufts="on")) is True
    gen = LlamaCppGenerator(path, extra_bufts=False)
    try:
        assert gen.llm.model_params.use_extra_bufts is False
        assert gen.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=4)).tokens == 4
    finally:
        gen.close()


def test_probe_runs_in_a_subprocess_and_answers(tmp_path: Path) -> None:
    path = resolve_model_path("smollm2-135m")
    verdict = run_probe(path)  # survives whether or not the subprocess crashes
    assert isinstance(verdict, bool)
    settings = Settings(home=tmp_path, llama_extra_bufts="auto")
    assert extra_bufts_allowed(path, settings) in (True, False)
