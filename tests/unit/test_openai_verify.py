"""Verification over OpenAI-compatible servers: prompt logprobs (echo, or vLLM's prompt_logprobs) mapped to
the step's span, prefix-keeping continuations, and a clear error where a server has no prompt logprobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verifier
from arbitrage.backends.loader import load_generator
from arbitrage.backends.openai_http import OpenAIGenerator
from arbitrage.backends.prompt_logprobs import END_TOKEN, text_id
from arbitrage.errors import BackendError
from tests.fake_openai import AGREE, DISAGREE, GREEDY, FakeOpenAIServer, token_id

FAST = "retries=1&backoff=0.01&max_backoff=0.05"
QUESTION = "What is 2 + 3?"
CONTEXT = StepContext(QUESTION)
SECOND = StepContext(QUESTION, ("Add 2 and 3.",))
ANSWER = "Add 2 and 3.\n\nThe answer is 5."


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ARBITRAGE_OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def gen(server: FakeOpenAIServer) -> OpenAIGenerator:
    generator = load_generator(f"openai:{server.base_url}#tiny?{FAST}")
    assert isinstance(generator, OpenAIGenerator)
    # a consistent greedy model: after the prompt it writes ANSWER, then ends
    server.script.document = generator.render_prompt(CONTEXT, "\n\n") + ANSWER
    server.seen.completions.clear()
    return generator


def given(text: str, finish: FinishReason = FinishReason.STEP) -> StepOutput:
    return StepOutput(text=text, finish_reason=finish, model="draft", tokens=1)


def same_text(a: StepOutput, b: StepOutput) -> None:
    assert (a.text, a.finish_reason, a.tokens) == (b.text, b.finish_reason, b.tokens)


def test_openai_generator_is_a_verifier(gen: OpenAIGenerator) -> None:
    assert isinstance(gen, Verifier)


def test_echo_logprobs_give_the_step_tokens_and_the_greedy_choices(
    gen: OpenAIGenerator, server: FakeOpenAIServer
) -> None:
    v = gen.verify_step(CONTEXT, given("Add 3 and 3."), StepParams())
    words = ["Add", " 3", " and", " 3.", "\n\n"]
    assert v.tokens == tuple(text_id(w) for w in words)
    assert v.token_logprobs == (AGREE, DISAGREE, AGREE, AGREE, AGREE)  # after the divergence it goes along
    assert v.greedy_tokens[:2] == (text_id("Add"), text_id(" 2")) and v.greedy_logprobs[1] == GREEDY
    assert v.first_divergence == 1 and v.n == 5 and len(v.entropies) == 6
    assert v.extra["prompt_logprobs"] == "echo"
    # one request tried vLLM's field (the fake ignores it); then the context (for its own tokens) and the
    # context with the step were echoed
    probe, context, echo = server.seen.completions
    assert probe["prompt_logprobs"] == 1 and "echo" not in probe
    assert context["prompt"] == probe["prompt"] == gen.render_prompt(CONTEXT, "\n\n")
    assert echo["echo"] is True and echo["logprobs"] == 1 and echo["max_tokens"] == 1
    assert echo["temperature"] == 0 and "stream" not in echo and context["echo"] is True
    assert echo["prompt"] == gen.render_prompt(CONTEXT, "\n\n") + "Add 3 and 3.\n\n"
    gen.verify_step(CONTEXT, given("Add 2."), StepParams())
    assert len(server.seen.completions) == 5  # the server's kind is remembered: echo at once


def test_vllm_prompt_logprobs_are_the_first_choice(gen: OpenAIGenerator, server: FakeOpenAIServer) -> None:
    server.script.vllm = True
    v = gen.verify_step(CONTEXT, given("Add 3 and 3."), StepParams())
    assert v.extra["prompt_logprobs"] == "prompt_logprobs" and len(server.seen.completions) == 2
    assert v.tokens == tuple(token_id(w) for w in ["Add", " 3", " and", " 3.", "\n\n"])  # the server's ids
    assert v.greedy_tokens[1] == token_id(" 2") and v.first_divergence == 1
    assert v.token_logprobs == (AGREE, DISAGREE, AGREE, AGREE, AGREE)
    assert "echo" not in server.seen.completions[0]


@pytest.mark.parametrize("vllm", [False, True])
def test_continue_step_equals_generate_step(
    gen: OpenAIGenerator, server: FakeOpenAIServer, vllm: bool
) -> None:
    server.script.vllm = vllm
    own = gen.generate_step(CONTEXT, StepParams())
    assert (own.text, own.finish_reason) == ("Add 2 and 3.", FinishReason.STEP)
    prompt = gen.render_prompt(CONTEXT, "\n\n")
    for draft, kept in [("Add 3 and 3.", 1), ("Add 2 and 4.", 3), ("Multiply.", 0)]:
        v = gen.verify_step(CONTEXT, given(draft), StepParams())
        server.seen.completions.clear()
        out = gen.continue_step(CONTEXT, StepParams(), v)
        same_text(out, own)
        assert out.extra["kept_tokens"] == kept
        request = server.seen.completions[-1]
        assert request["prompt"] == prompt + " ".join(draft.split()[:kept]) and request["stream"] is True
        if kept:
            assert request["max_tokens"] == StepParams().max_step_tokens - kept
            assert out.token_logprobs[:kept] == v.token_logprobs[:kept]
    # the model's own step is kept whole: no request at all
    v = gen.verify_step(CONTEXT, given("Add 2 and 3."), StepParams())
    assert v.first_divergence is None
    server.seen.completions.clear()
    out = gen.continue_step(CONTEXT, StepParams(), v)
    same_text(out, own)
    assert out.extra["kept_tokens"] == 5 and server.seen.completions == []


def test_the_end_of_the_answer_is_verified(gen: OpenAIGenerator, server: FakeOpenAIServer) -> None:
    own = gen.generate_step(SECOND, StepParams())
    assert (own.text, own.finish_reason) == ("The answer is 5.", FinishReason.EOS)
    done = gen.verify_step(SECOND, given("The answer is 5.", FinishReason.EOS), StepParams())
    assert done.end_is_eos and done.greedy_tokens[-1] == END_TOKEN and done.first_divergence is None
    whole = gen.continue_step(SECOND, StepParams(), done)
    assert (whole.text, whole.finish_reason) == (own.text, own.finish_reason)
    assert whole.tokens == done.n + 1 == 5  # and the end token (the fake's usage leaves it out)
    # a step that stops early: every token agrees, the model would go on
    early = gen.verify_step(SECOND, given("The answer is", FinishReason.EOS), StepParams())
    assert not early.end_is_eos and early.greedy_tokens[-1] == text_id(" 5.")
    assert early.first_divergence == early.n == 3
    out = gen.continue_step(SECOND, StepParams(), early)
    same_text(out, own)
    assert out.extra["kept_tokens"] == 3


def test_kept_tokens_that_fill_the_budget_end_the_step(
    gen: OpenAIGenerator, server: FakeOpenAIServer
) -> None:
    v = gen.verify_step(CONTEXT, given("Add 2 and 4."), StepParams(max_step_tokens=2))
    server.seen.completions.clear()
    out = gen.continue_step(CONTEXT, StepParams(max_step_tokens=2), v)
    assert (out.text, out.finish_reason, out.tokens, out.extra["kept_tokens"]) == (
        "Add 2",
        FinishReason.LENGTH,
        2,
        2,
    )
    assert server.seen.completions == []


def test_a_verification_of_another_context_is_not_kept(
    gen: OpenAIGenerator, server: FakeOpenAIServer
) -> None:
    v = gen.verify_step(SECOND, given("The answer is 5.", FinishReason.EOS), StepParams())
    out = gen.continue_step(CONTEXT, StepParams(), v)
    assert (out.text, out.extra["kept_tokens"]) == ("Add 2 and 3.", 0)


def test_echo_positions_come_from_the_token_texts_not_the_offsets(
    gen: OpenAIGenerator, server: FakeOpenAIServer
) -> None:
    """llama-cpp-python echoes special tokens as empty text and counts text_offset without them."""
    plain = gen.verify_step(CONTEXT, given("Add 3 and 3."), StepParams())
    server.script.empty_specials = True
    stripped = gen.verify_step(CONTEXT, given("Add 3 and 3."), StepParams())
    assert "<|im_start|>" in gen.render_prompt(CONTEXT, "\n\n")  # the fake's offsets are shorter
    assert stripped.tokens == plain.tokens and stripped.greedy_tokens == plain.greedy_tokens
    assert stripped.extra["offsets"] == plain.extra["offsets"] == (0, 3, 5, 9, 12)
    out = gen.continue_step(CONTEXT, StepParams(), stripped)
    assert (out.text, out.extra["kept_tokens"]) == ("Add 2 and 3.", 1)


@pytest.mark.parametrize("vllm", [False, True])
def test_a_context_end_that_tokenises_differently_is_verified_with_the_step(
    gen: OpenAIGenerator, server: FakeOpenAIServer, vllm: bool
) -> None:
    """SmolLM2 writes a blank line as one token but reads it before a word as two: the verified tokens
    start where the context's own tokens and the longer prompt's part (the common-prefix rule)."""
    server.script.vllm = vllm
    server.script.split_blank_lines = True
    own = gen.generate_step(SECOND, StepParams())
    v = gen.verify_step(SECOND, given("The answer is 5.", FinishReason.EOS), StepParams())
    context = gen.render_prompt(SECOND, "\n\n")
    assert v.extra["span_start"] == len(context) - 2 and v.extra["context_chars"] == len(context)
    assert v.extra["span_text"] == "\n\nThe answer is 5." and v.extra["offsets"] == (0, 1, 2, 5, 12, 15)
    assert v.n == 6 and v.first_divergence == 0  # the model would write "\n\n" there, not "\n"
    key = token_id if vllm else text_id
    assert v.tokens[:3] == (key("\n"), key("\n"), key("The")) and v.greedy_tokens[0] == key("\n\n")
    out = gen.continue_step(SECOND, StepParams(), v)
    same_text(out, own)
    assert out.extra["kept_tokens"] == 0
    # the first context has no blank line at its end: nothing changes there
    first = gen.verify_step(CONTEXT, given("Add 3 and 3."), StepParams())
    assert first.extra["span_start"] == first.extra["context_chars"] and first.first_divergence == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("echo_logprobs", "it returned logprobs for the generated token only"),
        ("reject_logprobs", "it refused echo with logprobs .HTTP 400: logprobs is not supported"),
        ("reject_500", "it refused echo with logprobs .HTTP 500: logprobs is not supported"),
        ("shifted_echo", "its echoed logprobs do not line up with the prompt .llama-cpp-python"),
    ],
)
def test_a_server_without_prompt_logprobs_is_a_clear_error(
    gen: OpenAIGenerator, server: FakeOpenAIServer, setting: str, message: str
) -> None:
    if setting == "reject_500":  # llama-cpp-python's server without logits_all: no retries either
        server.script.reject_logprobs, server.script.reject_logprobs_status = True, 500
    else:
        setattr(server.script, setting, setting != "echo_logprobs")
    with pytest.raises(
        BackendError, match=f"tiny .{server.base_url}. cannot verify steps: {message}"
    ) as info:
        gen.verify_step(CONTEXT, given("Add 2."), StepParams())
    assert "\n" not in str(info.value) and "prompt logprobs" in str(info.value)
    assert len(server.seen.completions) == 2  # vLLM's field, then echo; a refusal is not retried
