"""The schema, as an ordered list of migrations; `PRAGMA user_version` records how many a
database has had.

Append only: never edit a migration that has shipped (databases in the field have already run
it), add a new one instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from botrunner.store.base import StoreError


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


def _m002_token_reservations(c: sqlite3.Connection) -> None:
    _script(
        c,
        """
        -- What each running turn holds of its user's daily token budget, from its admission
        -- until its real usage is charged; a row whose turn never ended (its process died) is
        -- deleted by the first admission after `expires`.
        CREATE TABLE token_reservations (
            id      TEXT PRIMARY KEY,
            bot     TEXT NOT NULL,
            user    TEXT NOT NULL,
            day     TEXT NOT NULL,                 -- UTC date the turn counts against
            tokens  INTEGER NOT NULL,
            expires REAL NOT NULL                  -- unix s
        ) WITHOUT ROWID;
        CREATE INDEX token_reservations_user ON token_reservations (bot, user, day);
        CREATE INDEX token_reservations_expires ON token_reservations (expires);
        """,
    )


def _m003_usage(c: sqlite3.Connection) -> None:
    """Cache reads and writes beside each reply's tokens, and the usage ledger: one row per
    turn with its model and tokens, kept when the conversation is deleted (for cost)."""
    _script(
        c,
        """
        ALTER TABLE messages ADD COLUMN cache_read_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN cache_write_tokens INTEGER;

        CREATE TABLE usage_ledger (
            id                    INTEGER PRIMARY KEY,
            created               REAL NOT NULL,    -- unix time the turn was closed
            bot                   TEXT NOT NULL,
            user                  TEXT NOT NULL,
            session               TEXT NOT NULL,
            model                 TEXT NOT NULL,
            requests              INTEGER NOT NULL,  -- model calls
            input_tokens          INTEGER NOT NULL,  -- uncached input
            output_tokens         INTEGER NOT NULL,
            cache_read_tokens     INTEGER NOT NULL,
            cache_write_tokens    INTEGER NOT NULL,
            cache_write_1h_tokens INTEGER NOT NULL   -- the part of the writes with a 1-hour TTL
        );
        CREATE INDEX usage_ledger_created ON usage_ledger (created);
        -- A turn's row, found again by `botrunner db copy` (a rerun copies nothing twice).
        CREATE UNIQUE INDEX usage_ledger_turn ON usage_ledger (bot, user, session, created);
        """,
    )


def _m004_pending_turns(c: sqlite3.Connection) -> None:
    """The turns still pending, for the sweep that closes those of processes that died
    (`fail_abandoned_turns`): a few rows at any time, however long the transcripts."""
    c.execute("CREATE INDEX turns_pending ON turns (created) WHERE status = 'pending'")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m001_initial,
    _m002_token_reservations,
    _m003_usage,
    _m004_pending_turns,
]


def migrate(c: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen yet, each in its own transaction;
    return how many were applied."""
    (version,) = c.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database schema is version {version}, newer than this botrunner knows "
            f"({len(MIGRATIONS)}): a newer botrunner has migrated it; upgrade botrunner"
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
    return len(MIGRATIONS) - version
