"""`botrunner db copy` from and to a SQLite store: conversations exported and imported whole
(see `botrunner.store.transfer`), each import one job of the writer thread, so one transaction."""

from __future__ import annotations

import sqlite3

from botrunner.store.base import ConversationKey
from botrunner.store.transfer import Transcript, UsageRow
from botrunner.store.writer import SQLiteWriter

_KEYS = "SELECT bot, user, session FROM conversations ORDER BY id"
_CONVERSATION = (
    "SELECT id, turns, summary, summary_upto, created, updated FROM conversations "
    "WHERE bot = ? AND user = ? AND session = ?"
)
_TURN_ROWS = (
    "SELECT turn, status, created, finished FROM turns WHERE conversation_id = ? ORDER BY turn"
)
_MESSAGE_ROWS = (
    "SELECT turn, seq, role, content, text, input_tokens, output_tokens, created FROM messages "
    "WHERE conversation_id = ? ORDER BY turn, seq"
)
_INSERT_CONVERSATION = (
    "INSERT INTO conversations (bot, user, session, turns, summary, summary_upto, created, "
    "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_INSERT_TURN = (
    "INSERT INTO turns (conversation_id, turn, status, created, finished) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (conversation_id, turn, seq, role, content, text, input_tokens, "
    "output_tokens, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_USAGE = "SELECT bot, user, day, tokens FROM token_usage ORDER BY bot, user, day"
_MERGE_USAGE = (
    "INSERT INTO token_usage (bot, user, day, tokens) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (bot, user, day) DO UPDATE SET tokens = max(tokens, excluded.tokens)"
)


def _delete(c: sqlite3.Connection, conv_id: int) -> None:
    # Child to parent, so the trigger removes each message's search row.
    c.execute("DELETE FROM messages WHERE conversation_id = ?", (conv_id,))
    c.execute("DELETE FROM turns WHERE conversation_id = ?", (conv_id,))
    c.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))


class SQLitePortable(SQLiteWriter):
    """The `Portable` half of `SQLiteStore`."""

    async def conversation_keys(self) -> list[ConversationKey]:
        rows = await self.call(lambda c: c.execute(_KEYS).fetchall())
        return [ConversationKey(*row) for row in rows]

    async def export(self, key: ConversationKey) -> Transcript | None:
        def job(c: sqlite3.Connection) -> Transcript | None:
            row = c.execute(_CONVERSATION, (key.bot, key.user, key.session)).fetchone()
            if row is None:
                return None
            conv_id, turns, summary, upto, created, updated = row
            return Transcript(
                key,
                turns,
                summary,
                upto,
                created,
                updated,
                c.execute(_TURN_ROWS, (conv_id,)).fetchall(),
                c.execute(_MESSAGE_ROWS, (conv_id,)).fetchall(),
            )

        return await self.call(job)

    async def import_transcript(self, t: Transcript, *, replace: bool) -> None:
        def job(c: sqlite3.Connection) -> None:
            if replace:
                row = c.execute(_CONVERSATION, (t.key.bot, t.key.user, t.key.session)).fetchone()
                _delete(c, row[0])
            values = (t.key.bot, t.key.user, t.key.session, t.turns, t.summary, t.summary_upto)
            (conv_id,) = c.execute(_INSERT_CONVERSATION, (*values, t.created, t.updated)).fetchone()
            c.executemany(_INSERT_TURN, [(conv_id, *row) for row in t.turn_rows])
            c.executemany(_INSERT_MESSAGE, [(conv_id, *row) for row in t.messages])

        await self.call(job, write=True)

    async def usage_rows(self) -> list[UsageRow]:
        return await self.call(lambda c: c.execute(_USAGE).fetchall())

    async def merge_usage(self, rows: list[UsageRow]) -> None:
        if rows:
            await self.call(lambda c: c.executemany(_MERGE_USAGE, rows), write=True)
