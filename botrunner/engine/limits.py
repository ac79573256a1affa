"""Per-user limits: requests per minute (GCRA, atomic in the store) and tokens per UTC day.

Limits are per user per bot and live in the LimitStore, so they survive restarts and hold
across every transport. `admit` is called before anything is stored or sent upstream;
`record` adds a finished turn's tokens.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Literal

from botrunner.bot import Bot
from botrunner.events import Usage
from botrunner.store.base import Admission, LimitStore, Refused, TokenCharge

LimitKind = Literal["requests", "tokens"]


class RateLimited(Exception):
    """A request was refused by a per-user limit. `retry_after` is in seconds; `message` is
    friendly and safe to show; `kind` says which limit ('requests' or 'tokens')."""

    def __init__(self, retry_after: float, message: str, kind: LimitKind) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.message = message
        self.kind = kind


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def seconds_to_utc_midnight(now: float) -> float:
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
    return midnight.timestamp() - now


def describe_wait(seconds: float) -> str:
    """'12 seconds', '1 minute', '3 hours 5 minutes': rounded up, never '0 seconds'."""
    total = max(1, math.ceil(seconds))
    if total < 60:
        return f"{total} second{'s' if total != 1 else ''}"
    minutes = math.ceil(total / 60)
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    text = f"{hours} hour{'s' if hours != 1 else ''}"
    if minutes:
        text += f" {minutes} minute{'s' if minutes != 1 else ''}"
    return text


class Limiter:
    def __init__(self, store: LimitStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def admission(self, bot: Bot, user: str) -> Admission | None:
        """What `admit` checks, for a store that checks it atomically with storing the turn
        (`TurnStore.start_turn`); None when the bot sets no per-user limits."""
        limits = bot.limits.per_user
        if limits.tokens_per_day is None and limits.requests_per_minute is None:
            return None
        now = self.clock()
        day = utc_day(now) if limits.tokens_per_day is not None else ""
        return Admission(
            bot.name, user, now, day, limits.tokens_per_day, limits.requests_per_minute
        )

    def refusal(self, admission: Admission, refused: Refused) -> RateLimited:
        """The RateLimited that `admit` would raise for `refused`."""
        if refused.kind == "tokens":
            return _over_budget(admission.tokens_per_day or 0, admission.now)
        return _too_fast(admission.requests_per_minute or 0, refused.wait)

    async def admit(self, bot: Bot, user: str) -> None:
        """Raise RateLimited if `user` may not send a message to `bot` now; otherwise count
        the request. The token budget is checked first, so a refused request never uses up
        a request slot."""
        limits = bot.limits.per_user
        now = self.clock()
        if limits.tokens_per_day is not None:
            used = await self.store.tokens_used(bot.name, user, utc_day(now))
            if used >= limits.tokens_per_day:
                raise _over_budget(limits.tokens_per_day, now)
        if limits.requests_per_minute is not None:
            per_minute = limits.requests_per_minute
            wait = await self.store.take_request(bot.name, user, per_minute, now)
            if wait > 0:
                raise _too_fast(per_minute, wait)

    def charge(self, bot: Bot, user: str, usage: Usage) -> TokenCharge | None:
        """What `record` adds, for a store that adds it with the turn's last write."""
        tokens = usage.known
        if tokens <= 0:
            return None
        return TokenCharge(bot.name, user, utc_day(self.clock()), tokens)

    async def record(self, bot: Bot, user: str, usage: Usage) -> None:
        """Add a turn's reported tokens (input, cache reads, output) to the user's count for
        today (UTC); a count the provider did not report adds nothing."""
        tokens = usage.known
        if tokens > 0:
            await self.store.add_tokens(bot.name, user, utc_day(self.clock()), tokens)


def _over_budget(tokens_per_day: int, now: float) -> RateLimited:
    wait = seconds_to_utc_midnight(now)
    return RateLimited(
        wait,
        f"You've used today's budget of {tokens_per_day:,} tokens for this "
        f"bot. It resets at midnight UTC, in {describe_wait(wait)}.",
        "tokens",
    )


def _too_fast(per_minute: int, wait: float) -> RateLimited:
    return RateLimited(
        wait,
        f"You're sending messages too fast: {per_minute} per minute is the limit. "
        f"Try again in {describe_wait(wait)}.",
        "requests",
    )
