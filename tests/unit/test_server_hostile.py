"""Regressions from the server fuzz (benchmarks/server_fuzz.py): hostile input gets a 4xx, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from arbitrage.backends.base import StepParams
from arbitrage.backends.stepping import choose_token
from arbitrage.server import create_app
from arbitrage.server.jobs import base_policy_options, build_job
from arbitrage.server.schemas import CompletionRequest
from tests.unit.server_fakes import scripted_pair, settings

HEADERS = {"content-type": "application/json"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(settings(max_request_bytes=200_000), generators=scripted_pair())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("prefix", ["", '{"a":', '{"model": "arbitrage", "prompt": "q", "stop": '])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_json_nested_deeper_than_the_recursion_limit_is_a_400(
    client: TestClient, prefix: str, opener: str
) -> None:
    body = (prefix + opener * 30_000).encode()  # json.loads raised RecursionError: a 500, or no answer
    response = client.post("/v1/completions", content=body, headers=HEADERS)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]


def test_an_integer_literal_beyond_pythons_digit_limit_is_a_400(client: TestClient) -> None:
    body = b'{"model": "arbitrage", "prompt": "q", "seed": ' + b"9" * 5000 + b"}"  # a plain ValueError
    response = client.post("/v1/completions", content=body, headers=HEADERS)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and "Malformed JSON" in error["message"]
    plain = b'{"model": "arbitrage", "prompt": "q"}'  # the same server still answers
    assert client.post("/v1/completions", content=plain, headers=HEADERS).status_code == 200


@pytest.mark.parametrize("seed", [-373, -(2**63), 2**63 - 1, 2**64 + 5, 0, 7])
def test_any_integer_seed_reaches_the_sampler_as_a_seed_it_takes(seed: int) -> None:
    """A negative seed made llama.cpp/HF sampling raise ``ValueError: expected non-negative integer``."""
    server = settings()
    request = CompletionRequest(model="arbitrage", prompt="q", seed=seed, temperature=0.7)
    step_seed = build_job(request, server, base_policy_options(server)).config.step.seed
    assert step_seed is not None and 0 <= step_seed < 2**64
    if 0 <= seed < 2**64:
        assert step_seed == seed  # seeds the samplers always took are passed unchanged
    np.random.default_rng([step_seed, 12])  # what the local backends seed a step with
    greedy = CompletionRequest(model="arbitrage", prompt="q", seed=seed, temperature=0)
    assert build_job(greedy, server, base_policy_options(server)).config.step.seed is None


@pytest.mark.parametrize("temperature", [5e-324, 1e-310, 1e-300, 1e-5])
@pytest.mark.parametrize("top_p", [1.0, 0.9, 1e-300])
def test_a_tiny_temperature_samples_the_best_token(temperature: float, top_p: float) -> None:
    """A subnormal temperature (valid in the API's [0, 2]) made every probability NaN: a 500."""
    logprobs = np.log(np.array([0.2, 0.5, 0.3]))
    params = StepParams(temperature=temperature, top_p=top_p)
    picks = {choose_token(logprobs, params, np.random.default_rng(seed)) for seed in range(20)}
    assert picks == {1}


def test_sampling_at_ordinary_temperatures_still_follows_the_distribution() -> None:
    logprobs = np.log(np.array([0.2, 0.5, 0.3]))
    rng = np.random.default_rng(0)
    picks = [choose_token(logprobs, StepParams(temperature=1.0), rng) for _ in range(3000)]
    shares = np.bincount(picks, minlength=3) / len(picks)
    assert np.allclose(shares, [0.2, 0.5, 0.3], atol=0.04)
