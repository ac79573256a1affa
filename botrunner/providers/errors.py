"""Failures of a model API mapped to short, safe `ProviderError`s, each marked retryable or
not: a message for the end user (no keys, nothing upstream said) and a `detail` for the log
(what upstream said, secrets redacted). Shared by the providers; each maps its SDK's exceptions
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
    said: str,
    overloaded: bool = False,
) -> ProviderError | Retryable:
    """An HTTP error status (or the status an in-stream error stands for). `headers` is None
    for an error inside a stream, which has none to go by; `message` is upstream's own
    explanation, used only to tell which refusal it is; `said` (from `said`) is the detail
    for the log."""
    if status in (401, 403):
        what = "rejected the API key" if status == 401 else "refused access with this API key"
        return ProviderError(
            "auth", f"The model API {what} (HTTP {status}): check {key_source}.", said
        )
    if status == 429:
        error = ProviderError("rate_limited", "The model API is rate limiting requests.", said)
    elif overloaded:
        error = ProviderError("overloaded", "The model API is overloaded (HTTP 529).", said)
    elif status >= 500 or status == 408:
        error = ProviderError("upstream", f"The model API had an error (HTTP {status}).", said)
    else:
        return _rejected(status, message, said)
    if headers is None:
        return Retryable(error)
    if headers.get("x-should-retry") == "false":
        return error
    return Retryable(error, retry_after(headers))


# What the APIs say when the conversation no longer fits the model's context window: Anthropic
# ("prompt is too long", "exceed context limit"), OpenAI and vLLM ("maximum context length",
# code context_length_exceeded), llama.cpp ("exceeds the available context size").
_TOO_LONG = re.compile(
    r"prompt is too long|exceeds? (the )?(available )?context (limit|window|size)"
    r"|maximum context length|context_length_exceeded",
    re.I,
)


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


def said(
    status: int,
    err_type: str | None,
    message: str,
    request_id: str | None,
    secrets: tuple[str | None, ...],
) -> str:
    """What the API said, for the log: status, error type, its message (made safe) and the
    API's own request id, to quote to its support."""
    out = f"HTTP {status}" + (f" {err_type}" if err_type else "")
    summary = safe_summary(message, secrets=secrets, limit=500)
    if summary:
        out += f": {summary}"
    if request_id:
        out += f" (upstream request-id {_CONTROL.sub('', request_id)[:100]})"
    return out


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


def safe_summary(detail: str, *, secrets: tuple[str | None, ...] = (), limit: int = 200) -> str:
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
