"""A small load test: 50 concurrent requests against 2 solve slots and a queue of 4 (scripted models with
a simulated per-token delay). Every request must get a full, correct answer or a clean 429, the server
must stay up, and /metrics must add up. (benchmarks/server_load.py is the real-model version.)
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from arbitrage.engine import Engine
from arbitrage.policies import RandomPolicy
from tests.unit.server_fakes import GatedGenerator, metric, running_server, scripted_pair

REQUESTS = 50


def expected(question: str) -> tuple[str, int]:
    """The answer and step count a direct solve gives (same scripts, policy and seed as the server)."""
    draft, target = scripted_pair()
    trace = Engine(draft, target, RandomPolicy(0.5, seed=0)).solve(question)
    return trace.solution, len(trace.steps)


def send(client: httpx.Client, i: int) -> dict[str, Any]:
    question = f"Question number {i}?"
    kind = ("chat", "stream", "completion")[i % 3]
    if kind == "completion":
        response = client.post("/v1/completions", json={"model": "arbitrage", "prompt": question})
        body = response.json()
        if response.status_code == 200:
            return {
                "i": i,
                "status": 200,
                "text": body["choices"][0]["text"],
                "steps": body["arbitrage"]["num_steps"],
            }
    else:
        payload = {"model": "arbitrage", "messages": [{"role": "user", "content": question}]}
        if kind == "chat":
            response = client.post("/v1/chat/completions", json=payload)
            body = response.json()
            if response.status_code == 200:
                text = body["choices"][0]["message"]["content"]
                return {"i": i, "status": 200, "text": text, "steps": body["arbitrage"]["num_steps"]}
        else:
            with client.stream("POST", "/v1/chat/completions", json={**payload, "stream": True}) as response:
                if response.status_code == 200:
                    events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
                    assert events[-1] == "[DONE]"
                    chunks = [json.loads(e) for e in events[:-1]]
                    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
                    return {
                        "i": i,
                        "status": 200,
                        "text": text,
                        "steps": chunks[-1]["arbitrage"]["num_steps"],
                    }
                response.read()
                body = response.json()
    return {
        "i": i,
        "status": response.status_code,
        "body": body,
        "retry_after": response.headers.get("retry-after"),
    }


def test_fifty_concurrent_requests_get_an_answer_or_a_clean_429() -> None:
    draft, target = (GatedGenerator(g, seconds_per_token=0.002) for g in scripted_pair())
    with running_server(draft, target, max_concurrency=2, max_queue=4) as (_server, client):
        with ThreadPoolExecutor(REQUESTS) as pool:
            results = list(pool.map(lambda i: send(client, i), range(REQUESTS)))
        ok = [r for r in results if r["status"] == 200]
        busy = [r for r in results if r["status"] == 429]
        assert len(ok) + len(busy) == REQUESTS, [r for r in results if r["status"] not in (200, 429)]
        assert len(ok) >= 6  # the first 2 + 4 arrivals always fit
        for r in ok:
            assert (r["text"], r["steps"]) == expected(f"Question number {r['i']}?")
        for r in busy:
            assert r["body"]["error"]["type"] == "rate_limit_error" and int(r["retry_after"]) >= 1
        health = client.get("/health").json()
        assert health["status"] == "ok" and (health["running"], health["queued"]) == (0, 0)
        text = client.get("/metrics").text
        answered = sum(
            metric(text, "arbitrage_requests_total", endpoint=e, code="200")
            for e in ("/v1/chat/completions", "/v1/completions")
        )
        assert answered == len(ok)
        assert metric(text, "arbitrage_requests_total", code="429") == len(busy)
        assert metric(text, "arbitrage_rejected_total") == len(busy)
        assert metric(text, "arbitrage_solves_total", outcome="completed") == len(ok)
        assert metric(text, "arbitrage_solves_total") == len(ok)  # nothing cancelled, timed out or failed
        assert metric(text, "arbitrage_steps_total") == sum(r["steps"] for r in ok)
        assert metric(text, "arbitrage_queue_wait_seconds_count") == len(ok)
