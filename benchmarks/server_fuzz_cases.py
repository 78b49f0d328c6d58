"""The server fuzz's cases and property, shared by the benchmark (``benchmarks/server_fuzz.py``) and the
test (``tests/integration/test_server_fuzz.py``): a live ``arbitrage serve``, the requests hypothesis
generates, and the check of each answer.

``serve`` starts ``arbitrage serve`` as a real process (``python -m arbitrage.cli.main serve``) on a free
loopback port with small step and token limits. :func:`cases` generates, in families:

- ``valid``: requests the API documents as acceptable (any field within its range, any text, streaming
  or not, any model id and per-request policy the server serves). Only a 200 with a well-formed OpenAI
  body (or a complete event stream) is right.
- ``mutated``: a valid request with one to three fields replaced by hostile JSON (wrong types, NaN,
  infinities, 2**64, huge strings, lone surrogates, nested junk), deleted, or unknown fields added.
- ``raw``: bodies that are not a request at all: random bytes, cut JSON, deep nesting, non-UTF-8 text,
  UTF-16, bodies over the size limit, odd Content-Types.
- ``auth``: wrong or missing API keys (a 401 is the only right answer on ``/v1`` and ``/metrics``).
- ``other``: ``/v1/models``, ``/v1/models/{id}`` with any id, ``/health``, ``/metrics``, unknown routes
  and methods, query strings.
- ``abandoned``: a valid streaming request whose client leaves after the first event.

**The property** (:func:`send` returns the problems of one answer): every response is a well-formed
OpenAI body (the shapes of :mod:`arbitrage.server.schemas`, a complete ``text/event-stream`` for streams)
or a 4xx with an OpenAI error body; never a 5xx (a 504 only when the request itself set
``arbitrage.timeout``), never a hang (each request has a client timeout); and afterwards the server is
up, idle, and answers ``/health`` and a normal request (:func:`liveness_problems`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from arbitrage.server.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    ErrorResponse,
    ModelCard,
    ModelList,
)

KEY = "fuzz-key"
MODEL_ID = "arbitrage"
SEPARATOR = "\n\n"  # the server's default step separator

# The server's settings under fuzz: small limits keep every solve to a second or so.
SERVER_SETTINGS: dict[str, Any] = {
    "policy": "random",
    "policy_options": {"p": 0.5},
    "allowed_policies": ["target"],
    "max_steps": 2,
    "max_steps_limit": 3,
    "max_step_tokens": 8,
    "max_step_tokens_limit": 12,
    "max_tokens": 16,
    "max_tokens_limit": 24,
    "n_ctx": 2048,  # fits the longest valid request (~300 characters, up to ~1,000 tokens) and its steps
    "max_concurrency": 1,
    "max_queue": 4,
    "request_timeout": 60.0,
    "max_request_bytes": 65_536,
}
CLIENT_TIMEOUT = 90.0  # seconds a request may take before it counts as a hang (above request_timeout)


# -- the live server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``arbitrage serve`` (see :func:`serve`)."""

    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[str]
    log: Path  # its stdout and stderr

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def serve(
    workdir: Path,
    *,
    draft: str = "smollm2-135m",
    target: str = "smollm2-135m",
    env: dict[str, str] | None = None,
    startup_seconds: float = 180.0,
) -> Iterator[ServerProcess]:
    """Run ``arbitrage serve`` with :data:`SERVER_SETTINGS` on a free loopback port; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "serve.json"
    config.write_text(json.dumps(SERVER_SETTINGS))
    port = free_port()
    args = [
        sys.executable, "-m", "arbitrage.cli.main", "serve", "--config", str(config),
        "--draft", draft, "--target", target, "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY,
    ]  # fmt: skip
    base = {k: v for k, v in (env or os.environ).items() if not k.startswith("ARBITRAGE_SERVE_")}
    base.pop("ARBITRAGE_API_KEY", None)
    log = workdir / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(args, env=base, stdout=out, stderr=subprocess.STDOUT, text=True)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if not server.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if server.alive():
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


# -- cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One HTTP request of the fuzz and what a right answer to it is."""

    family: str  # valid, mutated, raw, auth, other, abandoned
    method: str
    path: str  # with the query string, if any
    headers: dict[str, str]
    content: bytes | None
    must_succeed: bool = False  # a valid request: only a 200 is right
    expect_status: int | None = None  # the only right status (e.g. 401 for a wrong key)
    body: Any = None  # the JSON the content encodes, when it is JSON (for the response checks)
    abandon: bool = False  # read the first stream event, then leave

    @property
    def endpoint(self) -> str:
        """The route for the counts: the known ones by name, everything else as ``other``."""
        path = self.path.split("?", 1)[0]
        known = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")
        name = path if path in known else "/v1/models/{id}" if path.startswith("/v1/models/") else "other"
        return f"{self.method} {name}"

    def describe(self, limit: int = 600) -> str:
        content = (self.content or b"")[:limit]
        more = "..." if self.content and len(self.content) > limit else ""
        return f"{self.method} {self.path} headers={self.headers} body={content!r}{more}"


AUTH = {"Authorization": f"Bearer {KEY}"}
JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}

SPECIAL_TEXT = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "\\boxed{4}",
    "\n\n",
    "\x00",
    "{question}",
    "%s%n",
    "\u202e",
    "\ufeff",
    "🧮",
]
LONE_SURROGATES = [chr(0xD800), chr(0xDBFF), chr(0xDC00), chr(0xDFFF)]
EDGE_SCALARS: list[Any] = [
    0, -1, 1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**100, 0.0, -0.0, 5e-324, 1e-320, 1e308,
    math.inf, -math.inf, math.nan, "", " ", "\x00", "NaN", "1", True, False, None, [], {}, "a" * 5000,
]  # fmt: skip

valid_text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(SPECIAL_TEXT)
question_text = st.lists(valid_text, min_size=1, max_size=3).map("".join).filter(lambda s: bool(s.strip()))
hostile_text = st.lists(
    st.text(max_size=20) | st.sampled_from(SPECIAL_TEXT + LONE_SURROGATES), max_size=6
).map("".join) | st.builds(
    lambda s, n: s * n, st.sampled_from(["x", "é ", "🧮", "1+1=2. "]), st.integers(1, 4000)
)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | hostile_text
    | st.sampled_from(EDGE_SCALARS)
    | st.integers(min_value=-(2**70), max_value=2**70)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _optional(**fields: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return fields


@st.composite
def arbitrage_options(draw: st.DrawFn, role_model: bool) -> dict[str, Any]:
    """A valid ``arbitrage`` extension object (within :data:`SERVER_SETTINGS`)."""
    s = SERVER_SETTINGS
    optional = _optional(
        max_steps=st.integers(1, s["max_steps_limit"]),
        max_step_tokens=st.integers(1, s["max_step_tokens_limit"]),
        stop_on_boxed=st.booleans(),
        include_steps=st.booleans(),
        timeout=st.floats(s["request_timeout"] / 2, s["request_timeout"]),
    )
    options = draw(st.fixed_dictionaries({}, optional=optional))
    if role_model:  # the /draft and /target model ids fix their policy, which has no parameters
        return options
    policy = draw(st.sampled_from(["random", "target"]) | st.none())
    if policy is not None:
        options["policy"] = policy
    if policy in ("random", None):  # p is a parameter of the random policy only (the server's default)
        params = st.fixed_dictionaries({}, optional={"p": st.floats(0.0, 1.0) | st.sampled_from([0, 1])})
        if draw(st.booleans()):
            options["policy_params"] = draw(params)
    return options


def _stop() -> st.SearchStrategy[Any]:
    one = st.text(st.characters(codec="utf-8"), min_size=1, max_size=6) | st.sampled_from(["\n", "=", "."])
    return one | st.lists(one, max_size=4) | st.none()


@st.composite
def valid_body(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A request body the API documents as acceptable for ``kind`` (chat or completion)."""
    s = SERVER_SETTINGS
    model = draw(st.sampled_from([MODEL_ID, f"{MODEL_ID}/draft", f"{MODEL_ID}/target"]))
    stream = draw(st.booleans())
    body: dict[str, Any] = {"model": model, "stream": True} if stream else {"model": model}
    if kind == "chat":
        text_part = st.fixed_dictionaries({"type": st.just("text"), "text": valid_text})
        earlier = st.fixed_dictionaries(
            {
                "role": st.sampled_from(["system", "developer", "user", "assistant"]),
                "content": valid_text | st.none() | st.lists(text_part, max_size=2),
            },
            optional={"name": st.text(max_size=8)},
        )
        last_content = question_text | question_text.map(lambda q: [{"type": "text", "text": q}])
        last = st.fixed_dictionaries({"role": st.just("user"), "content": last_content})
        body["messages"] = [*draw(st.lists(earlier, max_size=2)), draw(last)]
    else:
        body["prompt"] = draw(question_text | question_text.map(lambda q: [q]))
    tokens = st.integers(1, s["max_tokens_limit"])
    optional = _optional(
        stream=st.just(False),  # said, or left to the default
        temperature=st.floats(0.0, 2.0) | st.sampled_from([0, 1, 2]),
        top_p=st.floats(0.0, 1.0, exclude_min=True) | st.just(1),
        n=st.just(1),
        stop=_stop(),
        seed=st.integers(-(2**63), 2**63 - 1) | st.none(),
        presence_penalty=st.sampled_from([0, 0.0, None]),
        frequency_penalty=st.sampled_from([0, 0.0, None]),
        logit_bias=st.just({}) | st.none(),
        user=st.text(max_size=12),
        metadata=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
        store=st.booleans(),
        service_tier=st.sampled_from(["auto", "default"]),
        arbitrage=arbitrage_options(role_model=model != MODEL_ID),
    )
    if stream:
        del optional["stream"]
        optional["stream_options"] = st.fixed_dictionaries({}, optional={"include_usage": st.booleans()})
    if kind == "chat":
        optional.update(
            logprobs=st.just(False),
            top_logprobs=st.just(0),
            tools=st.just([]),
            tool_choice=st.sampled_from(["none", "auto"]),
            parallel_tool_calls=st.booleans(),
            response_format=st.just({"type": "text"}),
            modalities=st.just(["text"]),
            reasoning_effort=st.sampled_from(["low", "high"]),
        )
        # max_tokens or max_completion_tokens (both only when equal)
        choice = draw(st.sampled_from(["none", "max_tokens", "max_completion_tokens", "both"]))
        value = draw(tokens)
        if choice in ("max_tokens", "both"):
            body["max_tokens"] = value
        if choice in ("max_completion_tokens", "both"):
            body["max_completion_tokens"] = value
    else:
        optional.update(
            max_tokens=tokens,
            echo=st.just(False),
            suffix=st.sampled_from(["", None]),
            best_of=st.just(1),
            logprobs=st.just(0),
        )
    body.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return body


def _containers(value: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in a JSON value, depth first."""
    if isinstance(value, dict):
        for key in value:
            found.append((value, key))
            _containers(value[key], found)
    elif isinstance(value, list):
        for index in range(len(value)):
            found.append((value, index))
            _containers(value[index], found)
    return found


FIELD_NAMES = [
    "model", "messages", "prompt", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "n", "stop", "seed", "tools", "tool_choice", "functions", "logprobs", "echo",
    "suffix", "best_of", "logit_bias", "response_format", "arbitrage", "policy", "policy_params", "p",
    "tau", "seed", "max_steps", "timeout", "role", "content", "type", "text", "image_url", "include_usage",
]  # fmt: skip


@st.composite
def mutated_body(draw: st.DrawFn, kind: str) -> Any:
    """A valid body with one to three hostile edits (set, delete, add a field; or replace the whole)."""
    # copies throughout: strategies hand out shared objects (st.just({...}), the [] and {} of EDGE_SCALARS)
    body: Any = copy.deepcopy(draw(valid_body(kind)))
    for _ in range(draw(st.integers(1, 3))):
        places = _containers(body, [])
        op = draw(st.sampled_from(["set", "set", "set", "delete", "add", "whole"]))
        if op == "whole" or not places:
            body = copy.deepcopy(draw(json_value))
            continue
        container, key = draw(st.sampled_from(places))
        if op == "set":
            container[key] = copy.deepcopy(draw(json_value))
        elif op == "delete":
            del container[key]
        else:
            target = container if isinstance(container, dict) else body
            if isinstance(target, dict):
                target[draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=8))] = copy.deepcopy(
                    draw(json_value)
                )
    return body


def encode(body: Any, draw: st.DrawFn) -> bytes:
    """JSON bytes: ASCII-escaped, or raw UTF-8 (lone surrogates then become invalid UTF-8)."""
    if draw(st.booleans()):
        return json.dumps(body).encode()
    return json.dumps(body, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


@st.composite
def valid_case(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["chat", "completion"]))
    body = draw(valid_body(kind))
    return Case("valid", "POST", PATHS[kind], JSON_HEADERS, encode(body, draw), must_succeed=True, body=body)


@st.composite
def abandoned_case(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["chat", "completion"]))
    body = {**draw(valid_body(kind)), "stream": True}
    content = json.dumps(body).encode()
    return Case("abandoned", "POST", PATHS[kind], JSON_HEADERS, content, body=body, abandon=True)


@st.composite
def mutated_case(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["chat", "completion"]))
    body = draw(mutated_body(kind))
    return Case("mutated", "POST", PATHS[kind], JSON_HEADERS, encode(body, draw), body=body)


CONTENT_TYPES = [
    None, "application/json", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/json; charset=latin-1", "*/*", "\x7f",
]  # fmt: skip


@st.composite
def raw_case(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["chat", "completion"]))
    body = draw(valid_body(kind))
    valid = json.dumps(body).encode()
    text = json.dumps(body, ensure_ascii=False)
    limit = SERVER_SETTINGS["max_request_bytes"]
    content = draw(
        st.binary(max_size=300)
        | st.integers(0, len(valid) - 1).map(lambda n: valid[:n])  # cut short
        | st.sampled_from(["[", '{"a":', '{"messages":[']).flatmap(
            lambda opener: st.integers(1, 60_000).map(lambda n: (opener * n).encode()[:limit])
        )  # deep nesting (within the size limit)
        | st.sampled_from(["utf-16", "utf-32", "latin-1"]).map(
            lambda codec: text.encode(codec, errors="replace")
        )
        | st.integers(limit + 1, 2 * limit).map(lambda n: b'{"model": "' + b"a" * n + b'"}')  # too large
        | st.sampled_from([b"", b" ", b"null", b"[]", b"1", b'"x"', b"NaN", b"{}", b"\xff\xfe", b"\x00"])
        | st.integers(4000, 20_000).map(lambda n: valid[:-1] + b', "seed": ' + b"9" * n + b"}")  # huge int
    )
    headers = dict(AUTH)
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type is not None:
        headers["Content-Type"] = content_type
    return Case("raw", "POST", PATHS[kind], headers, content)


@st.composite
def auth_case(draw: st.DrawFn) -> Case:
    path = draw(st.sampled_from([*PATHS.values(), "/v1/models", "/v1/models/arbitrage", "/metrics"]))
    method = "GET" if path.startswith("/v1/models") or path == "/metrics" else "POST"
    wrong = draw(
        st.sampled_from(
            ["", "Bearer", "Bearer ", f"Basic {KEY}", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", KEY]
        )
        | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    )
    headers = {"Content-Type": "application/json"}
    if wrong.strip():  # (a header value cannot end in a space)
        headers["Authorization"] = wrong.strip()
    content = None
    if method == "POST":
        content = json.dumps(draw(valid_body("chat" if "chat" in path else "completion"))).encode()
    return Case("auth", method, path, headers, content, expect_status=401)


@st.composite
def other_case(draw: st.DrawFn) -> Case:
    model_id = draw(
        st.sampled_from([MODEL_ID, f"{MODEL_ID}/draft", f"{MODEL_ID}/target", "", "..", "%00"])
        | hostile_text.map(lambda t: t[:200])
    )
    path = draw(
        st.sampled_from(["/v1/models", "/health", "/metrics", "/", "/v1", "/v1/", "/docs", "/openapi.json"])
        | st.just("/v1/models/" + quote(model_id.encode("utf-8", errors="surrogatepass"), safe="/"))
        | st.sampled_from([*PATHS.values(), "/v1/embeddings", "/v1/chat/completions/x", "//v1/models"])
        | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).map(
            lambda t: "/" + quote(t, safe="/")
        )
    )
    method = draw(st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    query = draw(st.none() | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20))
    if query:
        path += "?" + quote(query, safe="=&")
    content = None
    if method in ("POST", "PUT", "PATCH"):
        content = draw(st.binary(max_size=50) | json_value.map(lambda v: json.dumps(v).encode()))
    return Case("other", method, path, JSON_HEADERS, content)


def cases() -> st.SearchStrategy[Case]:
    """All families, weighted towards requests that reach the validation and the models."""
    return st.one_of(
        valid_case(), valid_case(), valid_case(),
        mutated_case(), mutated_case(), mutated_case(), mutated_case(),
        raw_case(), raw_case(), auth_case(), other_case(), other_case(), abandoned_case(),
    )  # fmt: skip


# -- checks --------------------------------------------------------------------------------------------


def _validate(model: type[BaseModel], data: Any) -> str | None:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return f"not a {model.__name__}: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}"
    return None


def error_problem(data: Any, status: int) -> str | None:
    """Problems with an OpenAI error body (``{"error": {message, type, param, code}}``, exactly)."""
    problem = _validate(ErrorResponse, data)
    return None if problem is None else f"{status} without an OpenAI error body: {problem}"


def _requested(case: Case, *keys: str) -> Any:
    """A field of the request's JSON (the server reads any body as JSON, UTF-16 and UTF-32 included)."""
    value = case.body
    if value is None and case.content:
        with contextlib.suppress(ValueError, RecursionError):
            value = json.loads(case.content)
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _stopped_error_ok(case: Case, error: dict[str, Any]) -> bool:
    """A 5xx-type error the client asked for: the timeout it set itself."""
    return error.get("code") == "timeout" and _requested(case, "arbitrage", "timeout") is not None


def completion_problems(case: Case, data: Any, text: str, report: dict[str, Any] | None) -> list[str]:
    """The answer agrees with its own ``arbitrage`` report: the steps it lists, joined, make the text."""
    problems = []
    model = _requested(case, "model")
    if isinstance(data, dict) and data.get("model") != model:
        problems.append(f"model {data.get('model')!r} echoed for {model!r}")
    if report is not None and "steps" in report:
        joined = SEPARATOR.join(step["text"] for step in report["steps"])
        if report.get("stop_reason") == "stop_sequence" and not joined.startswith(text):
            problems.append("the text is not a prefix of its steps")
        elif report.get("stop_reason") != "stop_sequence" and joined != text:
            problems.append("the text is not its steps joined")
    return problems


def check_json_response(case: Case, response: httpx.Response) -> list[str]:
    status = response.status_code
    path = case.path.split("?", 1)[0]
    if status == 200 and case.method == "GET" and path in ("/docs", "/redoc", "/openapi.json"):
        return []  # FastAPI's API documentation (HTML and the OpenAPI schema)
    try:
        data = response.json()
    except ValueError:
        if case.endpoint == "GET /metrics" and status == 200:
            return [] if "arbitrage_requests_total" in response.text else ["/metrics without its counters"]
        return [f"{status} with a body that is not JSON: {response.text[:200]!r}"]
    if status >= 400:
        return [p for p in [error_problem(data, status)] if p]
    if status != 200:
        return [f"unexpected status {status}"]
    chat = path == PATHS["chat"]
    if case.method == "POST" and path in PATHS.values():
        problem = _validate(ChatCompletion if chat else Completion, data)
        if problem:
            return [problem]
        assert isinstance(data, dict)
        if len(data["choices"]) != 1:
            return [f"{len(data['choices'])} choices"]
        choice = data["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
        usage = data["usage"]
        problems = completion_problems(case, data, text, data.get("arbitrage"))
        if usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
            problems.append("usage does not add up")
        return problems
    if case.endpoint == "GET /v1/models":
        return [p for p in [_validate(ModelList, data)] if p]
    if case.endpoint == "GET /v1/models/{id}":
        return [p for p in [_validate(ModelCard, data)] if p]
    if case.endpoint == "GET /health":
        return [] if isinstance(data, dict) and data.get("status") == "ok" else ["/health is not ok"]
    return []


def check_stream(case: Case, response: httpx.Response, deadline: float) -> list[str]:
    """A complete event stream: chunks of the right shape, one finish reason, then ``[DONE]``."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return [f"a stream answered as {response.headers.get('content-type')!r}"]
    chat = case.path.split("?", 1)[0] == PATHS["chat"]
    chunks: list[dict[str, Any]] = []
    done = False
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            return ["the stream did not end in time (hang)"]
        if not line.startswith("data: "):
            continue
        if done:
            return ["data after [DONE]"]
        payload = line.removeprefix("data: ")
        if payload == "[DONE]":
            done = True
            if case.abandon:
                break
            continue
        try:
            data = json.loads(payload)
        except ValueError:
            return [f"a stream event that is not JSON: {payload[:200]!r}"]
        if isinstance(data, dict) and "error" in data:
            problem = error_problem(data, 200)
            if problem:
                return [f"stream error event: {problem}"]
            error = data["error"]
            if case.must_succeed and not _stopped_error_ok(case, error):
                return [f"a valid request's stream ended in an error: {error['type']}: {error['message']}"]
            if error["type"] == "server_error" or (
                error.get("code") == "timeout" and not _stopped_error_ok(case, error)
            ):
                return [f"stream ended in a server error: {error['type']}: {error['message']}"]
            return []
        problem = _validate(ChatCompletionChunk if chat else Completion, data)
        if problem:
            return [f"stream chunk {len(chunks)}: {problem}"]
        chunks.append(data)
        if case.abandon:
            return []  # the client leaves after the first event
    if not done:
        return ["the stream ended without [DONE]"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    if len(finals) != 1:
        return [f"{len(finals)} chunks with a finish reason"]
    text = "".join(
        (c["choices"][0]["delta"].get("content") or "") if chat else c["choices"][0]["text"]
        for c in chunks
        if c["choices"]
    )
    problems = completion_problems(case, chunks[0], text, finals[0].get("arbitrage"))
    if _requested(case, "stream_options", "include_usage") is True and (
        chunks[-1]["choices"] != [] or not chunks[-1].get("usage")
    ):
        problems.append("include_usage without a final usage chunk")
    return problems


@dataclass
class Result:
    """What one case got."""

    status: int | None  # None: no HTTP response (connection refused, reset, timeout)
    problems: list[str]
    seconds: float
    excerpt: str = ""  # the start of the response body (for findings)


def send(client: httpx.Client, case: Case) -> Result:
    """Send ``case`` and check the answer against the property (see the module docstring)."""
    start = time.monotonic()
    problems: list[str] = []
    status: int | None = None
    excerpt = ""
    try:
        request = client.build_request(case.method, case.path, content=case.content, headers=case.headers)
        response = client.send(request, stream=True)
        try:
            status = response.status_code
            streaming = response.headers.get("content-type", "").startswith("text/event-stream")
            if status == 200 and streaming:
                problems += check_stream(case, response, start + CLIENT_TIMEOUT)
            else:
                response.read()
                excerpt = response.text[:300]
                problems += check_json_response(case, response)
        finally:
            response.close()
    except httpx.TimeoutException as exc:
        problems.append(f"no answer within {CLIENT_TIMEOUT:g} s (hang): {type(exc).__name__}")
    except httpx.HTTPError as exc:
        problems.append(f"no HTTP answer: {type(exc).__name__}: {exc}")
    if status is not None:
        timeout_asked = status == 504 and _requested(case, "arbitrage", "timeout") is not None
        if status >= 500 and not timeout_asked:
            problems.insert(0, f"server error {status}")
        if case.expect_status is not None and status != case.expect_status:
            problems.append(f"expected {case.expect_status}, got {status}")
        if case.must_succeed and status != 200 and not timeout_asked:
            problems.append(f"a valid request got {status}")
    return Result(status, problems, time.monotonic() - start, excerpt)


def liveness_problems(
    server: ServerProcess, client: httpx.Client, *, settle_seconds: float = 60.0
) -> list[str]:
    """The server is up, becomes idle, and answers ``/health`` and a normal request."""
    if not server.alive():
        return [f"the server process exited with {server.process.returncode}"]
    deadline = time.monotonic() + settle_seconds
    while True:
        try:
            health = client.get("/health", timeout=10)
        except httpx.HTTPError as exc:
            return [f"/health did not answer: {type(exc).__name__}: {exc}"]
        if health.status_code != 200 or health.json().get("status") != "ok":
            return [f"/health answered {health.status_code}: {health.text[:200]}"]
        if (health.json()["running"], health.json()["queued"]) == (0, 0):
            break
        if time.monotonic() > deadline:
            return [f"the server is not idle {settle_seconds:g} s after the last case: {health.json()}"]
        time.sleep(0.2)
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "What is 2 + 3?"}]}
    case = Case(
        "valid", "POST", PATHS["chat"], JSON_HEADERS, json.dumps(body).encode(), must_succeed=True, body=body
    )
    result = send(client, case)
    return [f"a normal request after the fuzz: {p}" for p in result.problems]
