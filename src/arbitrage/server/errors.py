"""OpenAI-shaped error bodies and the exception handlers that produce them.

Every error leaves the server as ``{"error": {"message", "type", "param", "code"}}`` with a fitting HTTP
status, so the official clients raise their usual exceptions (``BadRequestError``,
``AuthenticationError``, ``RateLimitError``, ...) with our message. Library errors
(:class:`~arbitrage.errors.ArbitrageError`) raised while preparing a request become 400s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from arbitrage.errors import ArbitrageError

logger = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered to the client as an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unsupported(param: str, why: str) -> APIError:
    return APIError(400, f"'{param}' is not supported by this server: {why}", param=param, code="unsupported")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "dict", "list", "tuple"}


def _is_tag(part: str) -> bool:
    """A union-member or validator tag pydantic puts in error locations (not a field name)."""
    return part in _TYPE_TAGS or "[" in part or part[:1].isupper() or part.startswith("function-")


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """A user-readable message for pydantic errors, and the first offending parameter's path.

    A value that fits no member of a union yields one error per member; only the first is kept.
    """
    parts: list[str] = []
    params: list[str] = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if str(p) != "body"]
        param = ".".join(p for p in loc if not _is_tag(p))
        if param in params:
            continue
        params.append(param)
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            parts.append(f"unknown parameter '{param}'")
        elif kind == "missing":
            parts.append(f"missing required parameter '{param}'")
        else:
            got = f" (got {_short(error['input'])})" if "input" in error else ""
            parts.append(f"invalid value for '{param or 'body'}': {error.get('msg', 'invalid')}{got}")
    return "Invalid request: " + "; ".join(parts), (params[0] or None) if params else None


def install_error_handlers(app: FastAPI) -> None:
    """Turn every exception into an OpenAI error body."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(ArbitrageError)
    async def _arbitrage_error(request: Request, exc: ArbitrageError) -> JSONResponse:
        return bad_request(str(exc)).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_errors(exc.errors())
        return bad_request(message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"Unknown route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        return APIError(exc.status_code, message, type=kind, headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return APIError(
            500, f"Internal server error: {type(exc).__name__}: {exc}", type="server_error"
        ).response()
