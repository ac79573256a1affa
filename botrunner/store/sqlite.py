"""The default store: conversations, transcripts, full-text search and per-user limit counters in
one SQLite file.

Design:

* **One thread owns the one connection.** SQLite is synchronous; every call is queued to a
  dedicated writer thread, so the event loop never blocks on I/O or fsync, writes are serialized,
  and a read-modify-write (the GCRA rate limit, turn numbering) is atomic without locks.
* **Group commit.** The thread takes every job waiting in the queue (up to `max_batch`), runs
  them inside ONE transaction, each in its own SAVEPOINT (a failing job rolls back only itself),
  and commits once. Under load, 64 concurrent turns cost one fsync per batch instead of one per
  write. A caller is resumed only after the COMMIT that made its write durable has returned;
  with `journal_mode=WAL` and `synchronous=FULL` that means the WAL was fsynced, so nothing
  acknowledged is lost on a crash or power cut.
* **Bounded per-turn work.** Every statement on the per-turn path is an indexed lookup bounded
  by what the memory policy sends: `conversations.turns` is a counter (no COUNT(*)), the last N
  completed turns come from a partial index over `status = 'ok'`, and messages are read by
  `(conversation_id, turn)`. Statements are written once as constants and reused, so the
  sqlite3 statement cache keeps them prepared.
* **Migrations** are an ordered list of small functions; `PRAGMA user_version` records how many
  have been applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from botrunner.events import Usage
from botrunner.store.base import (
    Conversation,
    ConversationKey,
    StoredMessage,
    TurnStatus,
)

T = TypeVar("T")
log = logging.getLogger("botrunner.store")

_NO_BOUND_ABOVE = 2**62
_STATUSES = ("pending", "ok", "error", "stopped")
# At most this many words of a message go into one full-text query.
MAX_SEARCH_TERMS = 32


class StoreClosed(RuntimeError):
    """The store was closed; no more calls are accepted."""


# --------------------------------------------------------------------------------------------
# Schema migrations: append only, never edit one that has shipped.


def _script(c: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the current transaction (`executescript` would commit
    it first, making a migration non-atomic)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            c.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement!r}")


def _m001_initial(c: sqlite3.Connection) -> None:
    _script(
        c,
        """
        CREATE TABLE conversations (
            id           INTEGER PRIMARY KEY,
            bot          TEXT NOT NULL,
            user         TEXT NOT NULL,
            session      TEXT NOT NULL,
            turns        INTEGER NOT NULL DEFAULT 0,
            summary      TEXT NOT NULL DEFAULT '',
            summary_upto INTEGER NOT NULL DEFAULT 0,
            created      REAL NOT NULL,
            updated      REAL NOT NULL,
            UNIQUE (bot, user, session)
        );

        CREATE TABLE turns (
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            turn            INTEGER NOT NULL,
            status          TEXT NOT NULL
                            CHECK (status IN ('pending', 'ok', 'error', 'stopped')),
            created         REAL NOT NULL,
            finished        REAL,
            PRIMARY KEY (conversation_id, turn)
        ) WITHOUT ROWID;
        -- "the last N completed turns" without stepping over failed ones
        CREATE INDEX turns_ok ON turns (conversation_id, turn) WHERE status = 'ok';

        CREATE TABLE messages (
            id              INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL,
            turn            INTEGER NOT NULL,
            seq             INTEGER NOT NULL,
            role            TEXT NOT NULL,
            content         TEXT NOT NULL,          -- JSON list of content blocks (wire shape)
            text            TEXT NOT NULL DEFAULT '',  -- plain text, for search
            input_tokens    INTEGER,
            output_tokens   INTEGER,
            created         REAL NOT NULL,
            FOREIGN KEY (conversation_id, turn)
                REFERENCES turns (conversation_id, turn) ON DELETE CASCADE
        );
        CREATE UNIQUE INDEX messages_turn ON messages (conversation_id, turn, seq);

        -- Contentless: the text lives in `messages`; `conv` ("c<id>") scopes a search to one
        -- conversation inside the index itself.
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            text, conv, content = '', tokenize = 'porter unicode61'
        );
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.text <> '' BEGIN
            INSERT INTO messages_fts (rowid, text, conv)
            VALUES (new.id, new.text, 'c' || new.conversation_id);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.text <> '' BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text, conv)
            VALUES ('delete', old.id, old.text, 'c' || old.conversation_id);
        END;

        CREATE TABLE rate_limits (
            bot  TEXT NOT NULL,
            user TEXT NOT NULL,
            tat  REAL NOT NULL,                    -- GCRA theoretical arrival time (unix s)
            PRIMARY KEY (bot, user)
        ) WITHOUT ROWID;

        CREATE TABLE token_usage (
            bot    TEXT NOT NULL,
            user   TEXT NOT NULL,
            day    TEXT NOT NULL,                  -- UTC date, YYYY-MM-DD
            tokens INTEGER NOT NULL,
            PRIMARY KEY (bot, user, day)
        ) WITHOUT ROWID;
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_initial]


def migrate(c: sqlite3.Connection) -> None:
    """Apply the migrations this database has not seen yet, each in its own transaction."""
    (version,) = c.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database schema is version {version}, newer than this botrunner knows "
            f"({len(MIGRATIONS)}); upgrade botrunner"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        c.execute("BEGIN IMMEDIATE")
        try:
            step(c)
            c.execute(f"PRAGMA user_version = {number}")
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise


# --------------------------------------------------------------------------------------------
# Helpers.


def message_text(content: list[dict[str, Any]]) -> str:
    """The searchable plain text of a message: text blocks, tool inputs and tool results."""
    parts: list[str] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            parts.append(f"{block.get('name', '')} {json.dumps(block.get('input'))}")
        elif kind == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                parts.append(inner)
            elif isinstance(inner, list):
                parts.extend(str(b.get("text", "")) for b in inner if b.get("type") == "text")
    return "\n".join(p for p in parts if p)


_WORD = re.compile(r"[^\W_]+")


def fts_query(conversation_id: int, text: str) -> str | None:
    """A safe FTS5 query for `text` scoped to one conversation: each word quoted (so no word
    is ever an operator or column filter), any word matching. None when `text` has no words."""
    terms: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in terms:
            terms.append(word)
        if len(terms) >= MAX_SEARCH_TERMS:
            break
    if not terms:
        return None
    quoted = " OR ".join('"' + t + '"' for t in terms)
    return f"conv:c{conversation_id} AND text:({quoted})"


def _check_wellformed(turn: int, rows: list[tuple[str, str]]) -> None:
    """A turn may only be marked ok if sending it back is a valid Messages API exchange."""
    if not rows or rows[0][0] != "user":
        raise ValueError(f"turn {turn} cannot be ok: it does not start with a user message")
    pending_ids: set[str] = set()
    for i, (role, raw) in enumerate(rows):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(f"turn {turn} cannot be ok: roles do not alternate")
        blocks = json.loads(raw)
        if role == "user":
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if pending_ids - answered:
                raise ValueError(f"turn {turn} cannot be ok: a tool_use has no tool_result")
            pending_ids = set()
        else:
            pending_ids = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    if rows[-1][0] != "assistant" or pending_ids:
        raise ValueError(f"turn {turn} cannot be ok: it does not end with a final reply")


# --------------------------------------------------------------------------------------------
# SQL used on the hot path (constants, so the statement cache keeps them prepared).

_FIND = (
    "SELECT id, turns, summary, summary_upto FROM conversations "
    "WHERE bot = ? AND user = ? AND session = ?"
)
_CREATE = (
    "INSERT INTO conversations (bot, user, session, created, updated) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (bot, user, session) DO UPDATE SET updated = updated "
    "RETURNING id, turns, summary, summary_upto"
)
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
    "output_tokens, created) "
    "SELECT ?1, ?2, COALESCE(MAX(seq), -1) + 1, ?3, ?4, ?5, ?6, ?7, ?8 FROM messages "
    "WHERE conversation_id = ?1 AND turn = ?2"
)
_TURN_STATUS = "SELECT status FROM turns WHERE conversation_id = ? AND turn = ?"
_TURN_ROLES = (
    "SELECT role, content FROM messages WHERE conversation_id = ? AND turn = ? ORDER BY seq"
)
_FINISH_TURN = "UPDATE turns SET status = ?, finished = ? WHERE conversation_id = ? AND turn = ?"
_TOUCH = "UPDATE conversations SET updated = ? WHERE id = ?"
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
    "SELECT m.turn, m.role, m.content, t.status, m.created, m.input_tokens, m.output_tokens "
    "FROM messages AS m "
    "JOIN turns AS t ON t.conversation_id = m.conversation_id AND t.turn = m.turn "
    "WHERE m.conversation_id = ? ORDER BY m.turn, m.seq"
)
_GET_TAT = "SELECT tat FROM rate_limits WHERE bot = ? AND user = ?"
_SET_TAT = (
    "INSERT INTO rate_limits (bot, user, tat) VALUES (?, ?, ?) "
    "ON CONFLICT (bot, user) DO UPDATE SET tat = excluded.tat"
)
_GET_TOKENS = "SELECT tokens FROM token_usage WHERE bot = ? AND user = ? AND day = ?"
_ADD_TOKENS = (
    "INSERT INTO token_usage (bot, user, day, tokens) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (bot, user, day) DO UPDATE SET tokens = tokens + excluded.tokens"
)


def _bounds(count: int | None, before: int | None, after: int | None) -> tuple[int, int, int]:
    return (
        _NO_BOUND_ABOVE if before is None else before,
        0 if after is None else after,
        -1 if count is None else max(count, 0),
    )


def _wire(rows: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"role": role, "content": json.loads(content)} for role, content in rows]


# --------------------------------------------------------------------------------------------
# The writer thread.


class _Job:
    __slots__ = ("fn", "write", "loop", "future")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        write: bool,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.write = write
        self.loop = loop
        self.future = future


_STOP = object()


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the job ran anyway
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _resolve_all(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in outcomes:
        _resolve(job.future, result, error)


def _deliver(job: _Job, result: Any, error: BaseException | None) -> None:
    _deliver_all([(job, result, error)])


def _deliver_all(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Resume the callers: one wake-up per event loop, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        # RuntimeError: that event loop is closed, so nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve_all, items)


class SQLiteStore:
    """ConversationStore and LimitStore over one SQLite file (see the module docstring)."""

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = 10_000, max_batch: int = 256
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not self.path.startswith("file:"):
            self.path = str(Path(self.path).expanduser())
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = busy_timeout_ms
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._stopped: Future[None] = Future()
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name=f"botrunner-sqlite:{self.path}", daemon=True
        )
        self._thread.start()
        ready.result()  # connection or migration errors surface here, in the caller

    # -- thread side ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(
            self.path,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            cached_statements=256,
            uri=self.path.startswith("file:"),
        )
        c.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        c.execute("PRAGMA temp_store = MEMORY")
        migrate(c)
        return c

    def _main(self, ready: Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            ready.set_exception(exc)
            self._stopped.set_result(None)
            return
        ready.set_result(None)
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                if item is _STOP:
                    break
                batch = [item]
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                try:
                    self._run_batch(conn, batch)
                except Exception as exc:  # a bug or a broken connection: never hang callers
                    log.exception("store batch failed")
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    for job in batch:  # already-resolved futures ignore this
                        _deliver(job, None, exc)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()
            while True:  # anything queued after close: refuse
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    _deliver(item, None, StoreClosed("the store is closed"))
            self._stopped.set_result(None)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """Run `batch` in one transaction; each write job in its own savepoint. Results are
        delivered only after COMMIT returned (or the error that prevented it)."""
        write = any(job.write for job in batch)
        done: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            _deliver_all([(job, None, exc) for job in batch])
            return
        for job in batch:
            if not conn.in_transaction:
                # A previous failure made SQLite roll the whole transaction back: the jobs
                # done so far lost their writes. Fail them and start again.
                _deliver_all([(j, None, err or _lost()) for j, _, err in done])
                done = []
                try:
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                except sqlite3.Error as exc:
                    for rest in batch[batch.index(job) :]:
                        _deliver(rest, None, exc)
                    return
            if job.write:
                conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if job.write and conn.in_transaction:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                done.append((job, None, exc))
            else:
                if job.write:
                    conn.execute("RELEASE job")
                done.append((job, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            _deliver_all([(job, None, err or exc) for job, _, err in done])
            return
        _deliver_all(done)

    # -- loop side --------------------------------------------------------------------------

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run `fn(connection)` on the store's thread, inside a transaction, and return its
        result (after the commit, for writes). The building block of every method here; also
        an escape hatch for maintenance and tests. `fn` must not commit or roll back."""
        if self._closed:
            raise StoreClosed("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, write, loop, future))
        return await future

    async def close(self) -> None:
        """Finish the queued work, then close the connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        await asyncio.wrap_future(self._stopped)

    # -- ConversationStore --------------------------------------------------------------------

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

        def job(c: sqlite3.Connection) -> int:
            rows = c.execute(_NEXT_TURN, (now, conv.id)).fetchall()
            if not rows:
                raise KeyError(f"conversation {conv.id} no longer exists")
            turn = rows[0][0]
            c.execute(_INSERT_TURN, (conv.id, turn, now))
            c.execute(_INSERT_MESSAGE, (conv.id, turn, 0, "user", raw, text, None, None, now))
            return turn

        turn = await self.call(job, write=True)
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
        raw, text, now = json.dumps(content), message_text(content), time.time()
        tokens_in = usage.input_tokens if usage else None
        tokens_out = usage.output_tokens if usage else None

        def job(c: sqlite3.Connection) -> None:
            row = c.execute(_TURN_STATUS, (conv.id, turn)).fetchone()
            if row is None:
                raise KeyError(f"turn {turn} does not exist")
            if row[0] != "pending":
                raise ValueError(f"turn {turn} is already finished ({row[0]})")
            c.execute(_APPEND_MESSAGE, (conv.id, turn, role, raw, text, tokens_in, tokens_out, now))

        await self.call(job, write=True)

    async def finish_turn(self, conv: Conversation, turn: int, status: TurnStatus) -> TurnStatus:
        """Mark a turn finished and return the status stored. A turn is only stored as `ok` if
        it is a complete, valid exchange (user first, roles alternating, every tool_use
        answered, ending with an assistant reply), so a completed turn can always be sent back
        to the model; otherwise it is stored as `error` (and a warning logged)."""
        if status not in _STATUSES or status == "pending":
            raise ValueError(f"not a final turn status: {status!r}")
        now = time.time()

        def job(c: sqlite3.Connection) -> TurnStatus:
            final = status
            if status == "ok":
                try:
                    _check_wellformed(turn, c.execute(_TURN_ROLES, (conv.id, turn)).fetchall())
                except ValueError as exc:
                    log.warning("conversation %s: %s; stored as error", conv.id, exc)
                    final = "error"
            if c.execute(_FINISH_TURN, (final, now, conv.id, turn)).rowcount != 1:
                raise KeyError(f"turn {turn} does not exist")
            c.execute(_TOUCH, (now, conv.id))
            return final

        return await self.call(job, write=True)

    async def recent_turns(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        args = (conv.id, *_bounds(count, before, after))
        return await self.call(lambda c: _wire(c.execute(_RECENT, args).fetchall()))

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
        return await self.call(lambda c: _wire(c.execute(_TURNS, args).fetchall()))

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
            row = c.execute(_FIND, (key.bot, key.user, key.session)).fetchone()
            return [] if row is None else c.execute(_HISTORY, (row[0],)).fetchall()

        return [
            StoredMessage(
                turn=turn,
                role=role,
                content=json.loads(content),
                status=status,
                created=created,
                usage=None if tin is None and tout is None else Usage(tin or 0, tout or 0),
            )
            for turn, role, content, status, created, tin, tout in await self.call(job)
        ]

    async def delete(self, key: ConversationKey) -> bool:
        def job(c: sqlite3.Connection) -> bool:
            row = c.execute(_FIND, (key.bot, key.user, key.session)).fetchone()
            if row is None:
                return False
            # Explicit, in child-to-parent order: the trigger removes each message's FTS row.
            c.execute("DELETE FROM messages WHERE conversation_id = ?", (row[0],))
            c.execute("DELETE FROM turns WHERE conversation_id = ?", (row[0],))
            c.execute("DELETE FROM conversations WHERE id = ?", (row[0],))
            return True

        return await self.call(job, write=True)

    # -- LimitStore ---------------------------------------------------------------------------

    async def take_request(self, bot: str, user: str, per_minute: int, now: float) -> float:
        """GCRA with emission interval 60/per_minute and a burst of per_minute; the read and
        the write happen in one job on the writer thread, so concurrent calls cannot race."""
        if per_minute <= 0:
            return math.inf
        interval = 60.0 / per_minute

        def job(c: sqlite3.Connection) -> float:
            row = c.execute(_GET_TAT, (bot, user)).fetchone()
            tat = now if row is None else max(row[0], now)
            new_tat = tat + interval
            allow_at = new_tat - per_minute * interval
            if allow_at - now > 1e-3:  # tolerate float rounding of the accumulated tat
                return allow_at - now
            c.execute(_SET_TAT, (bot, user, new_tat))
            return 0.0

        return await self.call(job, write=True)

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        row = await self.call(lambda c: c.execute(_GET_TOKENS, (bot, user, day)).fetchone())
        return 0 if row is None else int(row[0])

    async def add_tokens(self, bot: str, user: str, day: str, tokens: int) -> None:
        if tokens:
            await self.call(
                lambda c: c.execute(_ADD_TOKENS, (bot, user, day, int(tokens))), write=True
            )


def _lost() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("the transaction was rolled back by an error in its batch")
