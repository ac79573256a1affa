"""Per-user limits: requests per minute (GCRA) and tokens per UTC day, per user per bot.

The counters live in a limits backend (the store by default, so they survive restarts and
hold across every transport and process sharing it). A turn is checked and counted before
anything is sent upstream, in one atomic step that also reserves an estimate of its tokens;
when it ends, its real usage replaces the estimate.

What the token budget promises: a turn is admitted only while the tokens charged today plus the
estimates held by the user's turns still running are under `tokens_per_day`. Without
concurrency that is the same as checking what was used; with any number of simultaneous
requests, the day's total can exceed the budget only by the last admitted turn (as without
concurrency) plus what running turns use beyond their estimates, never by one turn per request.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable
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


# Characters per token for the input estimate: English averages about four, code and many other
# languages fewer; three errs towards reserving too much.
CHARS_PER_TOKEN = 3
# A reservation outlives its turn's deadline (and one last tool round) by this much before it
# expires: only a turn whose process died, or whose client stopped reading, gets that far.
HOLD_MARGIN_SECONDS = 60.0
# How long a turn may stay pending when no bot is loaded to say (`abandoned_after`): long, since
# the turns are then another process's, whose bots may run longer than the default ones.
NO_BOTS_ABANDONED_SECONDS = 3600.0
# Retry-After when the rest of the budget is held by turns still running: they usually end
# within seconds, and a retry that comes too soon is refused again without reaching the model.
RESERVED_RETRY_SECONDS = 5.0


def estimate_tokens(bot: Bot, text: str) -> int:
    """What a turn reserves of the daily budget at admission: its new message, the system
    prompt's source and the tool definitions at CHARS_PER_TOKEN, plus `model.max_tokens`. It
    leaves out the earlier turns memory sends and any further model request after tool calls;
    the real usage replaces it when the turn ends."""
    chars = len(text) + len(bot.system.source)
    chars += sum(len(json.dumps(tool.to_api())) for tool in bot.tools)
    return math.ceil(chars / CHARS_PER_TOKEN) + bot.model.max_tokens


def hold_seconds(bot: Bot) -> float:
    """How long a reservation lasts if its turn never settles it: the turn's deadline, one more
    round of tools, and a margin."""
    tool_time = max((tool.http.timeout_seconds for tool in bot.tools), default=0.0)
    return bot.retry.timeout_seconds + tool_time + HOLD_MARGIN_SECONDS


def abandoned_after(bots: Iterable[Bot]) -> float:
    """How long a turn of any of `bots` may legitimately stay pending (the longest
    `hold_seconds`): one pending for longer belongs to a process that died, or to a client
    that stopped reading, and `Engine.fail_abandoned_turns` closes it as failed."""
    return max((hold_seconds(bot) for bot in bots), default=NO_BOTS_ABANDONED_SECONDS)


class Limiter:
    """Builds what a limits backend checks (`Admission`) and charges (`TokenCharge`), and
    turns a refusal into the RateLimited a user sees."""

    def __init__(self, backend: LimitStore, *, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.clock = clock

    def admission(self, bot: Bot, user: str, text: str = "") -> Admission | None:
        """What a turn with message `text` must pass; None when the bot sets no per-user
        limits. With a token budget it carries the turn's reservation (a fresh id)."""
        limits = bot.limits.per_user
        if limits.tokens_per_day is None and limits.requests_per_minute is None:
            return None
        now = self.clock()
        if limits.tokens_per_day is None:
            return Admission(bot.name, user, now, "", None, limits.requests_per_minute)
        return Admission(
            bot.name,
            user,
            now,
            utc_day(now),
            limits.tokens_per_day,
            limits.requests_per_minute,
            reserve=estimate_tokens(bot, text),
            reservation=uuid.uuid4().hex,
            hold=hold_seconds(bot),
        )

    def refusal(self, admission: Admission, refused: Refused) -> RateLimited:
        """The RateLimited a user sees for `refused`."""
        if refused.kind == "tokens":
            limit = admission.tokens_per_day or 0
            if refused.used >= limit:
                return _over_budget(limit, admission.now)
            return _held(limit)
        return _too_fast(admission.requests_per_minute or 0, refused.wait)

    async def admit(self, bot: Bot, user: str, text: str = "") -> Admission | None:
        """Check and count one request from `user` to `bot` on its own (the engine does it
        inside `start_turn` instead). Raises RateLimited; returns the admission to `record`
        the turn's usage against."""
        admission = self.admission(bot, user, text)
        if admission is not None:
            refused = await self.backend.admit(admission)
            if refused is not None:
                raise self.refusal(admission, refused)
        return admission

    def charge(
        self, bot: Bot, user: str, usage: Usage, admission: Admission | None = None
    ) -> TokenCharge | None:
        """A turn's real usage (every token the provider reported: the whole prompt, cache
        reads and writes as well as uncached input, and the output; a count it did not report
        adds nothing), charged to the day its admission counted against (today, without one),
        releasing its reservation."""
        tokens = usage.known
        reservation = admission.reservation if admission is not None else ""
        if tokens <= 0 and not reservation:
            return None
        day = admission.day if admission is not None and admission.day else ""
        return TokenCharge(bot.name, user, day or utc_day(self.clock()), tokens, reservation)

    async def record(
        self, bot: Bot, user: str, usage: Usage, admission: Admission | None = None
    ) -> None:
        """Settle a turn on its own (the engine does it inside `complete_turn` instead)."""
        charge = self.charge(bot, user, usage, admission)
        if charge is not None:
            await self.backend.settle(charge)


def _over_budget(tokens_per_day: int, now: float) -> RateLimited:
    wait = seconds_to_utc_midnight(now)
    return RateLimited(
        wait,
        f"You've used today's budget of {tokens_per_day:,} tokens for this "
        f"bot. It resets at midnight UTC, in {describe_wait(wait)}.",
        "tokens",
    )


def _held(tokens_per_day: int) -> RateLimited:
    return RateLimited(
        RESERVED_RETRY_SECONDS,
        f"Your replies still in progress hold the rest of today's budget of "
        f"{tokens_per_day:,} tokens for this bot. Try again when they have finished.",
        "tokens",
    )


def _too_fast(per_minute: int, wait: float) -> RateLimited:
    return RateLimited(
        wait,
        f"You're sending messages too fast: {per_minute} per minute is the limit. "
        f"Try again in {describe_wait(wait)}.",
        "requests",
    )
