"""Resolving requests into solve jobs: model ids, policies, generic policy parameters, limits."""

from __future__ import annotations

from typing import Any

import pytest

from arbitrage.policies import RandomOptions, RandomPolicy
from arbitrage.server.errors import APIError
from arbitrage.server.jobs import (
    PolicyCache,
    base_policy_options,
    build_job,
    check_policies,
    make_policy_options,
)
from arbitrage.server.schemas import ChatCompletionRequest, CompletionRequest
from arbitrage.server.settings import ServerSettings
from tests.unit.server_fakes import settings as make_settings


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "arbitrage", "messages": [{"role": "user", "content": "What is 2+2?"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def job_for(request: ChatCompletionRequest | CompletionRequest, settings: ServerSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or make_settings()
    return build_job(request, settings, base_policy_options(settings))


def rejected(
    request: ChatCompletionRequest | CompletionRequest, settings: ServerSettings | None = None
) -> APIError:
    with pytest.raises(APIError) as info:
        job_for(request, settings)
    return info.value


def test_defaults_come_from_the_settings() -> None:
    settings = make_settings(max_steps=7, max_tokens=300, max_step_tokens=50, seed=3, temperature=0.0)
    job = job_for(chat(), settings)
    assert job.kind == "chat" and job.question == "What is 2+2?"
    assert job.policy == "random"
    assert job.policy_options == RandomOptions(p=0.5, seed=3)
    assert job.config.max_steps == 7 and job.config.max_total_tokens == 300
    assert job.config.step.max_step_tokens == 50
    assert job.config.step.seed is None  # greedy: no sampling seed
    assert job.timeout == settings.request_timeout and not job.stream


def test_request_overrides_within_limits() -> None:
    job = job_for(
        chat(
            max_tokens=100,
            temperature=0.7,
            top_p=0.9,
            seed=11,
            stop=["END"],
            arbitrage={"policy_params": {"p": 0.2}, "max_steps": 5, "max_step_tokens": 400, "timeout": 9},
        )
    )
    assert job.policy_options == RandomOptions(p=0.2, seed=11)
    assert job.config.max_steps == 5 and job.config.max_total_tokens == 100
    assert job.config.step.max_step_tokens == 100  # never above the whole answer's budget
    assert (job.config.step.temperature, job.config.step.top_p, job.config.step.seed) == (0.7, 0.9, 11)
    assert job.stops == ("END",) and job.timeout == 9


def test_model_ids_pick_the_policy() -> None:
    assert job_for(chat(model="arbitrage/draft")).policy == "draft"
    assert job_for(chat(model="arbitrage/target")).policy == "target"
    error = rejected(chat(model="gpt-4o"))
    assert error.status == 404 and error.code == "model_not_found" and "arbitrage/draft" in error.message
    error = rejected(chat(model="arbitrage/draft", arbitrage={"policy": "random"}))
    assert error.status == 400 and "always uses the 'draft' policy" in error.message


def test_policy_choice_is_limited_to_the_allowed_ones() -> None:
    assert rejected(chat(arbitrage={"policy": "target"})).param == "arbitrage.policy"
    settings = make_settings(allowed_policies=["target"])
    assert job_for(chat(arbitrage={"policy": "target"}), settings).policy == "target"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"p": 1.5}, "outside this server's range [0, 1]"),
        ({"tau": 1.5}, "outside this server's range [-1, 1]"),
        ({"seed": 4}, "'seed' is fixed on this server"),  # a field, but not listed in param_limits
        ({"zzz": 1}, "'zzz' is not a parameter"),
    ],
)
def test_policy_params_outside_what_the_server_allows(params: dict[str, float], needle: str) -> None:
    error = rejected(chat(arbitrage={"policy_params": params}))
    assert error.status == 400 and needle in error.message, error.message
    assert "settable per request: p" in error.message or "range" in error.message


def test_a_listed_limit_that_no_policy_has_is_rejected() -> None:
    settings = make_settings(param_limits={"p": {"min": 0.0, "max": 1.0}, "gamma": {"min": 0, "max": 1}})
    error = rejected(chat(arbitrage={"policy_params": {"gamma": 0.5}}), settings)
    assert error.status == 400 and "'gamma' is not a parameter of this version's policies" in error.message


def test_server_limits_decide_what_is_settable() -> None:
    settings = make_settings(param_limits={"p": {"min": 0.1, "max": 0.3}, "seed": {"min": 0, "max": 9}})
    job = job_for(chat(arbitrage={"policy_params": {"p": 0.3, "seed": 9}}), settings)
    assert job.policy_options == RandomOptions(p=0.3, seed=9)
    assert "outside" in rejected(chat(arbitrage={"policy_params": {"p": 0.5}}), settings).message
    assert "valid integer" in rejected(chat(arbitrage={"policy_params": {"seed": 2.5}}), settings).message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 10_000}, "max_tokens"),
        ({"arbitrage": {"max_steps": 1000}}, "arbitrage.max_steps"),
        ({"arbitrage": {"max_step_tokens": 5000}}, "arbitrage.max_step_tokens"),
        ({"arbitrage": {"timeout": 10_000}}, "arbitrage.timeout"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"1": 2.0}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_out_of_limit_and_unsupported_fields(fields: dict[str, Any], param: str) -> None:
    error = rejected(chat(**fields))
    assert error.status == 400 and error.param == param, (error.param, error.message)


def test_honourable_defaults_of_unsupported_fields_are_accepted() -> None:
    job = job_for(chat(n=1, presence_penalty=0, logprobs=False, tool_choice="none", user="u", store=False))
    assert job.policy == "random"


def test_completion_requests() -> None:
    job = job_for(
        CompletionRequest.model_validate({"model": "arbitrage", "prompt": "2+2?", "max_tokens": 64})
    )
    assert job.kind == "completion" and job.question == "2+2?" and job.config.max_total_tokens == 64
    for extra in ({"echo": True}, {"suffix": "x"}, {"best_of": 2}, {"logprobs": 1}):
        body = {"model": "arbitrage", "prompt": "2+2?", **extra}
        assert rejected(CompletionRequest.model_validate(body)).param == next(iter(extra))


def test_make_policy_options_validates_names_and_types() -> None:
    assert make_policy_options("random", {"p": "0.3"}) == RandomOptions(p=0.3)  # config strings are coerced
    with pytest.raises(Exception, match="Unknown policy option 'router'"):
        make_policy_options("random", {"router": "model.pt"})
    with pytest.raises(Exception, match="Invalid policy option p='x'"):
        make_policy_options("random", {"p": "x"})
    base = RandomOptions(p=0.2, seed=5)
    assert make_policy_options("random", {"p": 0.4}, base) == RandomOptions(p=0.4, seed=5)


def test_check_policies_and_cache() -> None:
    check_policies(make_settings(allowed_policies=["draft", "target"]))
    with pytest.raises(Exception, match="Unknown policy 'oracle-x'"):
        check_policies(make_settings(allowed_policies=["oracle-x"]))
    cache = PolicyCache(size=2)
    first = cache.get("random", RandomOptions(p=0.1))
    assert isinstance(first, RandomPolicy)
    assert cache.get("random", RandomOptions(p=0.1)) is first  # built once
    cache.get("random", RandomOptions(p=0.2))
    cache.get("random", RandomOptions(p=0.3))  # evicts p=0.1
    assert cache.get("random", RandomOptions(p=0.1)) is not first
