"""Queueing, 429, timeouts and client disconnects on a real uvicorn server with gated scripted models.

Steps wait at a gate the test opens, so every interleaving here is forced, not timed.
"""

from __future__ import annotations

import contextlib
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from arbitrage.server.app import ServerState
from tests.unit.server_fakes import (
    DRAFT_STEPS,
    GatedGenerator,
    metric,
    running_server,
    scripted_pair,
    wait_until,
)

LONG = [f"step {i}" for i in range(200)]  # a solve that would run for a long time


def gated_pair(steps: list[str] | None = None) -> tuple[GatedGenerator, GatedGenerator]:
    draft, target = scripted_pair(steps, steps)
    return GatedGenerator(draft, gated=True), GatedGenerator(target, gated=True)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "arbitrage/draft", "messages": [{"role": "user", "content": "q?"}], **fields}


def state_of(server: Any) -> ServerState:
    state: ServerState = server.app.state.arbitrage
    return state


def test_beyond_the_queue_requests_get_429_with_retry_after() -> None:
    draft, target = gated_pair()
    with running_server(draft, target, max_concurrency=1, max_queue=1) as (server, client):
        runner = state_of(server).runner
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/v1/chat/completions", json=body())
            wait_until(lambda: draft.entered == 1, "first request solving")
            second = pool.submit(client.post, "/v1/chat/completions", json=body())
            wait_until(lambda: runner.waiting == 1, "second request queued")
            third = client.post("/v1/chat/completions", json=body())
            assert third.status_code == 429
            assert int(third.headers["retry-after"]) >= 1
            error = third.json()["error"]
            assert error["type"] == "rate_limit_error" and error["code"] == "server_busy"
            assert "1 requests running and 1 queued" in error["message"]
            health = client.get("/health").json()  # the server still answers while busy
            assert (health["running"], health["queued"]) == (1, 1)
            draft.open()
            assert first.result().status_code == 200 and second.result().status_code == 200
        text = client.get("/metrics").text
        assert metric(text, "arbitrage_rejected_total") == 1
        assert metric(text, "arbitrage_requests_total", code="429") == 1
        assert metric(text, "arbitrage_solves_total", outcome="completed") == 2


def test_timeout_while_solving_is_504_and_the_solve_stops_at_the_next_step() -> None:
    draft, target = gated_pair(LONG)
    with running_server(draft, target) as (server, client):
        response = client.post("/v1/chat/completions", json=body(arbitrage={"timeout": 0.3}))
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"
        draft.open()
        wait_until(lambda: state_of(server).runner.running == 0, "worker finished")
        assert len(draft.calls) == 1  # the step in progress finished; no other began
        text = client.get("/metrics").text
        assert metric(text, "arbitrage_solves_total", outcome="timeout") == 1


def test_timeout_in_the_queue_never_starts_the_solve() -> None:
    draft, target = gated_pair()
    with running_server(draft, target, max_concurrency=1, max_queue=4) as (_server, client):
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/v1/chat/completions", json=body())
            wait_until(lambda: draft.entered == 1, "first request solving")
            queued = client.post(
                "/v1/completions",
                json={"model": "arbitrage", "prompt": "other?", "arbitrage": {"timeout": 0.2}},
            )
            assert queued.status_code == 504
            draft.open()
            assert first.result().status_code == 200
        assert all(call.question == "q?" for call in draft.calls)  # "other?" never reached a model


def test_stream_disconnect_stops_the_solve_at_the_next_step_boundary() -> None:
    draft, target = gated_pair(LONG)
    with running_server(draft, target) as (server, client):
        runner = state_of(server).runner
        draft.release(1)  # let exactly one step through
        with client.stream("POST", "/v1/chat/completions", json=body(stream=True)) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and '"step"' in line:
                    break  # got the first step's chunk: hang up
        wait_until(lambda: draft.entered == 2, "second step started")
        wait_until(lambda: runner.stopping == 1, "server noticed the disconnect")
        draft.open()
        wait_until(lambda: runner.running == 0, "worker finished")
        assert len(draft.calls) == 2  # step 2 was under way and finished; step 3 never began
        text = client.get("/metrics").text
        assert metric(text, "arbitrage_solves_total", outcome="cancelled") == 1
        assert metric(text, "arbitrage_steps_total") == 2


def test_plain_request_disconnect_stops_the_solve() -> None:
    draft, target = gated_pair(LONG)
    with running_server(draft, target) as (server, client):
        runner = state_of(server).runner
        payload = json.dumps(body()).encode()
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            wait_until(lambda: draft.entered == 1, "solve started")
        wait_until(lambda: runner.stopping == 1, "server noticed the disconnect")
        draft.open()
        wait_until(lambda: runner.running == 0, "worker finished")
        assert len(draft.calls) == 1
        text = client.get("/metrics").text
        assert metric(text, "arbitrage_solves_total", outcome="cancelled") == 1
        assert metric(text, "arbitrage_requests_total", endpoint="/v1/chat/completions", code="499") == 1


def test_disconnect_while_queued_frees_the_place() -> None:
    draft, target = gated_pair()
    with running_server(draft, target, max_concurrency=1, max_queue=1) as (server, client):
        runner = state_of(server).runner
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/v1/chat/completions", json=body())
            wait_until(lambda: draft.entered == 1, "first request solving")
            impatient = httpx.Client(base_url=server.url, timeout=0.3)
            with impatient, contextlib.suppress(httpx.ReadTimeout):
                impatient.post("/v1/chat/completions", json=body())
            wait_until(lambda: runner.waiting == 0, "queued request gone")
            draft.open()
            assert first.result().status_code == 200
        assert len(draft.calls) == len(DRAFT_STEPS)  # only the first request's solve ran
        text = client.get("/metrics").text
        assert metric(text, "arbitrage_solves_total", outcome="cancelled") == 1
        assert metric(text, "arbitrage_solves_total", outcome="completed") == 1


def test_keep_alive_comments_while_a_step_runs() -> None:
    draft, target = gated_pair()
    with running_server(draft, target, sse_keepalive=0.05) as (_server, client):
        lines: list[str] = []
        with client.stream("POST", "/v1/chat/completions", json=body(stream=True)) as response:
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith(": keep-alive"):
                    draft.open()  # the step may now finish
        assert "data: [DONE]" in lines
        assert any(line.startswith(": keep-alive") for line in lines)


def test_openai_client_reads_streams_with_keep_alives() -> None:
    import openai

    draft, target = (GatedGenerator(g, seconds_per_token=0.01) for g in scripted_pair())
    with running_server(draft, target, sse_keepalive=0.005) as (server, _client):
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="arbitrage/draft", messages=[{"role": "user", "content": "q?"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "\n\n".join(DRAFT_STEPS)


def test_shutdown_during_a_stream_stops_the_solve() -> None:
    import threading

    from arbitrage.server import BackgroundServer, create_app
    from tests.unit.server_fakes import settings

    draft, target = (GatedGenerator(g, seconds_per_token=0.01) for g in scripted_pair(LONG, LONG))
    server = BackgroundServer(
        create_app(settings(), generators=(draft, target)), graceful_timeout=0.2
    ).start()
    seen: list[str] = []

    def read() -> None:
        client = httpx.Client(base_url=server.url, timeout=60)
        with (
            contextlib.suppress(httpx.HTTPError),
            client,
            client.stream("POST", "/v1/chat/completions", json=body(stream=True)) as response,
        ):
            seen.extend(response.iter_lines())

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: len(draft.calls) >= 3, "solve under way")
    server.stop()
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert len(draft.calls) < 100  # stopped long before its step limit
    assert state_of(server).runner.running == 0  # shutdown waited for the worker
    assert "data: [DONE]" not in seen
