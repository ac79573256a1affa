"""`botrunner db copy` from and to a PostgreSQL store: conversations exported and imported
whole (see `botrunner.store.transfer`), each import in one transaction."""

from __future__ import annotations

from botrunner.store.base import ConversationKey
from botrunner.store.postgres.conversations import pg_text
from botrunner.store.postgres.limits import PGPool
from botrunner.store.transfer import Transcript, UsageRow

_KEYS = "SELECT bot, user_id, session FROM conversations ORDER BY id"
_CONVERSATION = (
    "SELECT id, turns, summary, summary_upto, created, updated FROM conversations "
    "WHERE bot = $1 AND user_id = $2 AND session = $3"
)
_TURN_ROWS = (
    "SELECT turn, status, created, finished FROM turns WHERE conversation_id = $1 ORDER BY turn"
)
_MESSAGE_ROWS = (
    "SELECT turn, seq, role, content, text, input_tokens, output_tokens, created FROM messages "
    "WHERE conversation_id = $1 ORDER BY turn, seq"
)
_DELETE = "DELETE FROM conversations WHERE bot = $1 AND user_id = $2 AND session = $3"
_INSERT_CONVERSATION = (
    "INSERT INTO conversations (bot, user_id, session, turns, summary, summary_upto, created, "
    "updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"
)
_INSERT_TURN = (
    "INSERT INTO turns (conversation_id, turn, status, created, finished) "
    "VALUES ($1, $2, $3, $4, $5)"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (conversation_id, turn, seq, role, content, text, input_tokens, "
    "output_tokens, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_USAGE = "SELECT bot, user_id, day, tokens FROM token_usage ORDER BY bot, user_id, day"
_MERGE_USAGE = (
    "INSERT INTO token_usage (bot, user_id, day, tokens) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (bot, user_id, day) "
    "DO UPDATE SET tokens = greatest(token_usage.tokens, excluded.tokens)"
)


class PGPortable(PGPool):
    """The `Portable` half of `PostgresStore`."""

    async def conversation_keys(self) -> list[ConversationKey]:
        return [ConversationKey(*row) for row in await self.db.fetch(_KEYS)]

    async def export(self, key: ConversationKey) -> Transcript | None:
        async with (
            self.db.acquire() as c,
            c.transaction(readonly=True, isolation="repeatable_read"),
        ):
            row = await c.fetchrow(_CONVERSATION, key.bot, key.user, key.session)
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
                [tuple(r) for r in await c.fetch(_TURN_ROWS, conv_id)],
                [tuple(r) for r in await c.fetch(_MESSAGE_ROWS, conv_id)],
            )

    async def import_transcript(self, t: Transcript, *, replace: bool) -> None:
        async with self.db.acquire() as c, c.transaction():
            if replace:
                await c.execute(_DELETE, t.key.bot, t.key.user, t.key.session)
            values = (t.key.bot, t.key.user, t.key.session, t.turns, t.summary, t.summary_upto)
            conv_id = await c.fetchval(_INSERT_CONVERSATION, *values, t.created, t.updated)
            await c.executemany(_INSERT_TURN, [(conv_id, *row) for row in t.turn_rows])
            await c.executemany(
                _INSERT_MESSAGE,
                [(conv_id, *row[:4], pg_text(row[4]), *row[5:]) for row in t.messages],
            )

    async def usage_rows(self) -> list[UsageRow]:
        return [tuple(row) for row in await self.db.fetch(_USAGE)]

    async def merge_usage(self, rows: list[UsageRow]) -> None:
        if rows:
            await self.db.executemany(_MERGE_USAGE, rows)
