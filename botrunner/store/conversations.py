"""ConversationStore over SQLite: conversations, their turns and messages, search and the
running summary.

Every statement on the per-turn path is an indexed lookup bounded by what the memory policy
sends: `conversations.turns` is a counter (no COUNT(*)), the last N completed turns come from a
partial index over `status = 'ok'`, and messages are read by `(conversation_id, turn)`.
Statements are written once as constants and reused, so the sqlite3 statement cache keeps them
prepared.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from botrunner.events import Usage
from botrunner.store.base import (
    Conversation,
    ConversationKey,
    RecentTurns,
    StoredMessage,
    TurnStatus,
)
from botrunner.store.messages import fts_query, message_text, wire
from botrunner.store.turns import add_message, begin_turn, finish_turn, message_row
from botrunner.store.writer import SQLiteWriter

log = logging.getLogger("botrunner.store")

_NO_BOUND_ABOVE = 2**62
_FINAL_STATUSES = ("ok", "error", "stopped")

_FIND = (
    "SELECT id, turns, summary, summary_upto FROM conversations "
    "WHERE bot = ? AND user = ? AND session = ?"
)
_CREATE = (
    "INSERT INTO conversations (bot, user, session, created, updated) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (bot, user, session) DO UPDATE SET updated = updated "
    "RETURNING id, turns, summary, summary_upto"
)
# The turns of processes that died: found through the partial index over pending turns, so
# the sweep never reads the whole table.
_FAIL_ABANDONED = (
    "UPDATE turns INDEXED BY turns_pending SET status = 'error', finished = ?1 "
    "WHERE status = 'pending' AND created < ?2"
)
_LAST_OK = (
    "SELECT turn FROM turns INDEXED BY turns_ok WHERE conversation_id = ?1 AND status = 'ok' "
    "AND turn < ?2 AND turn > ?3 ORDER BY turn DESC LIMIT ?4"
)
_RECENT = (
    "SELECT role, content FROM messages WHERE conversation_id = ?1 AND turn IN ("
    + _LAST_OK
    + ") ORDER BY turn, seq"
)
_TURNS = (
    "SELECT m.role, m.content FROM messages AS m "
    "JOIN turns AS t ON t.conversation_id = m.conversation_id AND t.turn = m.turn "
    "WHERE m.conversation_id = ?1 AND m.turn IN (SELECT value FROM json_each(?2)) "
    "AND t.status = 'ok' ORDER BY m.turn, m.seq"
)
_SEARCH = (
    "WITH hits AS MATERIALIZED ("
    "  SELECT rowid AS id, bm25(messages_fts, 1.0, 0.0) AS score FROM messages_fts "
    "  WHERE messages_fts MATCH ?1) "
    "SELECT m.turn, MIN(hits.score) AS best FROM hits "
    "CROSS JOIN messages AS m ON m.id = hits.id "  # CROSS: the hits drive, not the transcript
    "CROSS JOIN turns AS t ON t.conversation_id = m.conversation_id AND t.turn = m.turn "
    "WHERE m.conversation_id = ?2 AND m.turn < ?3 AND t.status = 'ok' "
    "GROUP BY m.turn ORDER BY best, m.turn LIMIT ?4"
)
_SET_SUMMARY = (
    "UPDATE conversations SET summary = ?, summary_upto = ?, updated = ? "
    "WHERE id = ? AND summary_upto < ?"
)
_HISTORY = (
    "SELECT m.turn, m.role, m.content, t.status, m.created, m.input_tokens, m.output_tokens, "
    "m.cache_read_tokens, m.cache_write_tokens "
    "FROM messages AS m "
    "JOIN turns AS t ON t.conversation_id = m.conversation_id AND t.turn = m.turn "
    "WHERE m.conversation_id = ? ORDER BY m.turn, m.seq"
)


def _find_id(c: sqlite3.Connection, key: ConversationKey) -> int | None:
    row = c.execute(_FIND, (key.bot, key.user, key.session)).fetchone()
    return None if row is None else row[0]


def _bounds(count: int | None, before: int | None, after: int | None) -> tuple[int, int, int]:
    return (
        _NO_BOUND_ABOVE if before is None else before,
        0 if after is None else after,
        -1 if count is None else max(count, 0),
    )


def recent(
    c: sqlite3.Connection, conv: Conversation, turn: int, spec: RecentTurns
) -> list[dict[str, Any]]:
    """`spec`'s messages before `turn`, as `recent_turns` returns them."""
    if spec.count == 0:
        return []
    bounds = _bounds(spec.count, turn, spec.after(conv, turn))
    return wire(c.execute(_RECENT, (conv.id, *bounds)).fetchall())


def open_conversation(c: sqlite3.Connection, key: ConversationKey, now: float) -> Conversation:
    row = c.execute(_FIND, (key.bot, key.user, key.session)).fetchone()
    if row is None:
        row = c.execute(_CREATE, (key.bot, key.user, key.session, now, now)).fetchall()[0]
    return Conversation(id=row[0], key=key, turns=row[1], summary=row[2], summary_upto=row[3])


class SQLiteConversations(SQLiteWriter):
    """The ConversationStore half of `SQLiteStore`."""

    @staticmethod
    def _conversation(key: ConversationKey, row: tuple[Any, ...]) -> Conversation:
        return Conversation(id=row[0], key=key, turns=row[1], summary=row[2], summary_upto=row[3])

    async def find(self, key: ConversationKey) -> Conversation | None:
        row = await self.call(
            lambda c: c.execute(_FIND, (key.bot, key.user, key.session)).fetchone()
        )
        return None if row is None else self._conversation(key, row)

    async def open(self, key: ConversationKey) -> Conversation:
        found = await self.find(key)  # the common case: a read, no write transaction
        if found is not None:
            return found
        now = time.time()
        row = await self.call(
            lambda c: c.execute(_CREATE, (key.bot, key.user, key.session, now, now)).fetchall()[0],
            write=True,
        )
        return self._conversation(key, row)

    async def begin_turn(self, conv: Conversation, content: list[dict[str, Any]]) -> int:
        raw, text, now = json.dumps(content), message_text(content), time.time()
        turn = await self.call(lambda c: begin_turn(c, conv.id, raw, text, now), write=True)
        conv.turns = max(conv.turns, turn)
        return turn

    async def add_message(
        self,
        conv: Conversation,
        turn: int,
        role: str,
        content: list[dict[str, Any]],
        usage: Usage | None = None,
    ) -> None:
        row = message_row(role, content, usage)
        await self.call(lambda c: add_message(c, conv.id, turn, row), write=True)

    async def finish_turn(self, conv: Conversation, turn: int, status: TurnStatus) -> TurnStatus:
        """Mark a turn finished and return the status stored. A turn is only stored as `ok` if
        it is a complete, valid exchange (user first, roles alternating, every tool_use
        answered, ending with an assistant reply), so a completed turn can always be sent back
        to the model; otherwise it is stored as `error` (and a warning logged)."""
        if status not in _FINAL_STATUSES:
            raise ValueError(f"not a final turn status: {status!r}")
        now = time.time()
        return await self.call(lambda c: finish_turn(c, conv.id, turn, status, now), write=True)

    async def recent_turns(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        args = (conv.id, *_bounds(count, before, after))
        return await self.call(lambda c: wire(c.execute(_RECENT, args).fetchall()))

    async def turn_numbers(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[int]:
        args = (conv.id, *_bounds(count, before, after))
        rows = await self.call(lambda c: c.execute(_LAST_OK, args).fetchall())
        return [row[0] for row in reversed(rows)]

    async def turns(self, conv: Conversation, numbers: list[int]) -> list[dict[str, Any]]:
        if not numbers:
            return []
        args = (conv.id, json.dumps(sorted(set(numbers))))
        return await self.call(lambda c: wire(c.execute(_TURNS, args).fetchall()))

    async def search_turns(
        self, conv: Conversation, query: str, *, before: int, limit: int
    ) -> list[int]:
        match = fts_query(conv.id, query)
        if match is None or limit <= 0:
            return []
        args = (match, conv.id, before, limit)
        rows = await self.call(lambda c: c.execute(_SEARCH, args).fetchall())
        return [row[0] for row in rows]

    async def set_summary(self, conv: Conversation, summary: str, upto: int) -> None:
        now = time.time()
        args = (summary, upto, now, conv.id, upto)
        changed = await self.call(lambda c: c.execute(_SET_SUMMARY, args).rowcount, write=True)
        if changed:
            conv.summary, conv.summary_upto = summary, upto

    async def history(self, key: ConversationKey) -> list[StoredMessage]:
        def job(c: sqlite3.Connection) -> list[tuple[Any, ...]]:
            conv_id = _find_id(c, key)
            return [] if conv_id is None else c.execute(_HISTORY, (conv_id,)).fetchall()

        return [
            StoredMessage(
                turn=turn,
                role=role,
                content=json.loads(content),
                status=status,
                created=created,
                usage=None if tin is None and tout is None else Usage(tin, tout, cread, cwrite),
            )
            for turn, role, content, status, created, tin, tout, cread, cwrite in await self.call(
                job
            )
        ]

    async def fail_abandoned_turns(self, older_than_seconds: float) -> int:
        now = time.time()
        args = (now, now - older_than_seconds)
        return await self.call(lambda c: c.execute(_FAIL_ABANDONED, args).rowcount, write=True)

    async def delete(self, key: ConversationKey) -> bool:
        def job(c: sqlite3.Connection) -> bool:
            conv_id = _find_id(c, key)
            if conv_id is None:
                return False
            # Explicit, in child-to-parent order: the trigger removes each message's FTS row.
            c.execute("DELETE FROM messages WHERE conversation_id = ?", (conv_id,))
            c.execute("DELETE FROM turns WHERE conversation_id = ?", (conv_id,))
            c.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))
            return True

        return await self.call(job, write=True)
