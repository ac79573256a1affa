"""Storage backends behind one opener.

`open_store("bots.db")`, `open_store("sqlite:///var/lib/botrunner/bots.db")` (the path is what
follows `sqlite://`, so `sqlite:///abs` is absolute and `sqlite://rel.db` relative),
`open_store(":memory:")` or `open_store("postgresql://user@host:5432/dbname")` (also
`postgres://`). A backend is a factory registered in `STORES` under its URL scheme.
`start_store` opens and starts one (connects, applies migrations) in one step.

Per-user limit counters live in the store unless `open_limits` is given the URL of another
backend registered in `LIMITS` (`redis://host:6379/0`, through the `botrunner[redis]` extra).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from botrunner.store.base import (
    Conversation,
    ConversationKey,
    ConversationStore,
    LimitStore,
    LimitsUnavailable,
    MissingExtra,
    Store,
    StoredMessage,
    StoreError,
    TurnStatus,
)
from botrunner.store.sqlite import SQLiteStore, StoreClosed

StoreFactory = Callable[[str], Store]

DEFAULT_SCHEME = "sqlite"


def _sqlite(location: str) -> Store:
    try:
        return SQLiteStore(location)
    except StoreError:
        raise
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(
            f"cannot open the SQLite store {location!r}: {exc}; check that the path is a "
            "writable file (or a directory botrunner may create it in)"
        ) from exc


def _postgres(location: str) -> Store:
    # Imported here: the driver is an optional extra, and SQLite users never load it.
    from botrunner.store.postgres import PostgresStore

    return PostgresStore(location)


STORES: dict[str, StoreFactory] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def parse_store_url(url_or_path: str | Path) -> tuple[str, str]:
    """(scheme, location): a plain path (no `scheme://`) is a SQLite file. A PostgreSQL
    location is the whole URL, as libpq and the driver read it."""
    text = str(url_or_path)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if STORES.get(scheme) is _postgres:
            return scheme, text
        return scheme, rest
    return DEFAULT_SCHEME, text


def open_store(url_or_path: str | Path) -> Store:
    """The store named by a path or URL, not yet started (SQLite opens its file and migrates
    here already). Raises StoreError for an unknown scheme or a store that cannot be opened."""
    scheme, location = parse_store_url(url_or_path)
    factory = STORES.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(STORES))
        raise StoreError(
            f"unknown store {scheme!r} in {str(url_or_path)!r}: use a file path or a URL "
            f"starting with one of {known}"
        )
    if not location:
        raise StoreError(f"no location in store URL {str(url_or_path)!r}")
    return factory(location)


async def start_store(url_or_path: str | Path) -> Store:
    """Open and start the store (connect, apply migrations): ready for a server or a chat.
    Raises StoreError with one line saying what is wrong and what to do."""
    store = open_store(url_or_path)
    try:
        await store.start()
    except BaseException:
        await store.close()
        raise
    return store


LimitsFactory = Callable[[str], LimitStore]


def _redis(url: str) -> LimitStore:
    from botrunner.store.redis_limits import RedisLimits  # imports redis only when asked for

    return RedisLimits(url)


LIMITS: dict[str, LimitsFactory] = {"redis": _redis, "rediss": _redis}


def open_limits(url: str | None, store: Store) -> LimitStore:
    """The limits backend named by `url`, or `store` itself when `url` is None or empty.
    Raises ValueError for an unknown scheme or a bad URL, MissingExtra when the backend's
    driver is not installed. Connecting happens on first use (or `ping`)."""
    if not url:
        return store
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    factory = LIMITS.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(LIMITS))
        what = f"{scheme}://" if scheme else "a URL without a scheme"
        raise ValueError(f"unknown limits backend {what} (known: {known}; or leave it out)")
    return factory(url)


__all__ = [
    "Conversation",
    "ConversationKey",
    "ConversationStore",
    "LIMITS",
    "LimitStore",
    "LimitsUnavailable",
    "MissingExtra",
    "STORES",
    "SQLiteStore",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoredMessage",
    "TurnStatus",
    "open_limits",
    "open_store",
    "parse_store_url",
    "start_store",
]
