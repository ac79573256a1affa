"""Errors known before a reply starts streaming, as plain HTTP errors with a JSON body.

Every error body has the same shape,
`{"error": {"code": ..., "message": ..., "type": ..., "request_id": ...}}`: `code` is stable and
machine-readable, `message` is safe to show to an end user, `type` is there so OpenAI clients
(which read `error.message` and `error.type`) understand it too, and `request_id` (also the
`X-Request-Id` header) finds the request in the server's log, where any detail the end user is
not shown (what the model API said) is kept.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from botrunner.engine.engine import InputError, LimitsUnavailable
from botrunner.engine.limits import RateLimited
from botrunner.providers.base import ProviderError
from botrunner.server.bodies import INVALID_TEXT
from botrunner.server.jsonbody import JSONBody

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    502: "api_error",
    503: "api_error",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra


def error_body(
    status: int, code: str, message: str, request_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    error = {"code": code, "message": message, "type": _TYPES.get(status, "api_error"), **extra}
    if request_id:
        error["request_id"] = request_id
    return {"error": error}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONBody:
    request_id = getattr(request.state, "request_id", None)
    body = error_body(status, code, message, request_id, **extra)
    return JSONBody(body, status_code=status, headers=headers)


def from_engine(exc: Exception) -> ApiError:
    """Map what `Engine.prepare` raises to the HTTP error a client should see."""
    if isinstance(exc, InputError):
        status = 413 if exc.code == "message_too_long" else 400
        return ApiError(status, exc.code, exc.message, **exc.details)
    if isinstance(exc, RateLimited):
        seconds = max(1, math.ceil(exc.retry_after))
        headers = {"Retry-After": str(seconds)}
        return ApiError(429, "rate_limited", exc.message, headers, kind=exc.kind)
    if isinstance(exc, LimitsUnavailable):
        # Limits can't be enforced, so nothing is sent upstream; the backend may be back soon.
        seconds = max(1, math.ceil(exc.retry_after))
        return ApiError(503, "limits_unavailable", exc.message, {"Retry-After": str(seconds)})
    if isinstance(exc, ProviderError):
        # `config`: the model can't be reached at all (e.g. no API key): the server is up but
        # this bot is unavailable until someone sets what the message names.
        status = 503 if exc.code == "config" else 502
        return ApiError(status, exc.code, exc.message)
    raise exc


ENGINE_ERRORS = (InputError, RateLimited, LimitsUnavailable, ProviderError)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONBody:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONBody:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == INVALID_TEXT:
            return error_response(request, 400, INVALID_TEXT, first["msg"])
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = first.get("msg", "invalid request")
        message = f"{where}: {detail}" if where else detail
        return error_response(request, 422, "invalid_request", f"Invalid request body: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONBody:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), exc.headers)
