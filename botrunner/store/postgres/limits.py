"""LimitStore over PostgreSQL: the per-user request rate (GCRA) and daily token counters.

The check-and-count is ONE statement: `INSERT ... ON CONFLICT DO UPDATE ... WHERE` locks the
user's row, so concurrent requests from any number of processes queue on that lock and each
sees the count the previous one left (READ COMMITTED re-reads the row after the wait).
`PostgresStore.start_turn` runs the same statement as the first step of a turn's start.
"""

from __future__ import annotations

import math
from typing import Any

from botrunner.store.base import Admission, Refused, StoreClosed

# float rounding of the accumulated tat (as in the SQLite store)
TOLERANCE = 1e-3

# $1 bot, $2 user, $3 now, $4 interval (60 / per minute), $5 per minute
TAKE_REQUEST = (
    "INSERT INTO rate_limits (bot, user_id, tat) VALUES ($1, $2, $3::float8 + $4::float8) "
    "ON CONFLICT (bot, user_id) DO UPDATE SET tat = greatest(rate_limits.tat, $3) + $4 "
    f"WHERE greatest(rate_limits.tat, $3) + $4 - $5::float8 * $4 - $3 <= {TOLERANCE} "
    "RETURNING tat"
)
_TAT = "SELECT tat FROM rate_limits WHERE bot = $1 AND user_id = $2"
_TOKENS = "SELECT tokens FROM token_usage WHERE bot = $1 AND user_id = $2 AND day = $3"
ADD_TOKENS = (
    "INSERT INTO token_usage (bot, user_id, day, tokens) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (bot, user_id, day) DO UPDATE SET tokens = token_usage.tokens + excluded.tokens"
)


def wait_for(tat: float | None, per_minute: int, now: float) -> float:
    """Seconds until GCRA admits a request, given the stored theoretical arrival time."""
    interval = 60.0 / per_minute
    allow_at = max(tat if tat is not None else now, now) + interval - per_minute * interval
    return allow_at - now


class PGPool:
    """The pool the store's halves share."""

    _pool: Any = None
    _closed: bool = False
    # (conversation id, turn) -> (role, content JSON) of the pending turns this store wrote
    _open_turns: dict[tuple[int, int], list[tuple[str, str]]]

    @property
    def db(self) -> Any:
        """The asyncpg pool; StoreClosed once the store is closed (or before `start`)."""
        if self._closed or self._pool is None:
            raise StoreClosed("the store is closed" if self._closed else "the store is not started")
        return self._pool


class PGLimits(PGPool):
    """The LimitStore half of `PostgresStore`."""

    async def take_request(self, bot: str, user: str, per_minute: int, now: float) -> float:
        """GCRA with emission interval 60/per_minute and a burst of per_minute, checked and
        counted in one statement (see the module docstring)."""
        if per_minute <= 0:
            return math.inf
        interval = 60.0 / per_minute
        if await self.db.fetchval(TAKE_REQUEST, bot, user, now, interval, per_minute) is not None:
            return 0.0
        return max(wait_for(await self.db.fetchval(_TAT, bot, user), per_minute, now), TOLERANCE)

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        return int(await self.db.fetchval(_TOKENS, bot, user, day) or 0)

    async def add_tokens(self, bot: str, user: str, day: str, tokens: int) -> None:
        if tokens:
            await self.db.execute(ADD_TOKENS, bot, user, day, int(tokens))

    async def refusal(self, a: Admission) -> Refused:
        """Why `start_turn`'s statement admitted nothing: the budget, else the rate."""
        async with self.db.acquire() as c:
            used = int(await c.fetchval(_TOKENS, a.bot, a.user, a.day) or 0)
            if a.tokens_per_day is not None and used >= a.tokens_per_day:
                return Refused("tokens", used=used)
            tat = await c.fetchval(_TAT, a.bot, a.user)
        per_minute = a.requests_per_minute or 1
        return Refused("requests", wait=max(wait_for(tat, per_minute, a.now), TOLERANCE))
