"""The transformers backend on tiny models built in the test (no hub): stops, logprobs, KV reuse."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams
from arbitrage.backends.hf import HFGenerator
from arbitrage.backends.loader import load_generator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import BackendError, ConfigError, ModelFileError, ModelNotFoundError
from arbitrage.policies import DraftOnlyPolicy, RandomPolicy, TargetOnlyPolicy
from tests.tiny_hf import build_chain_model, build_random_model

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"
OTHER = "Please add 2 and 2."


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_hf")
    return {
        "chain": build_chain_model(root / "chain"),
        "random1": build_random_model(root / "random1", seed=1),
        "random2": build_random_model(root / "random2", seed=2),
    }


def hf(folders: dict[str, Path], which: str, **kwargs: object) -> HFGenerator:
    return HFGenerator(folders[which], device="cpu", **kwargs)  # type: ignore[arg-type]


def same_step(a: StepOutput, b: StepOutput) -> None:
    assert (a.text, a.finish_reason, a.tokens) == (b.text, b.finish_reason, b.tokens)
    np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=1e-4)
    np.testing.assert_allclose(a.token_entropies, b.token_entropies, atol=1e-4)


# -- how steps end (the chain model writes "The answer.", a blank line, "Done", EOS) -------------------


def test_step_stops_at_the_separator(folders: dict[str, Path]) -> None:
    out = hf(folders, "chain").generate_step(StepContext(QUESTION), StepParams())
    assert (out.text, out.finish_reason, out.tokens) == ("The answer.", FinishReason.STEP, 4)
    assert len(out.token_logprobs) == len(out.token_entropies) == 4
    assert all(-1e-3 < lp <= 0 for lp in out.token_logprobs)  # the chain is near-certain
    assert out.prefill_tokens == out.prompt_tokens > 0  # cold cache


def test_eos_ends_the_answer_and_the_cache_is_reused(folders: dict[str, Path]) -> None:
    gen = hf(folders, "chain")
    first = gen.generate_step(StepContext(QUESTION), StepParams())
    out = gen.generate_step(StepContext(QUESTION, (first.text,)), StepParams())
    assert (out.text, out.finish_reason, out.tokens) == ("Done", FinishReason.EOS, 2)
    # cached: prompt + "The", " answer", "." (the blank-line token was chosen but not evaluated)
    assert out.prompt_tokens == first.prompt_tokens + 4
    assert out.prefill_tokens == 1


def test_token_cap(folders: dict[str, Path]) -> None:
    out = hf(folders, "chain").generate_step(StepContext(QUESTION), StepParams(max_step_tokens=2))
    assert (out.text, out.finish_reason, out.tokens) == ("The answer", FinishReason.LENGTH, 2)


def test_other_separators(folders: dict[str, Path]) -> None:
    out = hf(folders, "chain").generate_step(StepContext(QUESTION), StepParams(separator=" "))
    assert (out.text, out.finish_reason, out.tokens) == ("The", FinishReason.STEP, 2)


def test_engine_solves_with_the_chain_model(folders: dict[str, Path]) -> None:
    gen = hf(folders, "chain")
    trace = Engine(gen, gen, DraftOnlyPolicy(), EngineConfig()).solve(QUESTION)
    assert [s.text for s in trace.steps] == ["The answer.", "Done"]
    assert trace.stop_reason == "eos"
    assert trace.usage["draft"].kv_reuse_rate is not None and trace.usage["draft"].kv_reuse_rate > 0.4


# -- logprobs and KV reuse on a random model --------------------------------------------------------


def test_logprobs_match_a_plain_forward_pass(folders: dict[str, Path]) -> None:
    gen = hf(folders, "random1")
    out = gen.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=12))
    assert out.tokens == len(out.token_logprobs) == len(out.token_entropies) == 12
    assert out.finish_reason == FinishReason.LENGTH
    # Recompute without any cache: the whole prompt plus the generated tokens in one forward pass.
    context = gen.context_tokens(StepContext(QUESTION), "\n\n")
    generated = []
    ids = list(context)
    for _ in range(12):
        with torch.no_grad():
            logits = gen.model(input_ids=torch.tensor([ids])).logits[0, -1]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        token = int(torch.argmax(logprobs))
        generated.append((float(logprobs[token]), float(-(logprobs.exp() * logprobs).sum())))
        ids.append(token)
    np.testing.assert_allclose(out.token_logprobs, [g[0] for g in generated], atol=1e-4)
    np.testing.assert_allclose(out.token_entropies, [g[1] for g in generated], atol=1e-4)
    assert all(0 <= e <= math.log(len(gen.tokenizer)) + 1e-6 for e in out.token_entropies)


def test_kv_reuse_gives_the_same_step_as_a_cold_start(folders: dict[str, Path]) -> None:
    warm = hf(folders, "random1")
    first = warm.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=10))
    context = StepContext(QUESTION, (first.text or "x",))
    reused = warm.generate_step(context, StepParams(max_step_tokens=10))
    cold = hf(folders, "random1").generate_step(context, StepParams(max_step_tokens=10))
    same_step(reused, cold)
    assert cold.prefill_tokens == cold.prompt_tokens
    assert first.prompt_tokens <= reused.prompt_tokens - reused.prefill_tokens < reused.prompt_tokens


def test_cache_is_cropped_when_the_solution_changes(folders: dict[str, Path]) -> None:
    warm = hf(folders, "random1")
    prompt_tokens = warm.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=4)).prompt_tokens
    warm.generate_step(StepContext(QUESTION, ("First step.",)), StepParams(max_step_tokens=6))
    context = StepContext(QUESTION, ("Second step.",))
    cropped = warm.generate_step(context, StepParams(max_step_tokens=6))
    same_step(cropped, hf(folders, "random1").generate_step(context, StepParams(max_step_tokens=6)))
    reused = cropped.prompt_tokens - cropped.prefill_tokens
    assert prompt_tokens <= reused < cropped.prompt_tokens  # the question's prompt came from the cache
    # another question shares only the system turn and the user turn's opening with it
    other = warm.generate_step(StepContext(OTHER), StepParams(max_step_tokens=6))
    same_step(other, hf(folders, "random1").generate_step(StepContext(OTHER), StepParams(max_step_tokens=6)))
    before, after = warm.context_tokens(context, "\n\n"), warm.context_tokens(StepContext(OTHER), "\n\n")
    shared = next(i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b)
    assert 0 < other.prompt_tokens - other.prefill_tokens == shared < prompt_tokens


def test_greedy_is_deterministic(folders: dict[str, Path]) -> None:
    a = hf(folders, "random2")
    first = a.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=8))
    again = a.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=8))
    assert again.prefill_tokens == 1  # everything but the last prompt token came from the cache
    same_step(first, again)
    same_step(
        first, hf(folders, "random2").generate_step(StepContext(QUESTION), StepParams(max_step_tokens=8))
    )


def test_seeded_sampling_repeats(folders: dict[str, Path]) -> None:
    params = StepParams(max_step_tokens=16, temperature=1.0, seed=5)
    a = hf(folders, "random2").generate_step(StepContext(QUESTION), params)
    b = hf(folders, "random2").generate_step(StepContext(QUESTION), params)
    c = hf(folders, "random2").generate_step(
        StepContext(QUESTION), StepParams(max_step_tokens=16, temperature=1.0, seed=6)
    )
    same_step(a, b)
    assert a.text != c.text


def test_always_escalate_equals_target_only(folders: dict[str, Path]) -> None:
    config = EngineConfig(step=StepParams(max_step_tokens=8), max_steps=3)
    escalate = Engine(hf(folders, "random1"), hf(folders, "random2"), RandomPolicy(1.0), config).solve(
        QUESTION
    )
    target_only = Engine(hf(folders, "random1"), hf(folders, "random2"), TargetOnlyPolicy(), config).solve(
        QUESTION
    )
    assert [s.text for s in escalate.steps] == [s.text for s in target_only.steps]
    assert len(escalate.steps) == 3 and all(s.role == "target" for s in escalate.steps)
    assert escalate.usage["draft"].calls == 3 and target_only.usage["draft"].calls == 0


# -- specs and errors -------------------------------------------------------------------------------


def test_spec_with_options(folders: dict[str, Path]) -> None:
    gen = load_generator(
        f"hf:{folders['chain']}?device=cpu&dtype=float32&name=chain&template=chatml&n_ctx=512"
    )
    assert isinstance(gen, HFGenerator) and gen.name == "chain" and gen.n_ctx == 512
    assert gen.generate_step(StepContext(QUESTION), StepParams()).text == "The answer."


def test_context_overflow_is_a_backend_error(folders: dict[str, Path]) -> None:
    with pytest.raises(BackendError, match="does not fit n_ctx=20"):
        hf(folders, "chain", n_ctx=20).generate_step(StepContext(QUESTION), StepParams())


def test_missing_folder_is_never_a_hub_download(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        load_generator("hf:HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ModelFileError, match=r"no config\.json"):
        load_generator(f"hf:{tmp_path}")


def test_bad_options(folders: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="Unknown option"):
        load_generator(f"hf:{folders['chain']}?devcie=cpu")
    with pytest.raises(ConfigError, match="must be one of"):
        load_generator(f"hf:{folders['chain']}?dtype=int3")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            load_generator(f"hf:{folders['chain']}?device=cuda")
