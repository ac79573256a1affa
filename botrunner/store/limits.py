"""LimitStore over SQLite: the per-user request rate (GCRA) and daily token counters."""

from __future__ import annotations

import math
import sqlite3

from botrunner.store.base import Admission, Refused
from botrunner.store.writer import SQLiteWriter

_GET_TAT = "SELECT tat FROM rate_limits WHERE bot = ? AND user = ?"
_SET_TAT = (
    "INSERT INTO rate_limits (bot, user, tat) VALUES (?, ?, ?) "
    "ON CONFLICT (bot, user) DO UPDATE SET tat = excluded.tat"
)
_GET_TOKENS = "SELECT tokens FROM token_usage WHERE bot = ? AND user = ? AND day = ?"
_ADD_TOKENS = (
    "INSERT INTO token_usage (bot, user, day, tokens) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (bot, user, day) DO UPDATE SET tokens = tokens + excluded.tokens"
)


def take_request(c: sqlite3.Connection, bot: str, user: str, per_minute: int, now: float) -> float:
    """GCRA on the writer thread (see `SQLiteLimits.take_request`): 0.0 when admitted."""
    if per_minute <= 0:
        return math.inf
    interval = 60.0 / per_minute
    row = c.execute(_GET_TAT, (bot, user)).fetchone()
    tat = now if row is None else max(row[0], now)
    new_tat = tat + interval
    allow_at = new_tat - per_minute * interval
    if allow_at - now > 1e-3:  # tolerate float rounding of the accumulated tat
        return allow_at - now
    c.execute(_SET_TAT, (bot, user, new_tat))
    return 0.0


def tokens_used(c: sqlite3.Connection, bot: str, user: str, day: str) -> int:
    row = c.execute(_GET_TOKENS, (bot, user, day)).fetchone()
    return 0 if row is None else int(row[0])


def add_tokens(c: sqlite3.Connection, bot: str, user: str, day: str, tokens: int) -> None:
    if tokens:
        c.execute(_ADD_TOKENS, (bot, user, day, int(tokens)))


def admit(c: sqlite3.Connection, a: Admission) -> Refused | None:
    """The token budget first (a refused request never uses up a request slot), then the
    request rate; None when admitted (and counted)."""
    if a.tokens_per_day is not None:
        used = tokens_used(c, a.bot, a.user, a.day)
        if used >= a.tokens_per_day:
            return Refused("tokens", used=used)
    if a.requests_per_minute is not None:
        wait = take_request(c, a.bot, a.user, a.requests_per_minute, a.now)
        if wait > 0:
            return Refused("requests", wait=wait)
    return None


class SQLiteLimits(SQLiteWriter):
    """The LimitStore half of `SQLiteStore`."""

    async def take_request(self, bot: str, user: str, per_minute: int, now: float) -> float:
        """GCRA with emission interval 60/per_minute and a burst of per_minute; the read and
        the write happen in one job on the writer thread, so concurrent calls cannot race."""
        if per_minute <= 0:
            return math.inf
        return await self.call(lambda c: take_request(c, bot, user, per_minute, now), write=True)

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        return await self.call(lambda c: tokens_used(c, bot, user, day))

    async def add_tokens(self, bot: str, user: str, day: str, tokens: int) -> None:
        if tokens:
            await self.call(lambda c: add_tokens(c, bot, user, day, tokens), write=True)
