"""Anthropic API failures mapped to short, safe `ProviderError`s, each marked retryable or not:
a message for the end user (no keys, nothing upstream said) and a `detail` for the log (what
upstream said, secrets redacted)."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import httpx2

from botrunner.providers.anthropic_stream import StreamCut, StreamError
from botrunner.providers.base import ProviderError
from botrunner.providers.retry import Retryable, retry_after

# Error `type` in an error body (or an SSE `error` event, which arrives with status 200) ->
# the HTTP status it stands for.
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def classify(
    exc: BaseException, *, key_source: str, secrets: tuple[str | None, ...], where: str
) -> ProviderError | Retryable:
    """A safe error for `exc`, wrapped in Retryable when another attempt may succeed.
    `key_source` names where the key came from and `where` the API's address (both for the
    messages); `secrets` are redacted from what upstream says, which goes only into the
    error's `detail` (the log), never into its message."""
    if isinstance(exc, anthropic.APIStatusError):
        err_type = exc.type if isinstance(exc.type, str) else None
        message = exc.api_message if isinstance(exc.api_message, str) else ""
        said = _said(exc.status_code, err_type, message, exc.request_id, secrets)
        return _classify_status(
            exc.status_code, err_type, exc.response.headers, message, key_source, said
        )
    if isinstance(exc, StreamError):
        status = _TYPE_STATUS.get(exc.err_type, 500)
        said = _said(status, exc.err_type, str(exc), None, secrets)
        return _classify_status(status, exc.err_type, None, str(exc), key_source, said)
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return Retryable(ProviderError("timeout", "The model API did not respond in time."))
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError | StreamCut):
        return Retryable(ProviderError("connection", f"Could not reach the model API{where}."))
    if isinstance(exc, ValueError):  # malformed JSON in a stream
        return Retryable(ProviderError("upstream", "The model API sent a malformed reply."))
    return ProviderError("upstream", f"The model call failed ({type(exc).__name__}).")


def _classify_status(
    status: int,
    err_type: str | None,
    headers: Any,
    message: str,
    key_source: str,
    said: str,
) -> ProviderError | Retryable:
    if status < 400 and err_type:  # an SSE `error` event arrives with status 200
        status = _TYPE_STATUS.get(err_type, 500)
    if status in (401, 403):
        what = "rejected the API key" if status == 401 else "refused access with this API key"
        return ProviderError(
            "auth", f"The model API {what} (HTTP {status}): check {key_source}.", said
        )
    if status == 429:
        error = ProviderError("rate_limited", "The model API is rate limiting requests.", said)
    elif status == 529 or err_type == "overloaded_error":
        error = ProviderError("overloaded", "The model API is overloaded (HTTP 529).", said)
    elif status >= 500 or status == 408:
        error = ProviderError("upstream", f"The model API had an error (HTTP {status}).", said)
    else:
        return _rejected(status, message, said)
    if headers is None:  # an SSE `error` event: no headers to go by
        return Retryable(error)
    if headers.get("x-should-retry") == "false":
        return error
    return Retryable(error, retry_after(headers))


# What the API says when the conversation no longer fits the model's context window.
_TOO_LONG = re.compile(r"prompt is too long|exceeds? (the )?context (limit|window)", re.I)


def _rejected(status: int, message: str, said: str) -> ProviderError:
    """The API refused the request itself. The end user learns that, and what to do when
    they can do something; what the API said is for the log."""
    if status == 413:
        return ProviderError(
            "request_too_large",
            "This conversation is too large for the model API. Start a new conversation, "
            "or send a shorter message.",
            said,
        )
    if _TOO_LONG.search(message):
        return ProviderError(
            "prompt_too_long",
            "This conversation is too long for the model. Start a new conversation, or send "
            "a shorter message.",
            said,
        )
    return ProviderError(
        "bad_request",
        "The model API rejected this request, so there is no reply.",
        said,
    )


def _said(
    status: int,
    err_type: str | None,
    message: str,
    request_id: str | None,
    secrets: tuple[str | None, ...],
) -> str:
    """What the API said, for the log: status, error type, its message (made safe) and the
    API's own request id, to quote to its support."""
    said = f"HTTP {status}" + (f" {err_type}" if err_type else "")
    summary = _safe_summary(message, secrets=secrets, limit=500)
    if summary:
        said += f": {summary}"
    if request_id:
        said += f" (upstream request-id {_CONTROL.sub('', request_id)[:100]})"
    return said


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


def _safe_summary(detail: str, *, secrets: tuple[str | None, ...] = (), limit: int = 200) -> str:
    """Upstream's one-line explanation, made safe to log: no control characters, no key-like
    strings, bounded length."""
    detail = _CONTROL.sub(" ", detail).strip()
    for secret in secrets:
        if secret and len(secret) >= 4:
            detail = detail.replace(secret, "[redacted]")
    detail = _KEYLIKE.sub("[redacted]", detail)
    if len(detail) > limit:
        detail = detail[: limit - 1].rstrip() + "…"
    if detail and detail[-1] not in ".!?…":
        detail += "."
    return detail
