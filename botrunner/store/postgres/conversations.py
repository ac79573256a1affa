"""ConversationStore over PostgreSQL: conversations, their turns and messages, search and the
running summary.

The same shape as the SQLite store (a turn counter on the conversation, a partial index over
completed turns, messages keyed by `(conversation_id, turn, seq)`), with `json` content kept
exactly as sent, and a generated `tsvector` column with a GIN index for `search_turns`. Each
method is one statement where it can be (one round trip, atomic without an explicit
transaction); asyncpg prepares each statement once per connection.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from botrunner.events import Usage
from botrunner.store.base import Conversation, ConversationKey, StoredMessage, TurnStatus
from botrunner.store.messages import check_wellformed, message_text, search_terms, wire
from botrunner.store.postgres.limits import PGPool

log = logging.getLogger("botrunner.store")

_FINAL_STATUSES = ("ok", "error", "stopped")

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
# The turn's status and its messages so far: what closing it needs to know.
TURN_STATE = (
    "SELECT t.status, m.role, m.content FROM turns AS t LEFT JOIN messages AS m "
    "ON m.conversation_id = t.conversation_id AND m.turn = t.turn "
    "WHERE t.conversation_id = $1 AND t.turn = $2 ORDER BY m.seq"
)
# Append messages (parallel arrays) from seq $3 on, close the turn, touch the conversation
# and add tokens ($11 > 0), all in one statement; it writes nothing unless the turn exists
# (and, when $15, is still pending).
END_TURN = (
    "WITH f AS (UPDATE turns SET status = $4, finished = $5 "
    "  WHERE conversation_id = $1 AND turn = $2 AND (NOT $15 OR status = 'pending') "
    "  RETURNING 1), "
    "m AS (INSERT INTO messages (conversation_id, turn, seq, role, content, text, "
    "  input_tokens, output_tokens, created) "
    "  SELECT $1, $2, $3 + x.n - 1, x.role, x.content, x.text, x.tin, x.tout, $5 "
    "  FROM unnest($6::text[], $7::json[], $8::text[], $9::int[], $10::int[]) "
    "  WITH ORDINALITY AS x (role, content, text, tin, tout, n) WHERE EXISTS (SELECT 1 FROM f)), "
    "c AS (UPDATE conversations SET updated = $5 WHERE id = $1 AND EXISTS (SELECT 1 FROM f)), "
    "k AS (INSERT INTO token_usage (bot, user_id, day, tokens) "
    "  SELECT $12, $13, $14, $11::bigint WHERE $11::bigint > 0 AND EXISTS (SELECT 1 FROM f) "
    "  ON CONFLICT (bot, user_id, day) "
    "  DO UPDATE SET tokens = token_usage.tokens + excluded.tokens) "
    "SELECT count(*) FROM f"
)
_APPEND = (
    "INSERT INTO messages (conversation_id, turn, seq, role, content, text, input_tokens, "
    "output_tokens, created) "
    "SELECT $1, $2, coalesce((SELECT max(seq) FROM messages "
    "  WHERE conversation_id = $1 AND turn = $2), -1) + 1, $3, $4, $5, $6, $7, $8 "
    "FROM turns WHERE conversation_id = $1 AND turn = $2 AND status = 'pending' RETURNING seq"
)
_STATUS = "SELECT status FROM turns WHERE conversation_id = $1 AND turn = $2"
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


def pg_text(text: str) -> str:
    """`text` as PostgreSQL text can hold it: without NUL, and with any lone surrogate as
    U+FFFD. Used for the searchable copy of a message and the summary; the content itself
    is JSON, where both are escapes (\\u0000, \\ud800) and kept exactly."""
    if text.isascii():
        return text.replace("\x00", "") if "\x00" in text else text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "")


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


def closing_status(turn: int, status: TurnStatus, rows: list[tuple[str, str]]) -> TurnStatus:
    """`ok` only for a complete exchange (see SQLiteConversations.finish_turn)."""
    if status != "ok":
        return status
    try:
        check_wellformed(turn, rows)
    except ValueError as exc:
        log.warning("%s; stored as error", exc)
        return "error"
    return "ok"


class PGConversations(PGPool):
    """The ConversationStore half of `PostgresStore`."""

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
        text = pg_text(message_text(content))
        turn = await self.db.fetchval(_BEGIN_TURN, conv.id, time.time(), json.dumps(content), text)
        if turn is None:
            raise KeyError(f"conversation {conv.id} no longer exists")
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
        text = pg_text(message_text(content))
        tin, tout = (usage.input_tokens, usage.output_tokens) if usage else (None, None)
        args = (conv.id, turn, role, json.dumps(content), text, tin, tout, time.time())
        if await self.db.fetchval(_APPEND, *args) is None:
            status = await self.db.fetchval(_STATUS, conv.id, turn)
            if status is None:
                raise KeyError(f"turn {turn} does not exist")
            raise ValueError(f"turn {turn} is already finished ({status})")

    async def finish_turn(self, conv: Conversation, turn: int, status: TurnStatus) -> TurnStatus:
        """Close a turn; `ok` only for a complete, valid exchange (stored as `error`, with a
        warning logged, otherwise), as in the SQLite store."""
        if status not in _FINAL_STATUSES:
            raise ValueError(f"not a final turn status: {status!r}")
        return await self.end_turn(conv, turn, status, [], None)

    async def end_turn(
        self,
        conv: Conversation,
        turn: int,
        status: TurnStatus,
        messages: list[tuple[str, list[dict[str, Any]], Usage | None]],
        charge: tuple[str, str, str, int] | None,
    ) -> TurnStatus:
        """Append `messages` to a pending turn, close it and add `charge`, in one statement
        after one read (the turn's messages so far, which decide whether it may be `ok`)."""
        args = end_args(messages, charge)  # encoded before the read: less time between them
        rows = await self.db.fetch(TURN_STATE, conv.id, turn)
        if not rows:
            raise KeyError(f"turn {turn} does not exist")
        existing = [(r[1], r[2]) for r in rows if r[1] is not None]
        if messages and rows[0][0] != "pending":
            raise ValueError(f"turn {turn} is already finished ({rows[0][0]})")
        final = closing_status(turn, status, existing + list(zip(args[0], args[1], strict=True)))
        now = time.time()
        done = await self.db.fetchval(
            END_TURN, conv.id, turn, len(existing), final, now, *args, bool(messages)
        )
        if not done:
            raise ValueError(f"turn {turn} was finished meanwhile")
        return final

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
                usage=None if tin is None and tout is None else Usage(tin or 0, tout or 0),
            )
            for turn, role, content, status, created, tin, tout in rows
        ]

    async def delete(self, key: ConversationKey) -> bool:
        # ON DELETE CASCADE removes the turns, then their messages (and search entries).
        return await self.db.fetchval(_DELETE, key.bot, key.user, key.session) is not None


def end_args(
    messages: list[tuple[str, list[dict[str, Any]], Usage | None]],
    charge: tuple[str, str, str, int] | None = None,
) -> tuple[Any, ...]:
    """END_TURN's parameters from $6 on: the messages as parallel arrays, then the charge."""
    roles, contents, texts, tins, touts = [], [], [], [], []
    for role, content, usage in messages:
        roles.append(role)
        contents.append(json.dumps(content))
        texts.append(pg_text(message_text(content)))
        tins.append(usage.input_tokens if usage else None)
        touts.append(usage.output_tokens if usage else None)
    bot, user, day, tokens = charge or ("", "", "", 0)
    return roles, contents, texts, tins, touts, tokens, bot, user, day
