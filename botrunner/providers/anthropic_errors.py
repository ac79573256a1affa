"""Anthropic API failures mapped to short, safe `ProviderError`s: a message for the end user and
a `detail` for the log (the rules are in `errors`)."""

from __future__ import annotations

import anthropic

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
        status = exc.status_code
        return classify_status(
            status,
            exc.response.headers,
            message,
            key_source=key_source,
            said=said(status, err_type, message, exc.request_id, secrets),
            overloaded=status == 529 or err_type == "overloaded_error",
        )
    if isinstance(exc, StreamError):
        status = _TYPE_STATUS.get(exc.err_type, 500)
        return classify_status(
            status,
            None,
            str(exc),
            key_source=key_source,
            said=said(status, exc.err_type, str(exc), None, secrets),
            overloaded=status == 529,
        )
    if isinstance(exc, anthropic.APITimeoutError):  # before its base, APIConnectionError
        return no_response()
    if isinstance(exc, anthropic.APIConnectionError):
        return unreachable(where)
    return classify_transport(exc, where)
