"""The backends `serve` needs, checked at start-up: the conversation store (`--db`) and the
limits backend (`--limits`). What can't be used is a StoreError: one line for the person who
configured it (what is wrong, what to do, never a password), exit code 2 (`botrunner.cli`).
"""

from __future__ import annotations

import os
from typing import IO
from urllib.parse import urlsplit, urlunsplit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second process is not caught there
    fcntl = None  # type: ignore[assignment]

from botrunner.store import (
    LimitStore,
    LimitsUnavailable,
    MissingExtra,
    open_limits,
    parse_store_url,
    start_store,
)
from botrunner.store.base import Store, StoreError


def shown_url(url: str) -> str:
    """`url` as it may be printed: without a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def shared_by_processes(db: str) -> bool:
    """Whether several processes may use the store `db` at once (`serve --workers`). A SQLite
    file has one writer process by design (its writer thread's group commit); PostgreSQL is
    shared."""
    return parse_store_url(db)[0] != "sqlite"


def claim_sqlite_file(db: str) -> IO[str] | None:
    """For a SQLite `db`, an exclusive lock on `<file>.lock`, held until the returned file is
    closed (or the process ends, however it ends), so that a second `serve` on the same file
    is refused: its writer thread commits in groups as the file's one writing process, and
    several processes serving one bot as one service is what PostgreSQL is for. None for
    other stores. Raises StoreError naming the process that holds it."""
    scheme, location = parse_store_url(db)
    if fcntl is None or scheme != "sqlite" or location in ("", ":memory:"):
        return None
    path = os.path.realpath(location) + ".lock"
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process
    except OSError:
        return None  # a directory botrunner can't write in: the store itself says so
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise StoreError(
            f"{location} is already served by another botrunner serve ({who}); a SQLite file "
            "has one serving process. Stop that one, give this one its own --db, or run "
            "several processes on one database with --db postgresql://USER@HOST:5432/DBNAME"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


async def open_checked_store(db: str) -> Store:
    """The store for `--db`, connected and migrated."""
    return await start_store(db)


async def open_checked_limits(url: str | None, store: Store) -> LimitStore:
    """The limits backend for `--limits` (the store when None), checked reachable; raises
    StoreError saying what is wrong and what to do."""
    try:
        limits = open_limits(url, store)
    except (ValueError, MissingExtra) as exc:
        raise StoreError(f"--limits: {exc}") from None
    if limits is store:
        return store
    assert url is not None
    try:
        await limits.ping()
    except LimitsUnavailable as exc:
        await limits.close()
        cause = exc.__cause__ or exc
        raise StoreError(
            f"--limits {shown_url(url)}: can't reach it ({cause}). Start it or fix the URL."
        ) from None
    return limits


async def check(db: str, limits_url: str | None) -> None:
    """Open both backends once and close them: migrations applied, both reachable. Raises
    StoreError."""
    store = await open_checked_store(db)
    try:
        limits = await open_checked_limits(limits_url, store)
        if limits is not store:
            await limits.close()
    finally:
        await store.close()
