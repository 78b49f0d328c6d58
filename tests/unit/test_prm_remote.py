"""The remote PRM against a real HTTP server on 127.0.0.1 serving a real scorer (the arithmetic verifier)
with vLLM's pooling protocol: rewards, model check, retries with backoff, timeouts, clear errors."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from arbitrage.errors import ScorerError
from arbitrage.prm.arithmetic import ArithmeticVerifier
from arbitrage.prm.remote import RemoteScorer, parse_rewards, render_qwen_prm
from arbitrage.prm.serve import create_pooling_app, split_prm_text

from ..prm_server import serve

QUESTION = "Tom has 3 apples and buys 5 more. How many?"
STEPS = ["He buys 5 more, so 3 + 5 = 8 apples.", "Then 8 * 2 = 17.", "He is happy."]
MODEL = "arbitrage/arith"


def make_app(fail_first: int = 0, delay_s: float = 0.0) -> tuple[Any, dict[str, int]]:
    """The real pooling app, with a middleware that can make the first requests fail or be slow."""
    app = create_pooling_app(ArithmeticVerifier(), MODEL)
    seen = {"pooling": 0, "models": 0}

    @app.middleware("http")
    async def flaky(request: Request, call_next: Any) -> Any:
        key = "pooling" if request.url.path == "/pooling" else "models"
        seen[key] += 1
        if key == "pooling" and seen[key] <= fail_first:
            return JSONResponse(status_code=503, content={"error": "warming up"})
        if delay_s:
            await asyncio.sleep(delay_s)
        return await call_next(request)

    return app, seen


def test_remote_scores_equal_the_served_scorer() -> None:
    app, seen = make_app()
    with serve(app) as url:
        scorer = RemoteScorer(url, MODEL)
        result = scorer.score(QUESTION, STEPS)
        direct = ArithmeticVerifier().score(QUESTION, STEPS, only_last=False)
        assert result.rewards == direct.rewards == (1.0, 0.0, 0.5)
        assert result.first == 0 and result.last == 0.5 and result.scorer == f"http({MODEL} @ {url[7:]})"
        scorer.score(QUESTION, STEPS[:1])
        assert seen == {"pooling": 2, "models": 1}  # the model list is checked once
        scorer.close()


def test_prm_text_round_trip() -> None:
    text = render_qwen_prm(QUESTION, STEPS)
    assert text.count("<extra_0>") == 3 and text.startswith("<|im_start|>system\nPlease reason step by step")
    assert split_prm_text(text) == (QUESTION, STEPS)


def test_messages_form_and_bad_inputs() -> None:
    app, _ = make_app()
    with serve(app) as url:
        messages = [{"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": "<extra_0>".join(STEPS) + "<extra_0>"}]  # fmt: skip
        body = httpx.post(f"{url}/pooling", json={"model": MODEL, "messages": messages}).json()
        assert [pair[1] for pair in body["data"][0]["data"]] == [1.0, 0.0, 0.5]
        assert body["object"] == "list" and body["data"][0]["object"] == "pooling"
        bad = httpx.post(f"{url}/pooling", json={"model": MODEL, "input": "plain text"})
        assert bad.status_code == 400 and "Not a process-reward input" in bad.json()["error"]["message"]
        other = httpx.post(
            f"{url}/pooling", json={"model": "other", "input": render_qwen_prm(QUESTION, STEPS)}
        )
        assert other.status_code == 404


def test_unknown_model_is_reported_with_what_is_served() -> None:
    app, _ = make_app()
    with (
        serve(app) as url,
        pytest.raises(ScorerError, match=r"does not serve 'other' \(it serves: arbitrage/arith\)"),
    ):
        RemoteScorer(url, "other").score(QUESTION, STEPS)


def test_transient_failures_are_retried_with_backoff() -> None:
    app, seen = make_app(fail_first=2)
    with serve(app) as url:
        result = RemoteScorer(url, MODEL, retries=3, backoff_s=0.01).score(QUESTION, STEPS)
        assert result.rewards == (1.0, 0.0, 0.5)
        assert seen["pooling"] == 3


def test_retries_exhausted_is_a_clear_error() -> None:
    app, seen = make_app(fail_first=10)
    with serve(app) as url, pytest.raises(ScorerError, match=r"failed after 2 attempts: HTTP 503"):
        RemoteScorer(url, MODEL, retries=1, backoff_s=0.01).score(QUESTION, STEPS)
    assert seen["pooling"] == 2


def test_timeout_is_retried_then_reported() -> None:
    app, _ = make_app(delay_s=1.0)
    with serve(app) as url, pytest.raises(ScorerError, match="failed after 2 attempts: timed out"):
        RemoteScorer(url, MODEL, timeout_s=0.2, retries=1, backoff_s=0.0).score(QUESTION, STEPS)


def test_unreachable_server() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(ScorerError, match="ConnectError"):
        RemoteScorer(f"http://127.0.0.1:{port}", MODEL, retries=1, backoff_s=0.0).score(QUESTION, STEPS)


def test_parse_rewards_shapes() -> None:
    ok = {"data": [{"index": 0, "object": "pooling", "data": [[0.2, 0.8], [0.9, 0.1]]}]}
    assert parse_rewards(ok, 2, "u") == [0.8, 0.1]
    assert parse_rewards({"data": [{"data": [0.3, [0.6]]}]}, 2, "u") == [0.3, 0.6]
    with pytest.raises(ScorerError, match="returned 2 outputs for 3 steps"):
        parse_rewards(ok, 3, "u")
    with pytest.raises(ScorerError, match="not a probability"):
        parse_rewards({"data": [{"data": [[2.5]]}]}, 1, "u")
    with pytest.raises(ScorerError, match="pooling format"):
        parse_rewards({"error": "x"}, 1, "u")
