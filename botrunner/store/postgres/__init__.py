"""The PostgreSQL store: the same promises as the SQLite one, for several `serve` processes on
one database (`--db postgresql://user@host:5432/dbname`).

* `connect`: the driver (asyncpg, the `botrunner[postgres]` extra), the pool, and one clear
  line for each way connecting can fail.
* `migrations`: versioned, applied at start-up under an advisory lock.
* `conversations`, `limits`: the two halves of the store; `transfer`: `botrunner db copy`.
* `start_turn` / `complete_turn` (here): a turn's start (limit check and count, conversation,
  user message, and the memory's read) is ONE statement, so it is one transaction and one
  round trip; so is its end (the store remembers what it wrote to the turns it started, which
  decides whether a turn may be `ok`; otherwise it reads that first). A statement returns only once committed
  (`synchronous_commit`, on by default, makes that durable), so a started turn is durable as
  soon as it is handed back.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

from botrunner.events import Usage
from botrunner.store.base import (
    Admission,
    Conversation,
    ConversationKey,
    RecentTurns,
    Refused,
    StartedTurn,
    TokenCharge,
    TurnStatus,
)
from botrunner.store.messages import message_text, wire
from botrunner.store.postgres.connect import Target, driver
from botrunner.store.postgres.conversations import PGConversations, conversation, pg_text
from botrunner.store.postgres.limits import TOLERANCE, PGLimits
from botrunner.store.postgres.migrations import migrate, schema_version
from botrunner.store.postgres.transfer import PGPortable

# $1 bot, $2 user, $3 session, $4 now, $5 content, $6 text, $7 GCRA interval (NULL: no rate
# limit), $8 requests per minute, $9 tokens per day (NULL: no budget), $10 UTC day,
# $11 how many earlier completed turns to read (NULL: all), $12 only those after the summary,
# $13 the limiter's clock.
# Nothing is written unless `admitted` has a row: the budget first (a refused request never
# uses up a request slot), then the rate, whose upsert locks the user's row (see limits).
_START_TURN = f"""
WITH budget AS (
    SELECT $9::bigint IS NULL OR coalesce((SELECT tokens FROM token_usage
        WHERE bot = $1 AND user_id = $2 AND day = $10), 0) < $9::bigint AS ok
), rate AS (
    INSERT INTO rate_limits (bot, user_id, tat)
    SELECT $1, $2, $13::float8 + $7::float8 FROM budget WHERE ok AND $7::float8 IS NOT NULL
    ON CONFLICT (bot, user_id) DO UPDATE SET tat = greatest(rate_limits.tat, $13) + $7
    WHERE greatest(rate_limits.tat, $13) + $7 - $8::float8 * $7 - $13 <= {TOLERANCE}
    RETURNING 1
), admitted AS (
    SELECT 1 FROM budget WHERE ok AND ($7::float8 IS NULL OR EXISTS (SELECT 1 FROM rate))
), conv AS (
    INSERT INTO conversations AS c (bot, user_id, session, turns, created, updated)
    SELECT $1, $2, $3, 1, $4, $4 FROM admitted
    ON CONFLICT (bot, user_id, session) DO UPDATE SET turns = c.turns + 1, updated = $4
    RETURNING id, turns, summary, summary_upto
), t AS (
    INSERT INTO turns (conversation_id, turn, status, created)
    SELECT id, turns, 'pending', $4 FROM conv
), m AS (
    INSERT INTO messages (conversation_id, turn, seq, role, content, text, created)
    SELECT id, turns, 0, 'user', $5, $6, $4 FROM conv
)
SELECT conv.id, conv.turns, conv.summary, conv.summary_upto, r.role, r.content
FROM conv LEFT JOIN LATERAL (
    SELECT role, content, turn, seq FROM messages
    WHERE conversation_id = conv.id AND turn IN (
        SELECT turn FROM turns WHERE conversation_id = conv.id AND status = 'ok'
        AND turn < conv.turns AND turn > CASE WHEN $12 THEN conv.summary_upto ELSE 0 END
        ORDER BY turn DESC LIMIT $11)
) AS r ON true
ORDER BY r.turn, r.seq
"""


class PostgresStore(PGConversations, PGLimits, PGPortable):
    """ConversationStore, LimitStore and TurnStore over PostgreSQL (see the module docstring)."""

    def __init__(self, url: str) -> None:
        driver()  # a missing extra is said before anything else
        self.target = Target(url)
        self.migrated = 0  # migrations applied by `start`
        self._open_turns = {}

    async def start(self) -> None:
        if self._pool is not None:
            return
        self._pool = await self.target.pool()
        try:
            async with self._pool.acquire() as c:
                self.migrated = await migrate(c)
        except driver().exceptions.PostgresError as exc:
            raise self.target.explain(exc) from exc

    async def schema_version(self) -> int:
        async with self.db.acquire() as c:
            return await schema_version(c)

    async def close(self) -> None:
        """Wait for the calls in flight (10 s at most), then close every connection."""
        pool, self._closed = self._pool, True
        if pool is not None and not pool.is_closing():
            try:
                await asyncio.wait_for(asyncio.shield(pool.close()), 10)
            except TimeoutError:
                pool.terminate()

    async def start_turn(
        self,
        key: ConversationKey,
        content: list[dict[str, Any]],
        admission: Admission | None,
        recent: RecentTurns | None = None,
    ) -> StartedTurn | Refused:
        a = admission
        per_minute = a.requests_per_minute if a is not None else None
        if per_minute is not None and per_minute <= 0:
            return Refused("requests", wait=math.inf)
        now, raw = time.time(), json.dumps(content)
        rows = await self.db.fetch(
            _START_TURN,
            key.bot,
            key.user,
            key.session,
            now,
            raw,
            pg_text(message_text(content)),
            60.0 / per_minute if per_minute else None,
            float(per_minute or 0),
            a.tokens_per_day if a is not None else None,
            a.day if a is not None else "",
            0 if recent is None else (None if recent.count is None else max(recent.count, 0)),
            recent is not None and recent.after_summary,
            a.now if a is not None else now,
        )
        if not rows:
            assert a is not None  # only a limit can refuse
            return await self.refusal(a)
        conv = conversation(key, rows[0])
        self.remember(conv.id, conv.turns, "user", raw)
        messages = (
            None if recent is None else wire([(r[4], r[5]) for r in rows if r[4] is not None])
        )
        durable = asyncio.get_running_loop().create_future()
        durable.set_result(None)  # the statement returned: it is committed
        return StartedTurn(conv, conv.turns, messages, durable)

    async def complete_turn(
        self,
        conv: Conversation,
        turn: int,
        status: TurnStatus,
        messages: list[tuple[str, list[dict[str, Any]], Usage | None]],
        charge: TokenCharge | None = None,
    ) -> TurnStatus:
        if status not in ("ok", "error", "stopped"):
            raise ValueError(f"not a final turn status: {status!r}")
        tokens = None if charge is None else (charge.bot, charge.user, charge.day, charge.tokens)
        return await self.end_turn(conv, turn, status, messages, tokens)


__all__ = ["PostgresStore"]
