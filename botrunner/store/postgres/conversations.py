"""ConversationStore over PostgreSQL: conversations, their turns (written by `turns`), search
and the running summary.

The same shape as the SQLite store (a turn counter on the conversation, a partial index over
completed turns, messages keyed by `(conversation_id, turn, seq)`), with `json` content kept
exactly as sent, and a generated `tsvector` column with a GIN index for `search_turns`. Each
method is one statement where it can be (one round trip, atomic without an explicit
transaction); asyncpg prepares each statement once per connection.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botrunner.events import Usage
from botrunner.store.base import Conversation, ConversationKey, StoredMessage
from botrunner.store.messages import message_text, search_terms, wire
from botrunner.store.postgres.turns import PGTurns, pg_text

_FIND = (
    "SELECT id, turns, summary, summary_upto FROM conversations "
    "WHERE bot = $1 AND user_id = $2 AND session = $3"
)
_CREATE = (
    "INSERT INTO conversations (bot, user_id, session, created, updated) "
    "VALUES ($1, $2, $3, $4, $4) "
    "ON CONFLICT (bot, user_id, session) DO UPDATE SET updated = conversations.updated "
    "RETURNING id, turns, summary, summary_upto"
)
_BEGIN_TURN = (
    "WITH conv AS (UPDATE conversations SET turns = turns + 1, updated = $2 WHERE id = $1 "
    "  RETURNING id, turns), "
    "t AS (INSERT INTO turns (conversation_id, turn, status, created) "
    "  SELECT id, turns, 'pending', $2 FROM conv), "
    "m AS (INSERT INTO messages (conversation_id, turn, seq, role, content, text, created) "
    "  SELECT id, turns, 0, 'user', $3, $4, $2 FROM conv) "
    "SELECT turns FROM conv"
)
_LAST_OK = (
    "SELECT turn FROM turns WHERE conversation_id = $1 AND status = 'ok' "
    "AND turn < $2 AND turn > $3 ORDER BY turn DESC LIMIT $4"
)
_RECENT = (
    "SELECT role, content FROM messages WHERE conversation_id = $1 AND turn IN ("
    + _LAST_OK
    + ") ORDER BY turn, seq"
)
_TURNS = (
    "SELECT m.role, m.content FROM messages AS m JOIN turns AS t "
    "ON t.conversation_id = m.conversation_id AND t.turn = m.turn "
    "WHERE m.conversation_id = $1 AND m.turn = ANY($2::int[]) AND t.status = 'ok' "
    "ORDER BY m.turn, m.seq"
)
# Ranked like FTS5's BM25 in the SQLite store: a turn scores as its best message.
_SEARCH = (
    "SELECT m.turn FROM messages AS m JOIN turns AS t "
    "ON t.conversation_id = m.conversation_id AND t.turn = m.turn, "
    "to_tsquery('english', $2) AS q "
    "WHERE m.conversation_id = $1 AND m.turn < $3 AND t.status = 'ok' AND m.search @@ q "
    "GROUP BY m.turn ORDER BY max(ts_rank(m.search, q)) DESC, m.turn LIMIT $4"
)
_SET_SUMMARY = (
    "UPDATE conversations SET summary = $1, summary_upto = $2, updated = $3 "
    "WHERE id = $4 AND summary_upto < $2"
)
_HISTORY = (
    "SELECT m.turn, m.role, m.content, t.status, m.created, m.input_tokens, m.output_tokens "
    "FROM conversations AS c JOIN messages AS m ON m.conversation_id = c.id "
    "JOIN turns AS t ON t.conversation_id = m.conversation_id AND t.turn = m.turn "
    "WHERE c.bot = $1 AND c.user_id = $2 AND c.session = $3 ORDER BY m.turn, m.seq"
)
_DELETE = "DELETE FROM conversations WHERE bot = $1 AND user_id = $2 AND session = $3 RETURNING id"


def bounds(count: int | None, before: int | None, after: int | None) -> tuple[int, int, Any]:
    """(before, after, limit) for _LAST_OK: no bound is a bound nothing reaches; LIMIT NULL
    is no limit."""
    return (
        2**31 - 1 if before is None else before,
        0 if after is None else after,
        None if count is None else max(count, 0),
    )


def conversation(key: ConversationKey, row: Any) -> Conversation:
    return Conversation(id=row[0], key=key, turns=row[1], summary=row[2], summary_upto=row[3])


class PGConversations(PGTurns):
    """The ConversationStore half of `PostgresStore` (with `PGTurns`)."""

    async def find(self, key: ConversationKey) -> Conversation | None:
        row = await self.db.fetchrow(_FIND, key.bot, key.user, key.session)
        return None if row is None else conversation(key, row)

    async def open(self, key: ConversationKey) -> Conversation:
        found = await self.find(key)
        if found is not None:
            return found
        row = await self.db.fetchrow(_CREATE, key.bot, key.user, key.session, time.time())
        return conversation(key, row)

    async def begin_turn(self, conv: Conversation, content: list[dict[str, Any]]) -> int:
        raw, text = json.dumps(content), pg_text(message_text(content))
        turn = await self.db.fetchval(_BEGIN_TURN, conv.id, time.time(), raw, text)
        if turn is None:
            raise KeyError(f"conversation {conv.id} no longer exists")
        self.remember(conv.id, turn, "user", raw)
        conv.turns = max(conv.turns, turn)
        return turn

    async def recent_turns(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        return wire(await self.db.fetch(_RECENT, conv.id, *bounds(count, before, after)))

    async def turn_numbers(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[int]:
        rows = await self.db.fetch(_LAST_OK, conv.id, *bounds(count, before, after))
        return [row[0] for row in reversed(rows)]

    async def turns(self, conv: Conversation, numbers: list[int]) -> list[dict[str, Any]]:
        if not numbers:
            return []
        return wire(await self.db.fetch(_TURNS, conv.id, sorted(set(numbers))))

    async def search_turns(
        self, conv: Conversation, query: str, *, before: int, limit: int
    ) -> list[int]:
        terms = search_terms(query)
        if not terms or limit <= 0:
            return []
        rows = await self.db.fetch(_SEARCH, conv.id, " | ".join(terms), before, limit)
        return [row[0] for row in rows]

    async def set_summary(self, conv: Conversation, summary: str, upto: int) -> None:
        changed = await self.db.execute(_SET_SUMMARY, pg_text(summary), upto, time.time(), conv.id)
        if changed != "UPDATE 0":
            conv.summary, conv.summary_upto = summary, upto

    async def history(self, key: ConversationKey) -> list[StoredMessage]:
        rows = await self.db.fetch(_HISTORY, key.bot, key.user, key.session)
        return [
            StoredMessage(
                turn=turn,
                role=role,
                content=json.loads(content),
                status=status,
                created=created,
                usage=None if tin is None and tout is None else Usage(tin, tout),
            )
            for turn, role, content, status, created, tin, tout in rows
        ]

    async def delete(self, key: ConversationKey) -> bool:
        # ON DELETE CASCADE removes the turns, then their messages (and search entries).
        return await self.db.fetchval(_DELETE, key.bot, key.user, key.session) is not None
