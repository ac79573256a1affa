"""A real way to make a SQLite COMMIT fail, for tests of what happens after one: a deferred
foreign key is only checked at COMMIT, so a job that breaks one runs fine and then makes its
whole batch's transaction fail and roll back."""

from __future__ import annotations

import sqlite3

from botrunner.store import SQLiteStore


async def add_deferred_foreign_key(store: SQLiteStore) -> None:
    def create(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
        c.execute(
            "CREATE TABLE IF NOT EXISTS child (parent_id INTEGER REFERENCES parent (id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )

    await store.call(create, write=True)


def break_the_commit(c: sqlite3.Connection) -> int:
    """A job that succeeds but makes its batch's COMMIT fail (after add_deferred_foreign_key)."""
    return c.execute("INSERT INTO child VALUES (99)").lastrowid
