"""The HTTP API under hostile input: a bounded property-based test of a live `arbitrage serve`.

The server runs as a real process on a free loopback port with smollm2-135m as draft and target and
small step and token limits; hypothesis generates valid requests, mutated ones, raw bodies, wrong API
keys, other routes and abandoned streams (the cases of ``benchmarks/server_fuzz_cases.py``, which
``benchmarks/server_fuzz.py`` runs longer). Every answer must be a well-formed OpenAI body or a 4xx with
an OpenAI error body, never a 5xx or a hang: the first that is not fails the test, shrunk by hypothesis
to a smallest such request. Afterwards the server must be up, idle, and answer a normal request.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
from benchmarks.server_fuzz_cases import CLIENT_TIMEOUT, Case, cases, liveness_problems, send, serve
from hypothesis import HealthCheck, Phase, given, settings

pytestmark = pytest.mark.slow

CASES = 300  # at most this many requests
SECONDS = 150.0  # and no case starts after this


@pytest.mark.timeout(900)  # a guard against a hang; the fuzz itself is bounded far below this
def test_every_answer_to_hostile_input_is_openai_shaped_or_a_4xx(tmp_path: Path) -> None:
    env = {**os.environ, "ARBITRAGE_THREADS": "1"}  # the test machines are small and shared
    by_family: defaultdict[str, Counter[str]] = defaultdict(Counter)  # family -> status -> cases
    timeout = httpx.Timeout(CLIENT_TIMEOUT, connect=10.0)
    with (
        serve(tmp_path / "serve", env=env) as server,
        httpx.Client(base_url=server.url, timeout=timeout) as client,
    ):
        end = time.monotonic() + SECONDS

        @settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=cases())
        def every_answer_is_openai_shaped_or_a_4xx(case: Case) -> None:
            if time.monotonic() > end:
                return
            result = send(client, case)
            by_family[case.family][str(result.status)] += 1
            assert not result.problems, f"{result.problems}\n{case.describe()}\nanswer: {result.excerpt}"

        every_answer_is_openai_shaped_or_a_4xx()
        liveness = liveness_problems(server, client)
    print({family: dict(counts) for family, counts in sorted(by_family.items())})
    assert not liveness, liveness
    assert sum(sum(counts.values()) for counts in by_family.values()) > 0
    assert set(by_family) == {"valid", "mutated", "raw", "auth", "other", "abandoned"}, set(by_family)
    assert by_family["valid"].get("200", 0) > 0  # real solves ran, not only refusals
    assert server.process.returncode == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log, log[-3000:]
