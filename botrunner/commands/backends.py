"""The backends `serve` needs, checked at start-up: the conversation store (`--db`) and the
limits backend (`--limits`). What can't be used is one line for the person who configured it
(what is wrong, what to do, never a password) and exit code 2.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from botrunner.store import (
    LimitStore,
    LimitsUnavailable,
    MissingExtra,
    open_limits,
    open_store,
    parse_store_url,
)
from botrunner.store.base import Store


class StartupError(Exception):
    """A backend can't be used as configured: one line for the user, exit code 2."""


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


async def open_checked_store(db: str) -> Store:
    """The store for `--db`, opened (and migrated)."""
    return open_store(db)


async def open_checked_limits(url: str | None, store: Store) -> LimitStore:
    """The limits backend for `--limits` (the store when None), checked reachable; raises
    StartupError saying what is wrong and what to do."""
    try:
        limits = open_limits(url, store)
    except (ValueError, MissingExtra) as exc:
        raise StartupError(f"--limits: {exc}") from None
    if limits is store:
        return store
    assert url is not None
    try:
        await limits.ping()
    except LimitsUnavailable as exc:
        await limits.close()
        cause = exc.__cause__ or exc
        raise StartupError(
            f"--limits {shown_url(url)}: can't reach it ({cause}). Start it or fix the URL."
        ) from None
    return limits


async def check(db: str, limits_url: str | None) -> None:
    """Open both backends once and close them: migrations applied, both reachable. Raises
    StartupError (or the store's own error)."""
    store = await open_checked_store(db)
    try:
        limits = await open_checked_limits(limits_url, store)
        if limits is not store:
            await limits.close()
    finally:
        await store.close()
