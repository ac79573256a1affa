"""Every store the suite runs against, as fixtures: `store_url` is a fresh, empty store of each
kind in turn (a SQLite file, or a PostgreSQL schema of its own), so one test covers both.

PostgreSQL: the server in BOTRUNNER_TEST_POSTGRES (default: the local one, trust auth, its
`test` database as the maintenance connection). Each test session (each xdist worker is one)
creates its own database, `botrunner_test_<random>`, every test a schema in it, and the
database is dropped at the end. Without a server (or without the driver) those tests skip
with the reason; under CI=true they fail instead, so CI never passes by skipping them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

ADMIN_URL = os.environ.get("BOTRUNNER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
STORE_KINDS = ["sqlite", "postgres"]
_schemas = itertools.count(1)


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL tests need a server: {reason} (set BOTRUNNER_TEST_POSTGRES)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI=true, so this fails instead of skipping", pytrace=False)
    pytest.skip(message)


def _admin(sql: str, url: str = ADMIN_URL) -> None:
    """Run `sql` on its own connection, in a thread of its own: fixtures call this from inside
    a running event loop (async fixtures) as well as outside one."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def database_url(name: str) -> str:
    """ADMIN_URL with its database replaced by `name`."""
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test session's own (URL), dropped at the end."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        _unavailable("the driver is not installed: pip install -e '.[test]'")
    name = f"botrunner_test_{secrets.token_hex(6)}"
    try:
        _admin(f"CREATE DATABASE {name}")
    except Exception as exc:  # noqa: BLE001 - any reason the server can't be used
        _unavailable(f"{ADMIN_URL}: {type(exc).__name__}: {exc}")
    try:
        yield database_url(name)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_schema_url(pg_database: str) -> str:
    """A fresh, empty schema in the session's database, as a store URL."""
    schema = f"t{next(_schemas)}_{secrets.token_hex(3)}"
    _admin(f"CREATE SCHEMA {schema}", pg_database)
    return f"{pg_database}?search_path={schema}"


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store of each kind: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return pg_schema_url(request.getfixturevalue("pg_database"))


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """An empty PostgreSQL store (for tests only PostgreSQL has)."""
    return pg_schema_url(request.getfixturevalue("pg_database"))


async def scalar(store: object, sql: str) -> object:
    """The value of a one-value query (no parameters) on either store: for tests that look
    at the tables themselves."""
    from botrunner.store import SQLiteStore

    if isinstance(store, SQLiteStore):
        return await store.call(lambda c: c.execute(sql).fetchone()[0])
    return await store.db.fetchval(sql)  # type: ignore[attr-defined]
