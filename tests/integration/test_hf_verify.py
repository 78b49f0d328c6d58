"""Verification on the transformers backend (tiny models built in the test): teacher-forced logprobs,
greedy choices, KV reuse by the next call, and prefix-keeping continuations equal to the model's own step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verifier
from arbitrage.backends.hf import HFGenerator
from arbitrage.prompts import solution_text
from tests.tiny_hf import build_chain_model, build_random_model

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"
OTHER = "Please add 2 and 2."
CONTEXTS = [
    StepContext(QUESTION),
    StepContext(QUESTION, ("First step.",)),
    StepContext(OTHER),
    StepContext(OTHER, ("Second step.", "So the answer is 8.")),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_hf_verify")
    return {
        "chain": build_chain_model(root / "chain"),
        "random1": build_random_model(root / "random1", seed=1),
        "random2": build_random_model(root / "random2", seed=2),
    }


def hf(folders: dict[str, Path], which: str) -> HFGenerator:
    return HFGenerator(folders[which], device="cpu")


def given(text: str, finish: FinishReason = FinishReason.STEP) -> StepOutput:
    return StepOutput(text=text, finish_reason=finish, model="draft", tokens=1)


def step_by_step(gen: HFGenerator, context: list[int], verified: list[int]) -> list[Any]:
    """Next-token log-probabilities before each verified token and after the last, one forward each."""
    rows = []
    for i in range(len(verified) + 1):
        with torch.no_grad():
            logits = gen.model(input_ids=torch.tensor([context + verified[:i]])).logits[0, -1]
        rows.append(torch.log_softmax(logits.float(), dim=-1))
    return rows


def same_step(a: StepOutput, b: StepOutput) -> None:
    assert (a.text, a.finish_reason, a.tokens) == (b.text, b.finish_reason, b.tokens)
    np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=1e-4)
    np.testing.assert_allclose(a.token_entropies, b.token_entropies, atol=1e-4)


def test_hf_generator_is_a_verifier(folders: dict[str, Path]) -> None:
    assert isinstance(hf(folders, "chain"), Verifier)


@pytest.mark.parametrize("context", CONTEXTS[:2])
def test_verification_matches_step_by_step_decoding(folders: dict[str, Path], context: StepContext) -> None:
    draft, target = hf(folders, "random1"), hf(folders, "random2")
    step = draft.generate_step(context, StepParams(max_step_tokens=10))
    for candidate in (step, given("Second step."), given("So the answer is 8.", FinishReason.EOS)):
        v = target.verify_step(context, candidate, StepParams())
        context_ids = target.context_tokens(context, "\n\n")
        text = solution_text((*context.steps, candidate.text))
        if candidate.finish_reason != FinishReason.STEP:
            text = text[:-2]
        full = (
            target._prompt_tokens(context.question)
            + target.tokenizer(text, add_special_tokens=False).input_ids
        )
        assert full[: len(context_ids)] == context_ids  # the separator keeps the context's tokens apart
        assert list(v.tokens) == full[len(context_ids) :] and v.n > 0
        assert v.prompt_tokens == len(context_ids) and v.text == candidate.text
        assert len(v.token_logprobs) == v.n and len(v.greedy_tokens) == len(v.entropies) == v.n + 1
        rows = step_by_step(target, context_ids, list(v.tokens))
        np.testing.assert_allclose(
            v.token_logprobs, [float(r[t]) for r, t in zip(rows[:-1], v.tokens, strict=True)], atol=1e-4
        )
        assert list(v.greedy_tokens) == [int(torch.argmax(r)) for r in rows]
        np.testing.assert_allclose(v.greedy_logprobs, [float(r.max()) for r in rows], atol=1e-4)
        np.testing.assert_allclose(v.entropies, [float(-(r.exp() * r).sum()) for r in rows], atol=1e-4)
        assert v.end_is_eos == (v.greedy_tokens[-1] == target.tokenizer.eos_token_id)


def test_chain_model_agrees_with_its_own_step_and_keeps_it_without_decoding(folders: dict[str, Path]) -> None:
    gen = hf(folders, "chain")
    v = gen.verify_step(StepContext(QUESTION), given("The answer."), StepParams())
    assert v.n == 4 and v.first_divergence is None and v.agreement == 1.0
    assert all(-1e-3 < lp <= 0 for lp in v.token_logprobs)
    cached = list(gen._cached)
    out = gen.continue_step(StepContext(QUESTION), StepParams(), v)
    assert gen._cached == cached  # nothing evaluated
    own = hf(folders, "chain").generate_step(StepContext(QUESTION), StepParams())
    same_step(out, own)
    assert out.extra["kept_tokens"] == 4 and out.prefill_tokens == 0
    # the last step ends the answer: the model's token after "Done" is its end token
    done = gen.verify_step(
        StepContext(QUESTION, ("The answer.",)), given("Done", FinishReason.EOS), StepParams()
    )
    assert done.end_is_eos and done.first_divergence is None and done.n == 1
    last = gen.continue_step(StepContext(QUESTION, ("The answer.",)), StepParams(), done)
    assert (last.text, last.finish_reason, last.tokens, last.extra["kept_tokens"]) == (
        "Done",
        FinishReason.EOS,
        2,
        1,
    )


def test_chain_model_keeps_the_agreed_prefix_and_decodes_the_rest(folders: dict[str, Path]) -> None:
    gen = hf(folders, "chain")
    v = gen.verify_step(StepContext(QUESTION), given("The apples."), StepParams())
    assert v.first_divergence == 1 and v.agreement < 1.0
    out = gen.continue_step(StepContext(QUESTION), StepParams(), v)
    assert (out.text, out.finish_reason, out.tokens, out.extra["kept_tokens"]) == (
        "The answer.",
        FinishReason.STEP,
        4,
        1,
    )
    # a step the model would go on writing: every token agrees, the divergence is its end
    early = gen.verify_step(StepContext(QUESTION), given("The answer", FinishReason.EOS), StepParams())
    assert early.first_divergence == early.n == 2 and not early.end_is_eos
    full = gen.continue_step(StepContext(QUESTION), StepParams(), early)
    assert (full.text, full.extra["kept_tokens"]) == ("The answer.", 2)


@pytest.mark.parametrize("context", CONTEXTS)
def test_continue_step_equals_generate_step(folders: dict[str, Path], context: StepContext) -> None:
    draft, target = hf(folders, "random1"), hf(folders, "random2")
    params = StepParams(max_step_tokens=12)
    own = hf(folders, "random2").generate_step(context, params)
    # the model's own first token, as text: a step it agrees with and would go on writing
    first = target.verify_step(context, given("First step."), params).greedy_tokens[0]
    candidates = [
        draft.generate_step(context, StepParams(max_step_tokens=8)),  # another model's step
        given(target.tokenizer.decode([first]), FinishReason.LENGTH),
        given(own.text, FinishReason.LENGTH),  # stripped and re-tokenised: may diverge anywhere
        given("First step."),
    ]
    kept = []
    for candidate in candidates:
        v = target.verify_step(context, candidate, params)
        out = target.continue_step(context, params, v)
        same_step(out, own)  # byte-identical text, same tokens, logprobs within float tolerance
        divergence = v.first_divergence
        assert out.extra["kept_tokens"] == min(v.n if divergence is None else divergence, out.tokens)
        kept.append(out.extra["kept_tokens"])
    assert kept[1] == 1  # the model's own first token is kept


def test_verified_tokens_stay_in_the_cache(folders: dict[str, Path]) -> None:
    target = hf(folders, "random2")
    context = StepContext(QUESTION, ("First step.",))
    cold = target.verify_step(context, given("Second step."), StepParams())
    assert cold.prefill_tokens == cold.prompt_tokens + cold.n  # cold cache: everything
    # the next step's context is the verified one: only its last token is evaluated again
    after = StepContext(QUESTION, ("First step.", "Second step."))
    nxt = target.generate_step(after, StepParams(max_step_tokens=4))
    assert nxt.prompt_tokens == cold.prompt_tokens + cold.n and nxt.prefill_tokens == 1
    # verifying after the model's own step reuses the context: the step plus the token before it
    target.generate_step(context, StepParams(max_step_tokens=4))
    warm = target.verify_step(context, given("So the answer is 8.", FinishReason.EOS), StepParams())
    assert warm.prefill_tokens == warm.n + 1
    # and a continuation from the verification evaluates no context token again
    out = target.continue_step(context, StepParams(max_step_tokens=4), warm)
    assert out.prefill_tokens == 0 and out.prompt_tokens == warm.prompt_tokens
    same_step(out, hf(folders, "random2").generate_step(context, StepParams(max_step_tokens=4)))


def test_a_verification_of_another_context_is_not_kept(folders: dict[str, Path]) -> None:
    target = hf(folders, "random2")
    v = target.verify_step(StepContext(OTHER), given("First step."), StepParams())
    out = target.continue_step(StepContext(QUESTION), StepParams(max_step_tokens=6), v)
    assert out.extra["kept_tokens"] == 0
    same_step(out, hf(folders, "random2").generate_step(StepContext(QUESTION), StepParams(max_step_tokens=6)))
