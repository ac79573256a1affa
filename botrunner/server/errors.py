"""Errors known before a reply starts streaming, as plain HTTP errors with a JSON body.

Every error body has the same shape, `{"error": {"code": ..., "message": ..., "type": ...}}`:
`code` is stable and machine-readable, `message` is safe to show to an end user, and `type`
is there so OpenAI clients (which read `error.message` and `error.type`) understand it too.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from botrunner.engine.engine import InputError
from botrunner.engine.limits import RateLimited
from botrunner.providers.base import ProviderError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
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


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "type": _TYPES.get(status, "api_error"),
            **extra,
        }
    }


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = error_body(status, code, message, **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def from_engine(exc: Exception) -> ApiError:
    """Map what `Engine.prepare` raises to the HTTP error a client should see."""
    if isinstance(exc, InputError):
        status = 413 if exc.code == "message_too_long" else 400
        return ApiError(status, exc.code, exc.message, **exc.details)
    if isinstance(exc, RateLimited):
        seconds = max(1, math.ceil(exc.retry_after))
        headers = {"Retry-After": str(seconds)}
        return ApiError(429, "rate_limited", exc.message, headers, kind=exc.kind)
    if isinstance(exc, ProviderError):
        # `config`: the model can't be reached at all (e.g. no API key): the server is up but
        # this bot is unavailable until someone sets what the message names.
        status = 503 if exc.code == "config" else 502
        return ApiError(status, exc.code, exc.message)
    raise exc


ENGINE_ERRORS = (InputError, RateLimited, ProviderError)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = first.get("msg", "invalid request")
        message = f"{where}: {detail}" if where else detail
        return error_response(422, "invalid_request", f"Invalid request body: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)
