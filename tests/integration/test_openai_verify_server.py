"""Verification over HTTP against a real llama-cpp-python server (``--logits_all true``) with smollm2-135m.

llama-cpp-python answers ``echo=true`` with ``logprobs`` (it ignores vLLM's ``prompt_logprobs`` field). Its
echoed logprobs are right when the prompt starts with the model's BOS token, as SmolLM2's chatml prompt
does (``<|im_start|>``); elsewhere they are one position late and the backend refuses them (unit tests).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verifier
from arbitrage.backends.llamacpp import LlamaCppGenerator
from arbitrage.backends.llamacpp_server import ServerProcess
from arbitrage.backends.loader import load_generator
from arbitrage.backends.openai_http import OpenAIGenerator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.policies import build_policy, policy_options
from arbitrage.prompts import PromptStyle
from arbitrage.settings import Settings

from .conftest import load

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"
PARAMS = StepParams(max_step_tokens=60)
DRAFTS = [  # steps another model might write for QUESTION, each ending at a separator
    "Tom has 3 apples and buys 4 more.",
    "Tom has 3 apples and buys 5 more, so he now has 3 + 5 = 8 apples.",
    "First, let us count the apples.",
]
CONTEXTS = [StepContext(QUESTION), StepContext(QUESTION, (DRAFTS[0],))]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with ServerProcess(MODEL, log, threads=1, extra=("--logits_all", "true")) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_without_flash_attn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Flash attention off, for comparing numbers with the local backend also run without it: with it,
    the server's one-shot echo evaluation and the local aligned chunks take different attention kernels
    and differ by more than the 0.05 tolerance."""
    log = tmp_path_factory.mktemp("llama_server_no_fa") / "server.log"
    with ServerProcess(MODEL, log, threads=1, extra=("--logits_all", "true", "--flash_attn", "false")) as srv:
        yield srv


@pytest.fixture
def remote_without_flash_attn(server_without_flash_attn: ServerProcess) -> Iterator[OpenAIGenerator]:
    gen = load_generator(f"openai:{server_without_flash_attn.base_url}#{MODEL}?retries=1&backoff=0.2")
    assert isinstance(gen, OpenAIGenerator)
    yield gen
    gen.close()


@pytest.fixture
def remote(server: ServerProcess) -> Iterator[OpenAIGenerator]:
    gen = load_generator(f"openai:{server.base_url}#{MODEL}?retries=1&backoff=0.2")
    assert isinstance(gen, OpenAIGenerator)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def local() -> Iterator[LlamaCppGenerator]:
    gen = load(MODEL, settings=Settings(llama_flash_attn="off"))
    yield gen
    gen.close()


def step(text: str) -> StepOutput:
    return StepOutput(text=text, finish_reason=FinishReason.STEP, model="draft", tokens=1)


def test_remote_verification_matches_the_local_one(
    remote_without_flash_attn: OpenAIGenerator, local: LlamaCppGenerator
) -> None:
    """Same GGUF, same prompt: the server's echoed view of a step is the in-process backend's, also after
    a step, where SmolLM2 reads the blank line before the next step as two newline tokens (verified
    with the step by both)."""
    remote = remote_without_flash_attn
    assert isinstance(remote, Verifier)
    for context, draft in itertools.product(CONTEXTS, DRAFTS):
        theirs = remote.verify_step(context, step(draft), PARAMS)
        ours = local.verify_step(context, step(draft), PARAMS)
        assert theirs.extra["prompt_logprobs"] == "echo"
        assert theirs.n == ours.n and theirs.first_divergence == ours.first_divergence
        assert [t == g for t, g in zip(theirs.tokens, theirs.greedy_tokens, strict=False)] == [
            t == g for t, g in zip(ours.tokens, ours.greedy_tokens, strict=False)
        ]
        assert theirs.token_logprobs == pytest.approx(ours.token_logprobs, abs=0.05)
        assert theirs.greedy_logprobs[:-1] == pytest.approx(ours.greedy_logprobs[:-1], abs=0.05)
        assert theirs.prompt_tokens == ours.prompt_tokens


def test_continue_step_is_the_servers_own_step(remote: OpenAIGenerator) -> None:
    kept = []
    for context in CONTEXTS:
        own = remote.generate_step(context, PARAMS)
        for draft in DRAFTS:
            verification = remote.verify_step(context, step(draft), PARAMS)
            out = remote.continue_step(context, PARAMS, verification)
            assert (out.text, out.finish_reason) == (own.text, own.finish_reason)
            assert out.tokens == own.tokens
            kept.append(out.extra["kept_tokens"])
    assert max(kept) > 0  # the model agreed with some draft tokens and did not decode them again


def test_prefix_keeping_over_http_is_target_only(server: ServerProcess, remote: OpenAIGenerator) -> None:
    """The engine escalating every verified step of another draft keeps prefixes and still writes the
    target-only solution byte for byte."""
    draft = load(MODEL, prompt_style=PromptStyle(system="You are a careful math tutor."))
    config = EngineConfig(step=StepParams(max_step_tokens=48), max_steps=4, max_total_tokens=160)
    verify_all = build_policy("verify", policy_options("verify", score="disagree", threshold=-1.0))
    try:
        expected = Engine(draft, remote, build_policy("target"), config).solve(QUESTION)
        trace = Engine(draft, remote, verify_all, config).solve(QUESTION)
    finally:
        draft.close()
    assert trace.solution == expected.solution
    assert [s.role for s in trace.steps] == ["target"] * len(trace.steps)
    assert all(s.verification is not None for s in trace.steps)
