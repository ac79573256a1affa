"""Writing a turn over PostgreSQL after its start: its messages, and closing it (one statement:
the last messages, the status, the conversation's time and the tokens); and closing the turns
of processes that died."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from botrunner.events import Usage
from botrunner.store.base import Conversation, TokenCharge, TurnClosed, TurnStatus, UsageRecord
from botrunner.store.messages import check_wellformed, message_text
from botrunner.store.postgres.connect import driver
from botrunner.store.postgres.limits import PGPool, numbered

log = logging.getLogger("botrunner.store")

_FINAL_STATUSES = ("ok", "error", "stopped")
# Pending turns whose messages a store keeps in memory (see PGTurns.remember).
_MAX_OPEN_TURNS = 10_000

# The turn's status and its messages so far: what closing it needs to know.
TURN_STATE = (
    "SELECT t.status, m.role, m.content FROM turns AS t LEFT JOIN messages AS m "
    "ON m.conversation_id = t.conversation_id AND m.turn = t.turn "
    "WHERE t.conversation_id = $1 AND t.turn = $2 ORDER BY m.seq"
)
# Append messages (parallel arrays) from @seq on, close the turn, touch the conversation,
# release the turn's token reservation, charge its tokens and append its usage to the ledger
# (when @model is not NULL), all in one statement; it writes nothing unless the turn exists
# (and, with @pending_only, is still pending).
END_TURN = numbered(
    """
WITH f AS (
    UPDATE turns SET status = @status, finished = @now
    WHERE conversation_id = @conv AND turn = @turn AND (NOT @pending_only OR status = 'pending')
    RETURNING 1
), m AS (
    INSERT INTO messages (conversation_id, turn, seq, role, content, text, input_tokens,
        output_tokens, cache_read_tokens, cache_write_tokens, created)
    SELECT @conv, @turn, @seq + x.n - 1, x.role, x.content, x.text, x.tin, x.tout, x.tcr,
        x.tcw, @now
    FROM unnest(@roles::text[], @contents::json[], @texts::text[], @tins::int[], @touts::int[],
        @tcrs::int[], @tcws::int[])
        WITH ORDINALITY AS x (role, content, text, tin, tout, tcr, tcw, n)
    WHERE EXISTS (SELECT 1 FROM f)
), c AS (
    UPDATE conversations SET updated = @now WHERE id = @conv AND EXISTS (SELECT 1 FROM f)
), released AS (
    DELETE FROM token_reservations
    WHERE id = @reservation AND @reservation <> '' AND EXISTS (SELECT 1 FROM f)
), charged AS (
    INSERT INTO token_usage (bot, user_id, day, tokens)
    SELECT @bot, @user, @day, @tokens::bigint
    WHERE @tokens::bigint > 0 AND EXISTS (SELECT 1 FROM f)
    ON CONFLICT (bot, user_id, day) DO UPDATE SET tokens = token_usage.tokens + excluded.tokens
), ledger AS (
    INSERT INTO usage_ledger (created, bot, user_id, session, model, requests, input_tokens,
        output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens)
    SELECT @now, @lbot, @luser, @lsession, @model, @requests, @lin, @lout, @lread, @lwrite,
        @lhour
    WHERE @model::text IS NOT NULL AND EXISTS (SELECT 1 FROM f)
)
SELECT count(*) FROM f
""",
    ["conv", "turn", "seq", "status", "now", "roles", "contents", "texts", "tins", "touts",
     "tcrs", "tcws", "tokens", "bot", "user", "day", "reservation", "lbot", "luser", "lsession",
     "model", "requests", "lin", "lout", "lread", "lwrite", "lhour", "pending_only"],
)  # fmt: skip
_APPEND = (
    "INSERT INTO messages (conversation_id, turn, seq, role, content, text, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, created) "
    "SELECT $1, $2, coalesce((SELECT max(seq) FROM messages "
    "  WHERE conversation_id = $1 AND turn = $2), -1) + 1, $3, $4, $5, $6, $7, $8, $9, $10 "
    "FROM turns WHERE conversation_id = $1 AND turn = $2 AND status = 'pending' RETURNING seq"
)
_STATUS = "SELECT status FROM turns WHERE conversation_id = $1 AND turn = $2"
# Through the partial index over pending turns (migration 4): never the whole table.
_FAIL_ABANDONED = (
    "WITH f AS (UPDATE turns SET status = 'error', finished = $1 "
    "  WHERE status = 'pending' AND created < $2 RETURNING 1) "
    "SELECT count(*) FROM f"
)


def pg_text(text: str) -> str:
    """`text` as PostgreSQL text can hold it: without NUL, and with any lone surrogate as
    U+FFFD. Used for the searchable copy of a message and the summary; the content itself
    is JSON, where both are escapes (\\u0000, \\ud800) and kept exactly."""
    if text.isascii():
        return text.replace("\x00", "") if "\x00" in text else text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "")


def closing_status(
    turn: int, status: TurnStatus, rows: list[tuple[str, str]]
) -> tuple[TurnStatus, str | None]:
    """`ok` only for a complete exchange (see SQLiteConversations.finish_turn); the reason
    when `ok` was asked for and cannot be given."""
    if status != "ok":
        return status, None
    try:
        check_wellformed(turn, rows)
    except ValueError as exc:
        return "error", str(exc)
    return "ok", None


def _stored(conv_id: int, final: TurnStatus, why: str | None) -> TurnStatus:
    if why is not None:
        log.warning("conversation %s: %s; stored as error", conv_id, why)
    return final


class PGTurns(PGPool):
    """Messages and the end of a turn, for `PostgresStore`."""

    async def add_message(
        self,
        conv: Conversation,
        turn: int,
        role: str,
        content: list[dict[str, Any]],
        usage: Usage | None = None,
    ) -> None:
        text = pg_text(message_text(content))
        raw = json.dumps(content)
        args = (conv.id, turn, role, raw, text, *_tokens(usage), time.time())
        if await self.db.fetchval(_APPEND, *args) is None:
            status = await self.db.fetchval(_STATUS, conv.id, turn)
            if status is None:
                raise KeyError(f"turn {turn} does not exist")
            raise TurnClosed(f"turn {turn} is already finished ({status})")
        if (conv.id, turn) in self._open_turns:
            self.remember(conv.id, turn, role, raw)

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
        charge: TokenCharge | None,
        record: UsageRecord | None = None,
    ) -> TurnStatus:
        """Append `messages` to a pending turn, close it, add `charge` and append `record` to
        the usage ledger, in one statement. Whether it may be `ok` depends on the turn's
        messages so far: remembered when this store wrote them all (see `remember`),
        otherwise read first."""
        args = end_args(messages, charge, conv, record)
        new = list(zip(args[0], args[1], strict=True))
        known = self._open_turns.pop((conv.id, turn), None)
        if known is not None:
            final, why = closing_status(turn, status, known + new)
            try:
                done = await self.db.fetchval(
                    END_TURN, conv.id, turn, len(known), final, time.time(), *args, True
                )
            except driver().exceptions.UniqueViolationError:
                done = 0  # someone else wrote to the turn after all: nothing was written
            if done:
                return _stored(conv.id, final, why)
        # Not started here (another process, a restart), no longer pending, or written to by
        # another store too: read what it holds.
        rows = await self.db.fetch(TURN_STATE, conv.id, turn)
        if not rows:
            raise KeyError(f"turn {turn} does not exist")
        existing = [(r[1], r[2]) for r in rows if r[1] is not None]
        if messages and rows[0][0] != "pending":
            raise TurnClosed(f"turn {turn} is already finished ({rows[0][0]})")
        final, why = closing_status(turn, status, existing + new)
        done = await self.db.fetchval(
            END_TURN, conv.id, turn, len(existing), final, time.time(), *args, bool(messages)
        )
        if not done:
            raise TurnClosed(f"turn {turn} was finished meanwhile")
        return _stored(conv.id, final, why)

    async def fail_abandoned_turns(self, older_than_seconds: float) -> int:
        """See ConversationStore.fail_abandoned_turns. The cut-off is this process's clock,
        as `created` is the clock of the process that started the turn: clocks that differ
        by seconds are covered by the margin in the threshold (see `hold_seconds`)."""
        now = time.time()
        return int(await self.db.fetchval(_FAIL_ABANDONED, now, now - older_than_seconds))

    def remember(self, conv_id: int, turn: int, role: str, raw: str) -> None:
        """Note a message this store wrote to a pending turn, so closing the turn needs no
        read. Only the process that started a turn writes to it; a turn never closed (a bug,
        a cancelled close) is forgotten when the notes grow past a bound."""
        key = (conv_id, turn)
        if key not in self._open_turns and len(self._open_turns) >= _MAX_OPEN_TURNS:
            self._open_turns.clear()
        self._open_turns.setdefault(key, []).append((role, raw))


def _tokens(usage: Usage | None) -> tuple[int | None, ...]:
    """A message's (input, output, cache read, cache write) tokens; NULLs without usage."""
    if usage is None:
        return None, None, None, None
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    )


def end_args(
    messages: list[tuple[str, list[dict[str, Any]], Usage | None]],
    charge: TokenCharge | None = None,
    conv: Conversation | None = None,
    record: UsageRecord | None = None,
) -> tuple[Any, ...]:
    """END_TURN's parameters from @roles to @lhour: the messages as parallel arrays, the
    charge, then the ledger row (a NULL @model: none)."""
    roles, contents, texts = [], [], []
    tokens: list[list[int | None]] = [[], [], [], []]
    for role, content, usage in messages:
        roles.append(role)
        contents.append(json.dumps(content))
        texts.append(pg_text(message_text(content)))
        for column, value in zip(tokens, _tokens(usage), strict=True):
            column.append(value)
    c = charge or TokenCharge("", "", "", 0)
    ledger: tuple[Any, ...] = ("", "", "", None, 0, 0, 0, 0, 0, 0)
    if record is not None and conv is not None:
        key = conv.key
        ledger = (key.bot, key.user, key.session, record.model, record.requests,
                  *record.counts())  # fmt: skip
    return (roles, contents, texts, *tokens, int(c.tokens), c.bot, c.user, c.day,
            c.reservation, *ledger)  # fmt: skip
