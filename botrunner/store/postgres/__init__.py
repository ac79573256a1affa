"""The PostgreSQL store: the same promises as the SQLite one, for several `serve` processes on
one database (`--db postgresql://user@host:5432/dbname`).

* `connect`: the driver (asyncpg, the `botrunner[postgres]` extra), the pool, and one clear
  line for each way connecting can fail.
* `migrations`: versioned, applied at start-up under an advisory lock.
* `conversations`, `limits`: the two halves of the store; `transfer`: `botrunner db copy`.
* `start_turn` / `complete_turn` (here): a turn's start (limit check and count, token
  reservation, conversation, user message, and the memory's read) is ONE statement, so it is
  one transaction and one round trip (with a token budget, behind the user's advisory lock); so is its end (the store remembers what it wrote to the turns it started, which
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
from botrunner.store.postgres.limits import (
    ADMIT_CTES,
    ADMIT_PARAMS,
    PGLimits,
    admit_args,
    numbered,
    refusal,
)
from botrunner.store.postgres.migrations import migrate, schema_version
from botrunner.store.postgres.transfer import PGPortable

# A turn's start: the admission's CTEs (see limits), then the conversation, the turn and the
# user message, written only if `admitted` has a row; then the memory's read: the last @recent
# completed turns (NULL: all; 0: none), only those after the summary when @after_summary.
_START_TURN = numbered(
    f"""
WITH {ADMIT_CTES}, conv AS (
    INSERT INTO conversations AS c (bot, user_id, session, turns, created, updated)
    SELECT @conv_bot, @conv_user, @session, 1, @now, @now FROM admitted
    ON CONFLICT (bot, user_id, session) DO UPDATE SET turns = c.turns + 1, updated = @now
    RETURNING id, turns, summary, summary_upto
), t AS (
    INSERT INTO turns (conversation_id, turn, status, created)
    SELECT id, turns, 'pending', @now FROM conv
), m AS (
    INSERT INTO messages (conversation_id, turn, seq, role, content, text, created)
    SELECT id, turns, 0, 'user', @content, @text, @now FROM conv
)
SELECT conv.id, conv.turns, conv.summary, conv.summary_upto, r.role, r.content
FROM conv LEFT JOIN LATERAL (
    SELECT role, content, turn, seq FROM messages
    WHERE conversation_id = conv.id AND turn IN (
        SELECT turn FROM turns WHERE conversation_id = conv.id AND status = 'ok'
        AND turn < conv.turns AND turn > CASE WHEN @after_summary THEN conv.summary_upto ELSE 0 END
        ORDER BY turn DESC LIMIT @recent)
) AS r ON true
ORDER BY r.turn, r.seq
""",
    [*ADMIT_PARAMS, "conv_bot", "conv_user", "session", "now", "content", "text", "recent",
     "after_summary"],
)  # fmt: skip


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
        if a is not None and a.requests_per_minute is not None and a.requests_per_minute <= 0:
            return Refused("requests", wait=math.inf)
        now, raw = time.time(), json.dumps(content)
        read = 0 if recent is None else (None if recent.count is None else max(recent.count, 0))
        async with self.admitting(a) as c:
            rows = await c.fetch(
                _START_TURN,
                *admit_args(a, now),
                key.bot,
                key.user,
                key.session,
                now,
                raw,
                pg_text(message_text(content)),
                read,
                recent is not None and recent.after_summary,
            )
            if not rows:
                assert a is not None  # only a limit can refuse
                return await refusal(c, a)
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
        return await self.end_turn(conv, turn, status, messages, charge)


__all__ = ["PostgresStore"]
