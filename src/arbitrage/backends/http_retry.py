"""Retries with exponential backoff for calls to remote model servers.

Which failures are worth another try: connection errors and timeouts (server restarting, network blip),
HTTP 408/409/429 (busy, rate-limited) and 5xx (overloaded, crashed worker), and a response stream that
broke off before its end. Everything else (400 bad request, 401 bad key, 404 unknown model) fails at once:
repeating it cannot help. Waits double from ``backoff`` up to ``max_backoff`` with jitter (so many
concurrent clients do not retry in lockstep); a server's ``Retry-After`` header, when sent, is honoured
up to ``max_backoff``.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from arbitrage.errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 429})


class IncompleteResponse(Exception):
    """A streamed response ended without its final chunk (the server went away mid-answer)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a failed request."""

    retries: int = 3  # further attempts after the first (0 = fail on the first error)
    backoff: float = 0.5  # seconds before the first retry; doubled for each later one
    max_backoff: float = 8.0  # cap on one wait, Retry-After included

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigError("backoff and max_backoff must be >= 0")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        return min(self.max_backoff, self.backoff * 2**retry) * random.uniform(0.5, 1.0)


def _http_errors(name: str) -> tuple[type[BaseException], ...]:
    """``name`` (TransportError, TimeoutException) from httpx and httpx2, whichever are loaded.

    The openai client is built on httpx (1.x) or httpx2 (later); errors raised while reading a stream
    come from that library unwrapped. A library not imported yet cannot have raised anything, and
    importing it here (while an exception is handled) could run finalisers against a half-imported module.
    """
    modules = (sys.modules.get(module_name) for module_name in ("httpx", "httpx2"))
    return tuple(getattr(module, name) for module in modules if module is not None and hasattr(module, name))


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an openai/httpx status error, else None."""
    code = getattr(exc, "status_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt could succeed (see the module docstring)."""
    import openai

    if isinstance(exc, (openai.APIConnectionError, IncompleteResponse, *_http_errors("TransportError"))):
        return True
    code = status_code(exc)
    return code is not None and (code in RETRY_STATUS or code >= 500)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The ``Retry-After`` header of a failed response, in seconds, when the server sent one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    raw = headers.get("retry-after") if headers is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """Run ``call`` until it succeeds; return (its result, attempts used).

    A non-retryable error propagates at once; after the last retry the last error propagates. The caller
    turns either into a user-readable error.
    """
    attempt = 0
    while True:
        try:
            return call(), attempt + 1
        except Exception as exc:
            if not is_retryable(exc) or attempt >= policy.retries:
                exc.attempts = attempt + 1  # type: ignore[attr-defined]
                raise
            wait = policy.delay(attempt, retry_after_seconds(exc))
            logger.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, describe_error(exc), attempt + 1,
                policy.retries, wait,
            )  # fmt: skip
            sleep(wait)
            attempt += 1


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed request, for people."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, *_http_errors("TimeoutException"))):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        while cause is not None and cause.__cause__ is not None and not str(cause):
            cause = cause.__cause__
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection refused"
        return f"connection failed ({cause or exc})"
    if isinstance(exc, (IncompleteResponse, *_http_errors("TransportError"))):
        return f"connection dropped mid-response ({exc or type(exc).__name__})"
    code = status_code(exc)
    if code is not None:
        return f"HTTP {code}: {server_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


def server_message(exc: BaseException) -> str:
    """The error message a server put in its response body (OpenAI, vLLM and FastAPI shapes)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        for candidate in (inner.get("message") if isinstance(inner, dict) else inner, body.get("detail")):
            if isinstance(candidate, str) and candidate:
                return candidate
    text = str(getattr(exc, "message", None) or exc)
    return re.sub(r"^Error code: \d+ - ", "", text)
