"""LimitStore over SQLite: the per-user request rate (GCRA) and daily token counters."""

from __future__ import annotations

import math
import sqlite3

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


class SQLiteLimits(SQLiteWriter):
    """The LimitStore half of `SQLiteStore`."""

    async def take_request(self, bot: str, user: str, per_minute: int, now: float) -> float:
        """GCRA with emission interval 60/per_minute and a burst of per_minute; the read and
        the write happen in one job on the writer thread, so concurrent calls cannot race."""
        if per_minute <= 0:
            return math.inf
        interval = 60.0 / per_minute

        def job(c: sqlite3.Connection) -> float:
            row = c.execute(_GET_TAT, (bot, user)).fetchone()
            tat = now if row is None else max(row[0], now)
            new_tat = tat + interval
            allow_at = new_tat - per_minute * interval
            if allow_at - now > 1e-3:  # tolerate float rounding of the accumulated tat
                return allow_at - now
            c.execute(_SET_TAT, (bot, user, new_tat))
            return 0.0

        return await self.call(job, write=True)

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        row = await self.call(lambda c: c.execute(_GET_TOKENS, (bot, user, day)).fetchone())
        return 0 if row is None else int(row[0])

    async def add_tokens(self, bot: str, user: str, day: str, tokens: int) -> None:
        if tokens:
            await self.call(
                lambda c: c.execute(_ADD_TOKENS, (bot, user, day, int(tokens))), write=True
            )
