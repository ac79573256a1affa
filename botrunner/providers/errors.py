"""Failures of a model API mapped to short, safe `ProviderError`s (no keys, no raw upstream
bodies), each marked retryable or not. Shared by the providers; each maps its SDK's exceptions
to the arguments here (`anthropic_errors`, `openai_errors`)."""

from __future__ import annotations

import re
from typing import Any

import httpx2

from botrunner.providers.base import ProviderError
from botrunner.providers.retry import Retryable, retry_after


class StreamError(Exception):
    """The API reported an error inside a stream that had started (status 200)."""

    def __init__(self, err_type: str, message: str) -> None:
        super().__init__(message)
        self.err_type = err_type


class StreamCut(Exception):
    """The stream ended before the API said the reply was complete."""


def classify_status(
    status: int,
    headers: Any,
    message: str,
    *,
    key_source: str,
    secrets: tuple[str | None, ...],
    overloaded: bool = False,
) -> ProviderError | Retryable:
    """An HTTP error status (or the status an in-stream error stands for). `headers` is None
    for an error inside a stream, which has none to go by; `message` is upstream's own
    explanation, shown (made safe) only for requests it rejected."""
    if status in (401, 403):
        what = "rejected the API key" if status == 401 else "refused access with this API key"
        return ProviderError("auth", f"The model API {what} (HTTP {status}): check {key_source}.")
    if status == 429:
        error = ProviderError("rate_limited", "The model API is rate limiting requests.")
    elif overloaded:
        error = ProviderError("overloaded", "The model API is overloaded (HTTP 529).")
    elif status >= 500 or status == 408:
        error = ProviderError("upstream", f"The model API had an error (HTTP {status}).")
    else:
        return ProviderError("bad_request", _bad_request(message, status, secrets))
    if headers is None:
        return Retryable(error)
    if headers.get("x-should-retry") == "false":
        return error
    return Retryable(error, retry_after(headers))


def no_response() -> Retryable:
    return Retryable(ProviderError("timeout", "The model API did not respond in time."))


def unreachable(where: str) -> Retryable:
    """`where` is " at <scheme>://<host>[:port]", or empty when not known."""
    return Retryable(ProviderError("connection", f"Could not reach the model API{where}."))


def classify_transport(exc: BaseException, where: str) -> ProviderError | Retryable:
    """Failures below HTTP: timeouts, lost connections, a cut or malformed stream."""
    if isinstance(exc, httpx2.TimeoutException):
        return no_response()
    if isinstance(exc, httpx2.TransportError | StreamCut):
        return unreachable(where)
    if isinstance(exc, ValueError):  # malformed JSON in a stream
        return Retryable(ProviderError("upstream", "The model API sent a malformed reply."))
    return ProviderError("upstream", f"The model call failed ({type(exc).__name__}).")


def _bad_request(message: str, status: int, secrets: tuple[str | None, ...]) -> str:
    detail = safe_summary(message, secrets=secrets)
    what = {
        404: "The model API did not find what was asked for",
        413: "The request is too large for the model API",
    }.get(status, "The model API rejected the request")
    return f"{what} (HTTP {status}): {detail}" if detail else f"{what} (HTTP {status})."


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


def safe_summary(detail: str, *, secrets: tuple[str | None, ...] = (), limit: int = 200) -> str:
    """Upstream's one-line explanation, made safe to show: no control characters, no key-like
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
