"""Storage backends behind one opener.

`open_store("bots.db")`, `open_store("sqlite:///var/lib/botrunner/bots.db")` (the path is what
follows `sqlite://`, so `sqlite:///abs` is absolute and `sqlite://rel.db` relative) or
`open_store(":memory:")`. A backend is a factory registered in `STORES` under its URL scheme;
PostgreSQL and Redis register theirs there later.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from botrunner.store.base import (
    Conversation,
    ConversationKey,
    ConversationStore,
    LimitStore,
    Store,
    StoredMessage,
    TurnStatus,
    UsageRecord,
    UsageStore,
    UsageTotal,
)
from botrunner.store.sqlite import SQLiteStore, StoreClosed

StoreFactory = Callable[[str], Store]

DEFAULT_SCHEME = "sqlite"

STORES: dict[str, StoreFactory] = {
    "sqlite": SQLiteStore,
}


def parse_store_url(url_or_path: str | Path) -> tuple[str, str]:
    """(scheme, location): a plain path (no `scheme://`) is a SQLite file."""
    text = str(url_or_path)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        return scheme.lower(), rest
    return DEFAULT_SCHEME, text


def open_store(url_or_path: str | Path) -> Store:
    """Open (creating if needed) the store named by a path or URL. Raises ValueError for an
    unknown scheme; the backend's own errors (unwritable path, newer schema) otherwise."""
    scheme, location = parse_store_url(url_or_path)
    factory = STORES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(STORES))
        raise ValueError(f"unknown store {scheme!r} in {str(url_or_path)!r} (known: {known})")
    if not location:
        raise ValueError(f"no location in store URL {str(url_or_path)!r}")
    return factory(location)


__all__ = [
    "Conversation",
    "ConversationKey",
    "ConversationStore",
    "LimitStore",
    "STORES",
    "SQLiteStore",
    "Store",
    "StoreClosed",
    "StoredMessage",
    "TurnStatus",
    "UsageRecord",
    "UsageStore",
    "UsageTotal",
    "open_store",
    "parse_store_url",
]
