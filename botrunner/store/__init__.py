"""Storage backends behind one opener.

`open_store("bots.db")`, `open_store("sqlite:///var/lib/botrunner/bots.db")` (the path is what
follows `sqlite://`, so `sqlite:///abs` is absolute and `sqlite://rel.db` relative) or
`open_store(":memory:")`. A backend is a factory registered in `STORES` under its URL scheme.

Per-user limit counters live in the store unless `open_limits` is given the URL of another
backend registered in `LIMITS` (`redis://host:6379/0`, through the `botrunner[redis]` extra).
"""

from __future__ import annotations

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
    TurnStatus,
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
    "StoredMessage",
    "TurnStatus",
    "open_limits",
    "open_store",
    "parse_store_url",
]
