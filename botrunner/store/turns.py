"""The per-turn writes of the SQLite store: a turn's start, its messages and its end.

They run on the writer thread as plain functions over a connection, so `SQLiteStore` can
combine a turn's admission, start and user message (or its end, tokens and usage) into one
write job and one transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from botrunner.events import Usage
from botrunner.store.base import TurnClosed, TurnStatus
from botrunner.store.messages import check_wellformed, message_text

log = logging.getLogger("botrunner.store")

_NEXT_TURN = "UPDATE conversations SET turns = turns + 1, updated = ? WHERE id = ? RETURNING turns"
_INSERT_TURN = (
    "INSERT INTO turns (conversation_id, turn, status, created) VALUES (?, ?, 'pending', ?)"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (conversation_id, turn, seq, role, content, text, input_tokens, "
    "output_tokens, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_APPEND_MESSAGE = (
    "INSERT INTO messages (conversation_id, turn, seq, role, content, text, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, created) "
    "SELECT ?1, ?2, COALESCE(MAX(seq), -1) + 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM messages "
    "WHERE conversation_id = ?1 AND turn = ?2"
)
_TURN_STATUS = "SELECT status FROM turns WHERE conversation_id = ? AND turn = ?"
_TURN_ROLES = (
    "SELECT role, content FROM messages WHERE conversation_id = ? AND turn = ? ORDER BY seq"
)
_FINISH_TURN = "UPDATE turns SET status = ?, finished = ? WHERE conversation_id = ? AND turn = ?"
_TOUCH = "UPDATE conversations SET updated = ? WHERE id = ?"

# (role, content JSON, searchable text, input, output, cache read, cache write tokens, created)
MessageRow = tuple[str, str, str, int | None, int | None, int | None, int | None, float]


def message_row(role: str, content: list[dict[str, Any]], usage: Usage | None) -> MessageRow:
    """Encoded on the event loop, so the writer thread only runs statements."""
    return (
        role,
        json.dumps(content),
        message_text(content),
        usage.input_tokens if usage else None,
        usage.output_tokens if usage else None,
        usage.cache_read_tokens if usage else None,
        usage.cache_write_tokens if usage else None,
        time.time(),
    )


def begin_turn(c: sqlite3.Connection, conv_id: int, raw: str, text: str, now: float) -> int:
    rows = c.execute(_NEXT_TURN, (now, conv_id)).fetchall()
    if not rows:
        raise KeyError(f"conversation {conv_id} no longer exists")
    turn = rows[0][0]
    c.execute(_INSERT_TURN, (conv_id, turn, now))
    c.execute(_INSERT_MESSAGE, (conv_id, turn, 0, "user", raw, text, None, None, now))
    return turn


def add_message(c: sqlite3.Connection, conv_id: int, turn: int, row: MessageRow) -> None:
    status = c.execute(_TURN_STATUS, (conv_id, turn)).fetchone()
    if status is None:
        raise KeyError(f"turn {turn} does not exist")
    if status[0] != "pending":
        raise TurnClosed(f"turn {turn} is already finished ({status[0]})")
    c.execute(_APPEND_MESSAGE, (conv_id, turn, *row))


def finish_turn(
    c: sqlite3.Connection, conv_id: int, turn: int, status: TurnStatus, now: float
) -> TurnStatus:
    final = status
    if status == "ok":
        try:
            check_wellformed(turn, c.execute(_TURN_ROLES, (conv_id, turn)).fetchall())
        except ValueError as exc:
            log.warning("conversation %s: %s; stored as error", conv_id, exc)
            final = "error"
    if c.execute(_FINISH_TURN, (final, now, conv_id, turn)).rowcount != 1:
        raise KeyError(f"turn {turn} does not exist")
    c.execute(_TOUCH, (now, conv_id))
    return final
