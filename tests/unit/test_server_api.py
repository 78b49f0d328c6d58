"""The HTTP API on scripted generators, through FastAPI's TestClient: shapes, content, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import BackendError
from arbitrage.policies import RandomPolicy
from arbitrage.server import create_app
from arbitrage.server.schemas import ChatCompletion, ChatCompletionChunk, Completion, ModelList
from tests.unit.server_fakes import DRAFT_STEPS, TARGET_STEPS, metric, scripted_pair, settings

QUESTION = "What is 2+2?"
BAD_REQUESTS = json.loads((Path(__file__).parents[1] / "data" / "server_bad_requests.json").read_text())


@pytest.fixture
def pair() -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return scripted_pair()


@pytest.fixture
def client(pair: tuple[ScriptedGenerator, ScriptedGenerator]) -> Iterator[TestClient]:
    with TestClient(create_app(settings(), generators=pair)) as test_client:
        yield test_client


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "arbitrage", "messages": [{"role": "user", "content": QUESTION}], **fields}


def expected_trace(p: float = 0.5, seed: int = 0, **config: Any):  # type: ignore[no-untyped-def]
    draft, target = scripted_pair()
    return Engine(draft, target, RandomPolicy(p, seed=seed), EngineConfig(**config)).solve(QUESTION)


def sse_events(lines: Iterator[str]) -> list[Any]:
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return [event if event == "[DONE]" else json.loads(event) for event in events]


def test_chat_completion_matches_the_engine_and_reports_the_routing(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text
    body = ChatCompletion.model_validate(response.json())
    trace = expected_trace()
    assert body.choices[0].message.content == trace.solution
    assert body.choices[0].finish_reason == "stop"
    assert body.model == "arbitrage" and body.id.startswith("chatcmpl-")
    # usage: the prompt as the draft read it; the returned steps' tokens
    assert body.usage.prompt_tokens == trace.steps[0].draft.prompt_tokens  # type: ignore[union-attr]
    assert body.usage.completion_tokens == sum(s.tokens for s in trace.steps)
    assert body.usage.total_tokens == body.usage.prompt_tokens + body.usage.completion_tokens
    report = body.arbitrage
    assert report["policy"] == "random(p=0.5)"
    assert report["models"] == {"draft": "draft-m", "target": "target-m"}
    assert report["num_steps"] == len(trace.steps)
    assert report["steps_by_model"]["draft"] + report["steps_by_model"]["target"] == len(trace.steps)
    assert report["steps_by_model"]["target"] >= 1  # this seed escalates some steps (check the check)
    assert report["target_call_rate"] == trace.target_call_rate
    assert [s["role"] for s in report["steps"]] == [s.role for s in trace.steps]
    assert [s["text"] for s in report["steps"]] == [s.text for s in trace.steps]
    for step in report["steps"]:
        assert step["escalated"] == (step["role"] == "target")
        assert step["decision"]["threshold"] == 0.5 and step["decision"]["reason"]
        assert step["seconds"]["draft"] > 0 and (step["seconds"]["target"] is not None) == step["escalated"]
    assert report["usage"]["draft"]["calls"] == len(trace.steps)


def test_text_completion(client: TestClient) -> None:
    response = client.post("/v1/completions", json={"model": "arbitrage", "prompt": QUESTION})
    body = Completion.model_validate(response.json())
    assert body.object == "text_completion" and body.id.startswith("cmpl-")
    assert body.choices[0].text == expected_trace().solution
    assert body.usage is not None and body.usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("fields", "steps"),
    [
        ({"model": "arbitrage/draft"}, DRAFT_STEPS),
        ({"model": "arbitrage/target"}, TARGET_STEPS),
        ({"arbitrage": {"policy_params": {"p": 0.0}}}, DRAFT_STEPS),
        ({"arbitrage": {"policy_params": {"p": 1.0}}}, TARGET_STEPS),
    ],
)
def test_always_and_never_escalate_give_target_and_draft_decoding(
    client: TestClient,
    pair: tuple[ScriptedGenerator, ScriptedGenerator],
    fields: dict[str, Any],
    steps: list[str],
) -> None:
    body = client.post("/v1/chat/completions", json=chat_body(**fields)).json()
    assert body["choices"][0]["message"]["content"] == "\n\n".join(steps)
    draft, target = pair
    if fields.get("model") == "arbitrage/target":
        assert draft.calls == []  # target-only decoding never asks the draft
    if steps is DRAFT_STEPS:
        assert target.calls == []


def test_streaming_chat_sends_a_chunk_per_step_then_done(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(e) for e in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    trace = expected_trace()
    step_chunks = [c for c in chunks if c.arbitrage and "step" in c.arbitrage]
    assert [c.arbitrage["step"]["role"] for c in step_chunks] == [s.role for s in trace.steps]  # type: ignore[index]
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == trace.solution
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.choices[0].delta.content is None
    assert last.arbitrage is not None and last.arbitrage["num_steps"] == len(trace.steps)
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)  # no include_usage: no usage field


def test_streaming_completion_with_usage_chunk(client: TestClient) -> None:
    body = {
        "model": "arbitrage",
        "prompt": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/completions", json=body) as response:
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = [Completion.model_validate(e) for e in events[:-1]]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected_trace().solution
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == sum(s.tokens for s in expected_trace().steps)
    assert all(c.usage is None for c in chunks[:-1])


def test_stop_sequence_cuts_the_answer_and_stops_the_solve(
    client: TestClient, pair: tuple[ScriptedGenerator, ScriptedGenerator]
) -> None:
    body = client.post("/v1/chat/completions", json=chat_body(model="arbitrage/draft", stop=["two"])).json()
    assert body["choices"][0]["message"]["content"] == "draft one\n\ndraft "
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["arbitrage"]["stop_reason"] == "stop_sequence"
    assert len(pair[0].calls) == 2  # no step after the one holding the stop sequence


def test_step_limit_is_finish_reason_length(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat_body(arbitrage={"max_steps": 2})).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["arbitrage"]["stop_reason"] == "max_steps" and body["arbitrage"]["num_steps"] == 2


def test_include_steps_false_leaves_the_step_list_out(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat_body(arbitrage={"include_steps": False})).json()
    assert "steps" not in body["arbitrage"] and body["arbitrage"]["num_steps"] == 4


def test_system_message_and_history_reach_the_models_as_context(
    client: TestClient, pair: tuple[ScriptedGenerator, ScriptedGenerator]
) -> None:
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Salut"},
        {"role": "user", "content": QUESTION},
    ]
    assert client.post("/v1/chat/completions", json=chat_body(messages=messages)).status_code == 200
    question = pair[0].calls[0].question
    assert question.startswith("Answer in French.") and "User: Hi\nAssistant: Salut" in question
    assert question.endswith(QUESTION)


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c["id"] for c in BAD_REQUESTS])
def test_bad_requests_get_openai_errors(client: TestClient, case: dict[str, Any]) -> None:
    if "raw" in case:
        response = client.post(
            case["path"], content=case["raw"], headers={"content-type": "application/json"}
        )
    else:
        response = client.post(case["path"], json=case["body"])
    assert response.status_code == case["status"], response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert case["message"] in error["message"], error["message"]
    if "param" in case:
        assert error["param"] == case["param"]
    if "code" in case:
        assert error["code"] == case["code"]


def test_unknown_routes_and_methods(client: TestClient) -> None:
    response = client.get("/v1/nothing")
    assert response.status_code == 404 and "Unknown route" in response.json()["error"]["message"]
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405 and response.json()["error"]["type"] == "invalid_request_error"


def test_models_and_health(client: TestClient) -> None:
    models = ModelList.model_validate(client.get("/v1/models").json())
    assert [m.id for m in models.data] == ["arbitrage", "arbitrage/draft", "arbitrage/target"]
    assert models.data[0].arbitrage["draft"] == "draft-m" and models.data[2].root == "target-m"
    assert client.get("/v1/models/arbitrage/target").json()["root"] == "target-m"
    assert client.get("/v1/models/nope").status_code == 404
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["policy"] == "random(p=0.5)"
    assert (health["running"], health["queued"]) == (0, 0)


def test_api_key_is_required_on_v1_and_metrics_only() -> None:
    app = create_app(settings(api_key="s3cret"), generators=scripted_pair())
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = client.post("/v1/chat/completions", json=chat_body(), headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/v1/models").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/health").status_code == 200
        ok = {"Authorization": "Bearer s3cret"}
        assert client.post("/v1/chat/completions", json=chat_body(), headers=ok).status_code == 200
        assert client.get("/metrics", headers=ok).status_code == 200


def test_backend_errors_are_reported_not_raised() -> None:
    def broken(context: object) -> tuple[str, Any]:
        raise BackendError("draft-m: context of 9000 tokens does not fit n_ctx=4096")

    def crash(context: object) -> tuple[str, Any]:
        raise RuntimeError("segfault-ish")

    for script, status, needle in ((broken, 400, "does not fit"), (crash, 500, "RuntimeError: segfault-ish")):
        generators = (ScriptedGenerator("draft-m", script), ScriptedGenerator("target-m", TARGET_STEPS))
        with TestClient(
            create_app(settings(), generators=generators), raise_server_exceptions=False
        ) as client:
            response = client.post("/v1/chat/completions", json=chat_body())
            assert response.status_code == status and needle in response.json()["error"]["message"]
            with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as stream:
                events = sse_events(stream.iter_lines())
            assert needle in events[-1]["error"]["message"]  # the stream ends with an error event
            metrics = client.get("/metrics").text
            assert metric(metrics, "arbitrage_solves_total", outcome="error") == 2


def test_metrics_count_requests_steps_and_escalations(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert client.post("/v1/chat/completions", json=chat_body(model="nope")).status_code == 404
    with client.stream(
        "POST", "/v1/completions", json={"model": "arbitrage", "prompt": QUESTION, "stream": True}
    ) as r:
        list(r.iter_lines())
    text = client.get("/metrics").text
    trace = expected_trace()
    escalated = sum(1 for s in trace.steps if s.escalated)
    assert metric(text, "arbitrage_requests_total", endpoint="/v1/chat/completions", code="200") == 3
    assert metric(text, "arbitrage_requests_total", endpoint="/v1/chat/completions", code="404") == 1
    assert metric(text, "arbitrage_requests_total", endpoint="/v1/completions", code="200") == 1
    assert metric(text, "arbitrage_solves_total", outcome="completed") == 4
    assert metric(text, "arbitrage_steps_total") == 4 * len(trace.steps)
    assert metric(text, "arbitrage_steps_total", role="target", model="target-m") == 4 * escalated
    assert metric(text, "arbitrage_escalations_total") == 4 * escalated
    assert metric(text, "arbitrage_model_calls_total", role="draft") == 4 * len(trace.steps)
    assert metric(text, "arbitrage_request_duration_seconds_count", endpoint="/v1/chat/completions") == 4
    assert metric(text, "arbitrage_queue_wait_seconds_count") == 4
    assert metric(text, "arbitrage_time_to_first_step_seconds_count") == 4
    assert metric(text, "arbitrage_queue_depth") == 0 and metric(text, "arbitrage_solves_in_progress") == 0
    assert metric(text, "arbitrage_max_concurrency") == 1


def test_a_new_policy_and_its_options_plug_in_without_server_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a later policy (e.g. `verify`) will do: one registry entry with its own options class."""
    import dataclasses

    from arbitrage.policies import PolicyEntry, factory
    from arbitrage.server import jobs
    from arbitrage.trace import Decision

    @dataclasses.dataclass(frozen=True, slots=True)
    class LengthOptions:
        tau: float = 0.0
        router: str | None = None

    class LengthRouter:
        skip_draft = False

        def __init__(self, tau: float, router: str | None) -> None:
            self.tau, self.router = tau, router

        @property
        def name(self) -> str:
            return f"length(tau={self.tau:g}, router={self.router})"

        def decide(self, view: Any) -> Decision:
            score = view.draft.tokens / 10
            return Decision(escalate=score > self.tau, score=score, threshold=self.tau)

    entry = PolicyEntry(LengthOptions, lambda o, _scorer: LengthRouter(o.tau, o.router))
    monkeypatch.setitem(factory.POLICIES, "length", entry)
    monkeypatch.setattr(jobs, "POLICY_NAMES", (*jobs.POLICY_NAMES, "length"))
    app = create_app(
        settings(policy="length", policy_options={"router": "r.pt", "tau": 0.25}), generators=scripted_pair()
    )
    with TestClient(app) as client:
        body = client.post("/v1/chat/completions", json=chat_body()).json()
        assert body["arbitrage"]["policy"] == "length(tau=0.25, router=r.pt)"
        body = client.post(
            "/v1/chat/completions", json=chat_body(arbitrage={"policy_params": {"tau": 0.9}})
        ).json()
        assert body["arbitrage"]["policy"] == "length(tau=0.9, router=r.pt)"
        assert body["arbitrage"]["steps_by_model"]["target"] == 0  # no draft step is 9 tokens long
        assert body["arbitrage"]["steps"][0]["decision"]["threshold"] == 0.9
        error = client.post(
            "/v1/chat/completions", json=chat_body(arbitrage={"policy_params": {"tau": 1.5}})
        ).json()
        assert "outside this server's range [-1, 1]" in error["error"]["message"]
