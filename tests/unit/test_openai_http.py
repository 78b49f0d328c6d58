"""The OpenAI-compatible backend against a real local HTTP server with scripted answers and failures."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepParams
from arbitrage.backends.http_retry import RetryPolicy
from arbitrage.backends.loader import load_generator, split_spec
from arbitrage.backends.openai_http import OpenAIGenerator, OpenAISpec
from arbitrage.errors import BackendError, ConfigError
from tests.fake_openai import FakeOpenAIServer

FAST = "retries=3&backoff=0.01&max_backoff=0.05"
CONTEXT = StepContext("What is 2 + 3?")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ARBITRAGE_OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as srv:
        yield srv


def generator(server: FakeOpenAIServer, options: str = "", model: str = "tiny") -> OpenAIGenerator:
    spec = f"openai:{server.base_url}#{model}?{FAST}" + (f"&{options}" if options else "")
    gen = load_generator(spec)
    assert isinstance(gen, OpenAIGenerator)
    return gen


def step(server: FakeOpenAIServer, options: str = "", **params: object) -> tuple[object, OpenAIGenerator]:
    gen = generator(server, options)
    server.seen.completions.clear()
    return gen.generate_step(CONTEXT, StepParams(**params)), gen  # type: ignore[arg-type]


# -- spec parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rest", "url", "model"),
    [
        ("http://127.0.0.1:8080/v1#smollm2", "http://127.0.0.1:8080/v1", "smollm2"),
        ("http://127.0.0.1:8080/v1/#Qwen/Qwen2.5-1.5B", "http://127.0.0.1:8080/v1", "Qwen/Qwen2.5-1.5B"),
        ("https://api.example.com/v1", "https://api.example.com/v1", None),
        ("http://h:1/v1?api-version=2#m:latest?timeout=5", "http://h:1/v1?api-version=2", "m:latest"),
        ("http://h:1/v1#?timeout=5", "http://h:1/v1", None),
    ],
)  # fmt: skip
def test_spec_parses_url_and_model(rest: str, url: str, model: str | None) -> None:
    spec = OpenAISpec.parse(rest)
    assert (spec.base_url, spec.model) == (url, model)


def test_spec_options() -> None:
    spec = OpenAISpec.parse(
        "http://h/v1#m?template=gemma&timeout=30&connect_timeout=2&retries=5&backoff=0.1&max_backoff=1"
        "&logprobs=off&api_key_env=MY_KEY&check=false&name=target"
    )
    assert spec.template == "gemma" and spec.timeout == 30 and spec.connect_timeout == 2
    assert spec.retry == RetryPolicy(retries=5, backoff=0.1, max_backoff=1.0)
    assert (spec.logprobs, spec.api_key_env, spec.check, spec.name) == ("off", "MY_KEY", False, "target")


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("127.0.0.1:8080/v1#m", "needs an http(s) base URL"),
        ("#m", "needs an http(s) base URL"),
        ("http://h/v1#", "empty model name"),
        ("http://h/v1#m?bogus=1", "Unknown option(s) bogus"),
        ("http://h/v1#m?timeout=soon", "is not a number"),
        ("http://h/v1#m?retries=-1", "must be >= 0"),
        ("http://h/v1#m?logprobs=maybe", "must be one of: auto, on, off"),
        ("http://h/v1#m?check=perhaps", "must be true or false"),
        ("http://h/v1#m?timeout", "Malformed option"),
    ],
)
def test_bad_specs_are_config_errors(rest: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OpenAISpec.parse(rest)


def test_scheme_is_registered() -> None:
    assert split_spec("openai:http://127.0.0.1:8080/v1#smollm2") == (
        "openai",
        "http://127.0.0.1:8080/v1#smollm2",
    )


def test_unknown_template_is_a_config_error(server: FakeOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="Unknown chat template 'nope'"):
        generator(server, "template=nope")


# -- how steps end ----------------------------------------------------------------------------------


def test_step_ends_at_the_separator_without_a_server_stop_string(server: FakeOpenAIServer) -> None:
    out, _ = step(server, max_step_tokens=50)
    assert out.finish_reason == FinishReason.STEP
    assert out.text == "Add 2."
    assert out.tokens == 4 and out.token_logprobs == (-0.25,) * 4  # the separator token counts
    request = server.seen.completions[0]
    assert "stop" not in request and request["stream"] is True and request["max_tokens"] == 50
    assert request["logprobs"] == 1
    assert request["prompt"].endswith("<|im_start|>assistant\n")
    assert "<|im_start|>system\nPlease reason step by step" in request["prompt"]


def test_eos_is_a_natural_stop_without_the_separator(server: FakeOpenAIServer) -> None:
    server.script.tokens = ["The", " answer", " is", " \\boxed{5}."]
    out, _ = step(server)
    assert out.finish_reason == FinishReason.EOS
    assert out.text == "The answer is \\boxed{5}."
    assert out.tokens == 4


def test_eos_token_is_counted_when_the_server_sends_no_usage(server: FakeOpenAIServer) -> None:
    server.script.tokens = ["Done", "."]
    server.script.usage_at_end = False
    out, _ = step(server, "logprobs=off")
    assert (out.finish_reason, out.tokens, out.prompt_tokens) == (FinishReason.EOS, 3, 0)


def test_token_cap_is_length(server: FakeOpenAIServer) -> None:
    out, _ = step(server, max_step_tokens=2)
    assert out.finish_reason == FinishReason.LENGTH
    assert out.text == "Add 2" and out.tokens == 2


def test_leading_blank_line_does_not_end_the_step(server: FakeOpenAIServer) -> None:
    server.script.tokens = ["\n\n", "Step", " one", ".", "\n\n", "Step two"]
    out, _ = step(server)
    assert (out.finish_reason, out.text, out.tokens) == (FinishReason.STEP, "Step one.", 5)


def test_separator_straddling_tokens(server: FakeOpenAIServer) -> None:
    server.script.tokens = ["Add 2.\n", "\nThen", " more"]
    out, _ = step(server)
    assert (out.finish_reason, out.text, out.tokens) == (FinishReason.STEP, "Add 2.", 2)


def test_custom_separator(server: FakeOpenAIServer) -> None:
    out, _ = step(server, separator=".")
    assert (out.finish_reason, out.text, out.tokens) == (FinishReason.STEP, "Add 2", 3)


def test_stream_is_closed_at_the_separator(server: FakeOpenAIServer) -> None:
    server.script.tokens = ["Step one.", "\n\n", *["x"] * 200]
    server.script.delay = 0.005
    out, gen = step(server)
    assert out.text == "Step one."
    gen.close()
    deadline = time.monotonic() + 30
    while not server.seen.chunks_sent and time.monotonic() < deadline:
        time.sleep(0.01)  # the handler thread notices the closed socket on its next write
    assert server.seen.disconnects == 1
    assert server.seen.chunks_sent[-1] < 202


def test_solution_so_far_follows_the_prompt(server: FakeOpenAIServer) -> None:
    gen = generator(server)
    server.seen.completions.clear()
    gen.generate_step(StepContext("Q?", ("First step.", "Second step.")), StepParams())
    assert server.seen.completions[0]["prompt"].endswith(
        "<|im_start|>assistant\nFirst step.\n\nSecond step.\n\n"
    )


def test_sampling_parameters_are_sent(server: FakeOpenAIServer) -> None:
    step(server, temperature=0.7, top_p=0.9, seed=11)
    request = server.seen.completions[0]
    assert (request["temperature"], request["top_p"], request["seed"]) == (0.7, 0.9, 11)


# -- usage and logprobs -----------------------------------------------------------------------------


def test_usage_in_every_chunk_gives_prompt_and_cached_tokens(server: FakeOpenAIServer) -> None:
    server.script.usage_every_chunk = True
    server.script.cached_tokens = 30
    out, _ = step(server)
    assert (out.prompt_tokens, out.prefill_tokens) == (40, 10)
    assert out.extra["cached_tokens"] == 30


def test_usage_unknown_when_the_stream_is_closed_early(server: FakeOpenAIServer) -> None:
    out, _ = step(server)
    assert (out.prompt_tokens, out.prefill_tokens) == (0, 0)


def test_usage_at_the_end_of_a_natural_stop(server: FakeOpenAIServer) -> None:
    server.script.tokens = ["Done", "."]
    out, _ = step(server)
    assert out.finish_reason == FinishReason.EOS and out.prompt_tokens == 40


def test_server_without_logprobs_is_detected_once(server: FakeOpenAIServer) -> None:
    server.script.reject_logprobs = True
    out, _ = step(server)
    assert out.finish_reason == FinishReason.STEP and out.token_logprobs == ()
    assert out.tokens == 4  # counted from the streamed chunks
    assert "logprobs" not in server.seen.completions[-1]


def test_logprobs_on_fails_clearly_when_refused(server: FakeOpenAIServer) -> None:
    server.script.reject_logprobs = True
    gen = generator(server, "logprobs=on")
    with pytest.raises(BackendError, match="HTTP 400: logprobs is not supported"):
        gen.generate_step(CONTEXT, StepParams())


def test_logprobs_off_is_not_requested(server: FakeOpenAIServer) -> None:
    out, _ = step(server, "logprobs=off")
    assert "logprobs" not in server.seen.completions[0] and out.token_logprobs == ()


def test_rejected_stream_options_are_dropped(server: FakeOpenAIServer) -> None:
    server.script.reject_stream_options = True
    out, _ = step(server)
    assert out.text == "Add 2."
    assert "stream_options" not in server.seen.completions[-1]


# -- retries and errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("statuses", [[503], [429, 500], [502, 504, 408]])
def test_retries_transient_failures(server: FakeOpenAIServer, statuses: list[int]) -> None:
    gen = generator(server)
    server.seen.completions.clear()
    server.script.fail_statuses = list(statuses)
    out = gen.generate_step(CONTEXT, StepParams())
    assert out.text == "Add 2." and out.extra["attempts"] == len(statuses) + 1
    assert len(server.seen.completions) == len(statuses) + 1


def test_gives_up_after_the_last_retry_naming_the_server(server: FakeOpenAIServer) -> None:
    gen = generator(server)
    server.seen.completions.clear()
    server.script.fail_statuses = [503] * 10
    with pytest.raises(BackendError) as info:
        gen.generate_step(CONTEXT, StepParams())
    message = str(info.value)
    assert server.base_url in message and "after 4 attempts" in message and "HTTP 503" in message
    assert len(server.seen.completions) == 4


def test_bad_request_is_not_retried(server: FakeOpenAIServer) -> None:
    gen = generator(server)
    server.seen.completions.clear()
    server.script.fail_statuses = [400]
    with pytest.raises(BackendError, match="HTTP 400"):
        gen.generate_step(CONTEXT, StepParams())
    assert len(server.seen.completions) == 1


def test_stream_broken_midway_is_retried(server: FakeOpenAIServer) -> None:
    gen = generator(server)
    server.seen.completions.clear()
    server.script.drop_after = 1
    out = gen.generate_step(CONTEXT, StepParams())
    assert out.text == "Add 2." and out.extra["attempts"] == 2


def test_read_timeout_is_reported(server: FakeOpenAIServer) -> None:
    gen = load_generator(f"openai:{server.base_url}#tiny?timeout=0.2&retries=1&backoff=0.01")
    server.script.delay = 1.0
    with pytest.raises(BackendError, match="timed out"):
        gen.generate_step(CONTEXT, StepParams())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError) as info:
        load_generator(f"openai:{url}#m?retries=1&backoff=0.01")
    message = str(info.value)
    assert url in message and "connection refused" in message and "is the server running" in message


def test_wrong_model_name_lists_the_served_ones(server: FakeOpenAIServer) -> None:
    server.script.models = ["qwen-1.5b", "qwen-0.5b"]
    with pytest.raises(
        BackendError, match=r"does not serve model 'qwen-7b'; it serves: qwen-1.5b, qwen-0.5b"
    ):
        generator(server, model="qwen-7b")


def test_wrong_model_without_a_models_endpoint_fails_at_the_test_completion(
    server: FakeOpenAIServer,
) -> None:
    server.script.list_models = False
    with pytest.raises(BackendError, match=r"does not exist.*check the model name 'qwen-7b'"):
        generator(server, model="qwen-7b")


def test_the_only_served_model_is_the_default(server: FakeOpenAIServer) -> None:
    gen = load_generator(f"openai:{server.base_url}")
    assert gen.name == "tiny"


def test_several_served_models_need_a_choice(server: FakeOpenAIServer) -> None:
    server.script.models = ["a", "b"]
    with pytest.raises(ConfigError, match="serves 2 models"):
        load_generator(f"openai:{server.base_url}")


def test_api_key_from_the_environment(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script.api_key = "sekret"
    with pytest.raises(BackendError, match=r"HTTP 401.*ARBITRAGE_OPENAI_API_KEY"):
        generator(server)
    monkeypatch.setenv("OPENAI_API_KEY", "sekret")
    generator(server)
    monkeypatch.setenv("ARBITRAGE_OPENAI_API_KEY", "other")
    with pytest.raises(BackendError, match="HTTP 401"):
        generator(server)  # ARBITRAGE_OPENAI_API_KEY wins over OPENAI_API_KEY
    monkeypatch.setenv("DRAFT_KEY", "sekret")
    generator(server, "api_key_env=DRAFT_KEY")
    assert server.seen.headers[-1]["authorization"] == "Bearer sekret"


def test_missing_api_key_variable_is_a_config_error(server: FakeOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="NO_SUCH_KEY"):
        generator(server, "api_key_env=NO_SUCH_KEY")


def test_closed_generator_refuses(server: FakeOpenAIServer) -> None:
    gen = generator(server)
    gen.close()
    with pytest.raises(BackendError, match="closed"):
        gen.generate_step(CONTEXT, StepParams())


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(retries=3, backoff=1.0, max_backoff=3.0)
    assert 0.5 <= policy.delay(0) <= 1.0
    assert 1.0 <= policy.delay(1) <= 2.0
    assert 1.5 <= policy.delay(5) <= 3.0  # capped
    assert policy.delay(0, retry_after=2.0) == 2.0  # the server's Retry-After
    assert policy.delay(0, retry_after=60.0) == 3.0  # ... within the cap


def test_engine_specific_fields_pass_through(server: FakeOpenAIServer) -> None:
    step(server, "x_repetition_penalty=1.05&x_top_k=0&x_note=plain")
    request = server.seen.completions[0]
    assert (request["repetition_penalty"], request["top_k"], request["note"]) == (1.05, 0, "plain")


def test_nothing_engine_specific_is_sent_by_default(server: FakeOpenAIServer) -> None:
    step(server)
    request = server.seen.completions[0]
    standard = {"model", "prompt", "max_tokens", "temperature", "stream", "logprobs", "stream_options"}
    assert set(request) <= standard
