"""HTTP plumbing of the server: request metrics, the bearer check, JSON bodies, disconnects, streams.

Kept apart from the routes (``app.py``) because none of it knows about solves.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, SecretStr, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arbitrage.server.errors import APIError, bad_request, describe_errors
from arbitrage.server.metrics import ServerMetrics

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")


class RequestMetrics:
    """Pure ASGI middleware: counts every HTTP request by route and status, and times it to the last byte."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope.get("path", "")
            endpoint = (
                path if path in ENDPOINTS else "/v1/models" if path.startswith("/v1/models/") else "other"
            )
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)


M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M], limit: int) -> M:
    """Parse the body as JSON (whatever the Content-Type) and validate it; OpenAI-shaped 4xx if not."""
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise APIError(413, f"The request body is larger than {limit} bytes", code="request_too_large")
    if not body.strip():
        raise bad_request("The request body is empty: send a JSON object", code="invalid_json")
    try:
        data = json.loads(body)
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise bad_request("The request body is nested too deeply", code="invalid_json") from None
    except ValueError as exc:  # malformed JSON, bad UTF-8/16/32, an integer of over 4300 digits
        raise bad_request(f"Malformed JSON in the request body: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request(f"The request body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = describe_errors(exc.errors())
        raise bad_request(message, param=param) from None


class DisconnectWatcher:
    """Watches the ASGI receive channel for ``http.disconnect`` while a request waits or solves."""

    def __init__(self, request: Request, on_gone: Callable[[], None]) -> None:
        self.gone = asyncio.Event()
        self._receive = request.receive
        self._on_gone = on_gone
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                self._on_gone()
                return

    def close(self) -> None:
        self._task.cancel()


def check_bearer(request: Request, key: SecretStr | None) -> None:
    """Raise 401 unless ``key`` is None or the request carries ``Authorization: Bearer <key>``."""
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), key.get_secret_value().encode()
    ):
        raise APIError(
            401,
            "Invalid or missing API key: send the header 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


class SolveStreamResponse(StreamingResponse):
    """A streaming response that runs ``on_close`` however it ends, even if its body never started
    (a client gone before the first byte: the body generator's own ``finally`` would not run)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
