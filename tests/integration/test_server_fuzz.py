"""The HTTP API under hostile input: a bounded property-based fuzz of a live `arbitrage serve`.

The server runs as a real process on a free loopback port with smollm2-135m as draft and target and
small step and token limits; hypothesis generates valid requests, mutated ones, raw bodies, wrong API
keys, other routes and abandoned streams (see benchmarks/server_fuzz.py, which is the same fuzz, longer).
Every answer must be a well-formed OpenAI body or a 4xx with an OpenAI error body, never a 5xx or a hang,
and afterwards the server must be up, idle, and answer a normal request.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from benchmarks.server_fuzz import run_fuzz, serve

pytestmark = pytest.mark.slow

CASES = 300  # at most this many requests
SECONDS = 150.0  # and no case starts after this


@pytest.mark.timeout(900)  # a guard against a hang; the fuzz itself is bounded far below this
def test_every_answer_to_hostile_input_is_openai_shaped_or_a_4xx(tmp_path: Path) -> None:
    env = {**os.environ, "ARBITRAGE_THREADS": "1"}  # the test machines are small and shared
    with serve(tmp_path / "serve", env=env) as server:
        report = run_fuzz(server, max_cases=CASES, seconds=SECONDS, derandomize=True)
    print(report.summary())
    assert report.ok, report.summary()
    assert report.cases > 0
    families = set(report.by_family)
    assert families == {"valid", "mutated", "raw", "auth", "other", "abandoned"}, families
    assert report.by_family["valid"].get("200", 0) > 0  # real solves ran, not only refusals
    assert server.process.returncode == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log, log[-3000:]
