"""`arbitrage serve` with the real smollm2-135m as draft and target, driven by the official openai client.

One server process for the module (started through the CLI, on a free loopback port, with an API key);
small step and token limits keep each request to a few seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MODEL_CACHE, SESSION_PROBES

pytestmark = pytest.mark.slow

KEY = "integration-key"
QUESTION = "Tom has 3 apples and buys 2 more. How many apples does he have?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("serve_home")
    if SESSION_PROBES.is_file():
        (home / "llama_probes.json").write_text(SESSION_PROBES.read_text())
    env = {
        **os.environ,
        "ARBITRAGE_HOME": str(home),
        "ARBITRAGE_MODEL_CACHE": str(MODEL_CACHE),
        "ARBITRAGE_THREADS": "1",  # the test machines are small and shared
    }
    port = free_port()
    args = [
        sys.executable, "-m", "arbitrage.cli.main", "serve",
        "--draft", "smollm2-135m", "--target", "smollm2-135m",
        "--port", str(port), "--api-key", KEY, "--n-ctx", "1024",
        "--max-steps", "3", "--max-step-tokens", "24", "--max-tokens", "72",
        "--policy", "random", "--allow-policy", "target",
    ]  # fmt: skip
    log = home / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    output = log.read_text()
    assert "Traceback" not in output, output
    assert "Application shutdown complete" in output, output


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=300)


def extension(response: Any) -> dict[str, Any]:
    extra = response.model_extra or {}
    assert "arbitrage" in extra
    report: dict[str, Any] = extra["arbitrage"]
    return report


def test_models(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == ["arbitrage", "arbitrage/draft", "arbitrage/target"]
    assert client.models.retrieve("arbitrage/target").model_extra["root"] == "smollm2-135m"  # type: ignore[index]


def test_chat_completion(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="arbitrage",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
        max_tokens=72,
    )
    content = response.choices[0].message.content
    assert content and content.strip()
    report = extension(response)
    steps = report["steps"]
    assert content == "\n\n".join(step["text"] for step in steps)
    assert 1 <= len(steps) <= 3
    assert response.usage is not None
    assert response.usage.completion_tokens == sum(step["tokens"] for step in steps)
    assert response.usage.prompt_tokens > 20  # the chat template and instructions around the question
    assert report["usage"]["draft"]["calls"] == len(steps)  # random policy: the draft proposes every step
    assert report["steps_by_model"]["draft"] + report["steps_by_model"]["target"] == len(steps)
    assert response.choices[0].finish_reason in ("stop", "length")


def test_completion_with_per_request_policy(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="arbitrage",
        prompt=QUESTION,
        max_tokens=48,
        extra_body={"arbitrage": {"policy_params": {"p": 1.0}, "max_steps": 2}},
    )
    text = response.choices[0].text
    report = extension(response)
    assert text == "\n\n".join(step["text"] for step in report["steps"])
    assert report["policy"] == "random(p=1)"
    assert report["steps_by_model"]["draft"] == 0  # p = 1 escalates every step
    assert report["target_call_rate"] == 1.0


def test_streaming_chat(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="arbitrage",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    report = finals[0].model_extra["arbitrage"]  # type: ignore[index]
    assert text == "\n\n".join(step["text"] for step in report["steps"]) and text.strip()
    step_chunks = [c for c in chunks if c.model_extra and "step" in (c.model_extra.get("arbitrage") or {})]
    assert len(step_chunks) == report["num_steps"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == sum(step["tokens"] for step in report["steps"])


def test_streaming_completion_target_model(client: openai.OpenAI) -> None:
    stream = client.completions.create(model="arbitrage/target", prompt=QUESTION, stream=True, max_tokens=24)
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks)
    report = chunks[-1].model_extra["arbitrage"]  # type: ignore[index]
    assert text.strip() and report["usage"]["draft"]["calls"] == 0  # target-only decoding
    assert report["policy"] == "target"


def test_errors_reach_the_client_as_openai_exceptions(server: str, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(
            model="arbitrage", messages=[{"role": "user", "content": QUESTION}], temperature=5
        )
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4o", prompt=QUESTION)
    with pytest.raises(openai.BadRequestError, match="outside this server's range"):
        client.completions.create(
            model="arbitrage", prompt=QUESTION, extra_body={"arbitrage": {"policy_params": {"p": 3}}}
        )
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_raw_http_bad_input(server: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    cases = [
        (b'{"model": "arbitrage", "messages": [', "Malformed JSON"),
        (b'{"model": "arbitrage", "prompt": "q", "max_tokens": "many"}', "valid integer"),
        (
            b'{"model": "arbitrage", "prompt": "q", "max_tokens": 100000}',
            "exceeds this server's limit of 4096",
        ),
        (
            b'{"model": "arbitrage", "prompt": "q", "arbitrage": {"max_steps": 0}}',
            "greater than or equal to 1",
        ),
    ]
    for raw, needle in cases:
        response = httpx.post(f"{server}/v1/completions", content=raw, headers=headers, timeout=30)
        assert response.status_code == 400, response.text
        assert needle in response.json()["error"]["message"]
    assert httpx.get(f"{server}/metrics", timeout=30).status_code == 401
    metrics = httpx.get(f"{server}/metrics", headers=headers, timeout=30).text
    assert 'arbitrage_requests_total{code="400",endpoint="/v1/completions"}' in metrics
