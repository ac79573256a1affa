"""Chat Completions failures (OpenAI, or any server speaking its API) mapped to short, safe
`ProviderError`s: a message for the end user and a `detail` for the log (the rules are in
`errors`)."""

from __future__ import annotations

from typing import Any

import openai

from botrunner.providers.base import ProviderError
from botrunner.providers.errors import (
    StreamError,
    classify_status,
    classify_transport,
    no_response,
    said,
    unreachable,
)
from botrunner.providers.retry import Retryable

# Error `type` or `code` of an error sent inside a stream -> the HTTP status it stands for.
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "service_unavailable": 503,
}


def classify(
    exc: BaseException, *, key_source: str, secrets: tuple[str | None, ...], where: str
) -> ProviderError | Retryable:
    """A safe error for `exc`, wrapped in Retryable when another attempt may succeed.
    `key_source` names where the key came from and `where` the API's address (both for the
    messages); `secrets` are redacted from anything upstream says."""
    if isinstance(exc, openai.APIStatusError):
        message, status = _message(exc.body), exc.status_code
        # OpenAI names a too-long conversation in its code, not always in its words.
        kind = " ".join(str(k) for k in (exc.type, exc.code) if isinstance(k, str))
        return classify_status(
            status,
            exc.response.headers,
            f"{message} {kind}",
            key_source=key_source,
            said=said(status, kind or None, message, exc.request_id, secrets),
        )
    if isinstance(exc, StreamError):
        status = _TYPE_STATUS.get(exc.err_type, 500)
        return classify_status(
            status,
            None,
            str(exc),
            key_source=key_source,
            said=said(status, exc.err_type, str(exc), None, secrets),
        )
    if isinstance(exc, openai.APITimeoutError):  # before its base, APIConnectionError
        return no_response()
    if isinstance(exc, openai.APIConnectionError):
        return unreachable(where)
    return classify_transport(exc, where)


def _message(body: Any) -> str:
    """The explanation in an error body, in the shapes servers use: OpenAI's
    `{"error": {"message": ...}}` (the SDK hands over the inner object), a bare string, or a
    web framework's `{"detail": ...}`."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str):
                return value
    return ""
