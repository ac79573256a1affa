"""The default store: conversations, transcripts, full-text search and per-user limit counters in
one SQLite file.

Design, one module each:

* `writer`: **one thread owns the one connection**, and **group-commits**: every call is queued
  to it, batches run in one transaction (a savepoint per job), and a caller is resumed only
  after the COMMIT that made its write durable.
* `conversations`: **bounded per-turn work**: every statement on the per-turn path is an
  indexed lookup bounded by what the memory policy sends.
* `limits`: the GCRA rate limit, daily token counters and the reservations of running turns.
* `usage`: the usage ledger (each turn's model and tokens), summed for `botrunner usage`.
* `start_turn` / `complete_turn` (here): a turn's limit check, conversation lookup and user
  message in one job, and its reply, status and token count in another, so a turn costs two
  durable writes instead of six.
* `migrations`: an ordered list of small functions; `PRAGMA user_version` records how many
  have been applied.

This module opens the connection (durability settings, then migrations) and puts the halves
together as `SQLiteStore`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from botrunner.events import Usage
from botrunner.store import conversations, limits, turns, usage
from botrunner.store.base import (
    Admission,
    Conversation,
    ConversationKey,
    RecentTurns,
    Refused,
    StartedTurn,
    TokenCharge,
    TurnStatus,
    UsageRecord,
)
from botrunner.store.conversations import SQLiteConversations
from botrunner.store.limits import SQLiteLimits
from botrunner.store.messages import MAX_SEARCH_TERMS, fts_query, message_text
from botrunner.store.migrations import MIGRATIONS, migrate
from botrunner.store.sqlite_transfer import SQLitePortable
from botrunner.store.usage import SQLiteUsage
from botrunner.store.writer import StoreClosed


class SQLiteStore(SQLiteConversations, SQLiteLimits, SQLiteUsage, SQLitePortable):
    """Every store protocol over one SQLite file (see the module docstring)."""

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = 10_000, max_batch: int = 256
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not self.path.startswith("file:"):
            self.path = str(Path(self.path).expanduser())
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = busy_timeout_ms
        self.migrated = 0  # migrations applied when the file was opened
        super().__init__(self._connect, name=f"botrunner-sqlite:{self.path}", max_batch=max_batch)

    async def start(self) -> None:
        """Nothing left to do: the constructor opened the file and applied the migrations."""

    def _connect(self) -> sqlite3.Connection:
        """Runs on the writer thread, which then owns the connection."""
        c = sqlite3.connect(
            self.path,
            isolation_level=None,  # the writer issues BEGIN/COMMIT itself
            cached_statements=256,
            uri=self.path.startswith("file:"),
        )
        c.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        c.execute("PRAGMA temp_store = MEMORY")
        self.migrated = migrate(c)
        return c

    async def schema_version(self) -> int:
        """The number of migrations the file has had."""
        return await self.call(lambda c: c.execute("PRAGMA user_version").fetchone()[0])

    async def start_turn(
        self,
        key: ConversationKey,
        content: list[dict[str, Any]],
        admission: Admission | None,
        recent: RecentTurns | None = None,
    ) -> StartedTurn | Refused:
        raw, text, now = json.dumps(content), message_text(content), time.time()

        def job(
            c: sqlite3.Connection,
        ) -> tuple[Conversation, int, list[dict[str, Any]] | None] | Refused:
            if admission is not None:
                refused = limits.admit(c, admission)
                if refused is not None:
                    return refused  # nothing was written
            conv = conversations.open_conversation(c, key, now)
            turn = turns.begin_turn(c, conv.id, raw, text, now)
            conv.turns = max(conv.turns, turn)
            messages = None if recent is None else conversations.recent(c, conv, turn, recent)
            return conv, turn, messages

        # Handed back before the commit: the model request overlaps the fsync (see writer).
        started, durable = await self.call_early(job)
        if isinstance(started, Refused):
            return started
        return StartedTurn(*started, durable=durable)

    async def complete_turn(
        self,
        conv: Conversation,
        turn: int,
        status: TurnStatus,
        messages: list[tuple[str, list[dict[str, Any]], Usage | None]],
        charge: TokenCharge | None = None,
        record: UsageRecord | None = None,
    ) -> TurnStatus:
        if status not in ("ok", "error", "stopped"):
            raise ValueError(f"not a final turn status: {status!r}")
        rows = [turns.message_row(role, content, used) for role, content, used in messages]
        now = time.time()
        ledger = None if record is None else usage.usage_row(conv, record, now)

        def job(c: sqlite3.Connection) -> TurnStatus:
            for row in rows:
                turns.add_message(c, conv.id, turn, row)
            final = turns.finish_turn(c, conv.id, turn, status, now)
            if charge is not None:
                limits.settle(c, charge)
            if ledger is not None:
                usage.add_usage(c, ledger)
            return final

        return await self.call(job, write=True)


__all__ = [
    "MAX_SEARCH_TERMS",
    "MIGRATIONS",
    "SQLiteStore",
    "StoreClosed",
    "fts_query",
    "message_text",
    "migrate",
]
