"""LimitStore over SQLite: the per-user request rate (GCRA), daily token counters and the token
reservations of turns still running.

Each function runs on the writer thread inside one job, so a check and its count (or a charge
and its release) are atomic: `SQLiteStore.start_turn` runs `admit` in the same job as storing
the user message, `complete_turn` runs `settle` with the reply.
"""

from __future__ import annotations

import math
import sqlite3

from botrunner.store.base import Admission, Refused, TokenCharge
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
# Every admission sweeps every expired reservation (an index range that is empty unless a
# process died mid-turn), so the table never holds more than the turns in flight.
_SWEEP = "DELETE FROM token_reservations WHERE expires <= ?"
_RESERVED = (
    "SELECT COALESCE(SUM(tokens), 0) FROM token_reservations WHERE bot = ? AND user = ? AND day = ?"
)
_RESERVE = (
    "INSERT INTO token_reservations (id, bot, user, day, tokens, expires) VALUES (?, ?, ?, ?, ?, ?)"
)
_RELEASE = "DELETE FROM token_reservations WHERE id = ?"


def take_request(c: sqlite3.Connection, bot: str, user: str, per_minute: int, now: float) -> float:
    """GCRA with emission interval 60/per_minute and a burst of per_minute: 0.0 when admitted
    (and counted), else the seconds until a request would be."""
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


def admit(c: sqlite3.Connection, a: Admission) -> Refused | None:
    """The token budget first (a refused request never uses up a request slot), then the
    request rate, then the reservation; None when admitted (and counted)."""
    if a.tokens_per_day is not None:
        c.execute(_SWEEP, (a.now,))
        used = tokens_used(c, a.bot, a.user, a.day)
        (reserved,) = c.execute(_RESERVED, (a.bot, a.user, a.day)).fetchone()
        if used + reserved >= a.tokens_per_day:
            return Refused("tokens", used=used, reserved=int(reserved))
    if a.requests_per_minute is not None:
        wait = take_request(c, a.bot, a.user, a.requests_per_minute, a.now)
        if wait > 0:
            return Refused("requests", wait=wait)
    if a.tokens_per_day is not None and a.reservation and a.reserve > 0:
        c.execute(_RESERVE, (a.reservation, a.bot, a.user, a.day, a.reserve, a.now + a.hold))
    return None


def settle(c: sqlite3.Connection, charge: TokenCharge) -> None:
    if charge.reservation:
        c.execute(_RELEASE, (charge.reservation,))
    if charge.tokens:
        c.execute(_ADD_TOKENS, (charge.bot, charge.user, charge.day, int(charge.tokens)))


class SQLiteLimits(SQLiteWriter):
    """The LimitStore half of `SQLiteStore`."""

    async def admit(self, admission: Admission) -> Refused | None:
        return await self.call(lambda c: admit(c, admission), write=True)

    async def settle(self, charge: TokenCharge) -> None:
        await self.call(lambda c: settle(c, charge), write=True)

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        return await self.call(lambda c: tokens_used(c, bot, user, day))

    async def ping(self) -> None:
        await self.call(lambda c: c.execute("SELECT 1").fetchone())
