"""LimitStore over PostgreSQL: the per-user request rate (GCRA), daily token counters and the
token reservations of turns still running.

Admission is ONE statement (`ADMIT`, also the first part of `PostgresStore.start_turn`): the
budget (tokens charged today plus those reserved by running turns), then the rate, then the
reservation, each step only if the previous admitted. The rate's `INSERT ... ON CONFLICT DO
UPDATE ... WHERE` locks the user's row, so concurrent requests from any number of processes
queue on it and each sees the count the previous one left. A budget is a sum over rows, which
no row lock covers: with a budget, the statement runs after a transaction-level advisory lock
on (bot, user), so each admission reads what the previous one reserved.
"""

from __future__ import annotations

import contextlib
import math
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any

from botrunner.store.base import Admission, Refused, StoreClosed, TokenCharge

# float rounding of the accumulated tat (as in the SQLite store)
TOLERANCE = 1e-3
# The advisory lock class of per-user admissions (the two-key lock space; migrations use the
# one-key space, which never overlaps it).
_LOCK_CLASS = 0x6272_6C6D  # "brlm"

ADMIT_PARAMS = [
    "bot", "user", "day", "clock", "interval", "per_minute", "budget", "reservation", "reserve",
    "hold",
]  # fmt: skip
# The CTEs every admission runs; `admitted` has a row when it passed (and was counted).
ADMIT_CTES = f"""
sweep AS (
    DELETE FROM token_reservations
    WHERE @budget::bigint IS NOT NULL AND expires <= @clock::float8
), budget AS (
    SELECT @budget::bigint IS NULL
        OR coalesce((SELECT tokens FROM token_usage
                     WHERE bot = @bot AND user_id = @user AND day = @day), 0)
         + coalesce((SELECT sum(tokens) FROM token_reservations
                     WHERE bot = @bot AND user_id = @user AND day = @day
                     AND expires > @clock::float8), 0) < @budget::bigint AS ok
), rate AS (
    INSERT INTO rate_limits (bot, user_id, tat)
    SELECT @bot, @user, @clock::float8 + @interval::float8 FROM budget
    WHERE ok AND @interval::float8 IS NOT NULL
    ON CONFLICT (bot, user_id) DO UPDATE SET tat = greatest(rate_limits.tat, @clock) + @interval
    WHERE greatest(rate_limits.tat, @clock) + @interval - @per_minute::float8 * @interval
        - @clock <= {TOLERANCE}
    RETURNING 1
), admitted AS (
    SELECT 1 FROM budget WHERE ok AND (@interval::float8 IS NULL OR EXISTS (SELECT 1 FROM rate))
), reserve AS (
    INSERT INTO token_reservations (id, bot, user_id, day, tokens, expires)
    SELECT @reservation, @bot, @user, @day, @reserve::bigint, @clock::float8 + @hold::float8
    FROM admitted
    WHERE @budget::bigint IS NOT NULL AND @reservation <> '' AND @reserve::bigint > 0
)"""


def numbered(sql: str, names: list[str]) -> str:
    """`sql` with each `@name` replaced by its positional parameter (`$n`, n from `names`)."""
    return re.sub(r"@([a-z_]+)", lambda m: f"${names.index(m.group(1)) + 1}", sql)


def admit_args(a: Admission | None, now: float) -> list[Any]:
    """ADMIT_PARAMS' values for `a` (None: no limits, always admitted)."""
    if a is None:
        return ["", "", "", now, None, 0.0, None, "", 0, 0.0]
    per_minute = a.requests_per_minute
    return [
        a.bot,
        a.user,
        a.day,
        a.now,
        60.0 / per_minute if per_minute else None,
        float(per_minute or 0),
        a.tokens_per_day,
        a.reservation,
        a.reserve,
        a.hold,
    ]


_ADMIT = numbered(f"WITH {ADMIT_CTES} SELECT count(*) FROM admitted", ADMIT_PARAMS)
_TAT = "SELECT tat FROM rate_limits WHERE bot = $1 AND user_id = $2"
_TOKENS = "SELECT tokens FROM token_usage WHERE bot = $1 AND user_id = $2 AND day = $3"
_RESERVED = (
    "SELECT coalesce(sum(tokens), 0) FROM token_reservations "
    "WHERE bot = $1 AND user_id = $2 AND day = $3 AND expires > $4"
)
# Release a reservation and charge the real tokens, in one statement ($1..$5).
SETTLE_CTES = """
released AS (DELETE FROM token_reservations WHERE id = @reservation AND @reservation <> ''),
charged AS (
    INSERT INTO token_usage (bot, user_id, day, tokens)
    SELECT @bot, @user, @day, @tokens::bigint WHERE @tokens::bigint > 0
    ON CONFLICT (bot, user_id, day) DO UPDATE SET tokens = token_usage.tokens + excluded.tokens
)"""
SETTLE_PARAMS = ["bot", "user", "day", "tokens", "reservation"]
_SETTLE = numbered(f"WITH {SETTLE_CTES} SELECT 1", SETTLE_PARAMS)


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

    @contextlib.asynccontextmanager
    async def admitting(self, a: Admission | None) -> AsyncIterator[Any]:
        """A connection to admit `a` on: with a token budget, inside a transaction holding
        the user's advisory lock (see the module docstring)."""
        async with self.db.acquire() as c:
            if a is None or a.tokens_per_day is None:
                yield c
                return
            key = zlib.crc32(f"{a.bot}\x00{a.user}".encode()) - 2**31
            # BEGIN and the lock in one round trip: the lock is held until COMMIT, and the
            # next admission of the same user waits for it, so every round trip counts.
            await c.execute(f"BEGIN; SELECT pg_advisory_xact_lock({_LOCK_CLASS}, {key})")
            try:
                yield c
            except BaseException:
                with contextlib.suppress(Exception):  # else the pool resets the connection
                    await c.execute("ROLLBACK")
                raise
            await c.execute("COMMIT")

    async def admit(self, admission: Admission) -> Refused | None:
        """Check and count `admission` atomically: budget, rate, then the reservation."""
        a = admission
        if a.requests_per_minute is not None and a.requests_per_minute <= 0:
            return Refused("requests", wait=math.inf)
        async with self.admitting(a) as c:
            if await c.fetchval(_ADMIT, *admit_args(a, a.now)):
                return None
            return await refusal(c, a)

    async def settle(self, charge: TokenCharge) -> None:
        c = charge
        await self.db.execute(_SETTLE, c.bot, c.user, c.day, int(c.tokens), c.reservation)

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        return int(await self.db.fetchval(_TOKENS, bot, user, day) or 0)

    async def ping(self) -> None:
        await self.db.fetchval("SELECT 1")


async def refusal(c: Any, a: Admission) -> Refused:
    """Why an admission was refused (on its connection, still holding its lock if any): the
    budget, else the rate."""
    if a.tokens_per_day is not None:
        used = int(await c.fetchval(_TOKENS, a.bot, a.user, a.day) or 0)
        reserved = int(await c.fetchval(_RESERVED, a.bot, a.user, a.day, a.now))
        if used + reserved >= a.tokens_per_day:
            return Refused("tokens", used=used, reserved=reserved)
    tat = await c.fetchval(_TAT, a.bot, a.user)
    per_minute = a.requests_per_minute or 1
    return Refused("requests", wait=max(wait_for(tat, per_minute, a.now), TOLERANCE))
