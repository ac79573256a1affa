"""The retry policy of a model call: which failures are retried, how long to wait between
attempts, and what the user is told when the policy stops.

Retries stop at the first byte of output (a reply already shown to the user is never silently
replayed) and every wait must fit in the turn's deadline, which is why providers run this loop
themselves instead of leaving it to an SDK.
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

from botrunner.providers.base import ProviderError

BACKOFF_BASE = 0.5  # seconds before the first retry, doubled for each further one
BACKOFF_MAX = 8.0


class Retryable(Exception):
    """One failed attempt that may be retried: the safe error, and how long the server asks to
    wait (None: not said)."""

    def __init__(self, error: ProviderError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def backoff(attempt: int, retry_after: float | None, base: float, cap: float) -> float:
    """Seconds to wait before retry number `attempt + 1`: what the server asked for, else
    exponential with jitter (so clients that failed together do not retry together)."""
    if retry_after is not None:
        return max(0.0, retry_after)
    delay = min(base * (2**attempt), cap)
    return delay * (1 - 0.25 * random.random())


def retry_after(headers: Any) -> float | None:
    """The wait the server asks for, in seconds: `retry-after-ms`, then `retry-after`
    (seconds or an HTTP date), as the SDK reads them."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))


# -- what the user is told ---------------------------------------------------------------------


def timed_out(emitted: bool, timeout_seconds: float) -> ProviderError:
    if emitted:
        return ProviderError(
            "timeout",
            f"The reply took longer than the {timeout_seconds:g} s limit and was cut off.",
        )
    return ProviderError(
        "timeout", f"The model did not answer within the {timeout_seconds:g} s limit."
    )


def interrupted(failure: ProviderError | Retryable) -> ProviderError:
    """A failure after output was shown: never retried, whatever it was."""
    error = failure.error if isinstance(failure, Retryable) else failure
    return ProviderError(
        "stream_interrupted",
        "The reply was cut off before it finished "
        f"({_cause(error)}). Please send your message again.",
        error.detail,
    )


def gave_up(failure: Retryable, attempts: int) -> ProviderError:
    error = failure.error
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return ProviderError(error.code, f"{error.message} Gave up after {tries}.", error.detail)


def no_time(failure: Retryable, wait: float, timeout_seconds: float) -> ProviderError:
    error = failure.error
    if failure.retry_after is not None:
        return ProviderError(
            error.code,
            f"{error.message} It asks to retry in {_seconds(wait)}, past this turn's "
            f"{timeout_seconds:g} s limit. Please try again later.",
            error.detail,
        )
    return ProviderError(
        error.code,
        f"{error.message} No time left to retry within the {timeout_seconds:g} s limit.",
        error.detail,
    )


def _cause(error: ProviderError) -> str:
    return {
        "connection": "the connection to the model API was lost",
        "overloaded": "the model API became overloaded",
        "rate_limited": "the model API started rate limiting",
        "timeout": "the model API stopped responding",
    }.get(error.code, "the model API reported an error")


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
