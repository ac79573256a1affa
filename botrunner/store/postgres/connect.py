"""Reaching PostgreSQL: the driver (an optional extra), the URL, the connection pool, and what
each way of failing to connect means for the person who wrote the URL.

Driver: asyncpg. Measured on the store's hot path (a turn's start and end) under uvloop, as
`serve` runs, it cost about half the client CPU per turn of psycopg 3 with psycopg_pool (0.8 vs
1.4-1.5 ms for the same statements; see the commit that added it).
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

from botrunner.store.base import StoreError

INSTALL = "pip install 'botrunner[postgres]'"
# Connections per process; every `serve` process (and worker) has its own pool.
POOL_SIZE_ENV = "BOTRUNNER_DB_POOL_SIZE"
DEFAULT_POOL_SIZE = 10
CONNECT_TIMEOUT = 10.0


def driver() -> Any:
    """The asyncpg module, or StoreError naming the extra to install."""
    try:
        import asyncpg
    except ImportError as exc:
        raise StoreError(
            f"a postgresql:// store needs the PostgreSQL driver, which is not installed: {INSTALL}"
        ) from exc
    return asyncpg


class Target:
    """A checked PostgreSQL URL, and how to name it in messages without its password."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parts = urlsplit(url)
            port = parts.port  # raises ValueError for a port that is not a number
        except ValueError as exc:
            raise StoreError(
                f"not a valid PostgreSQL URL {redact(url)!r} ({exc}); write it as "
                "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ) from None
        self.user = unquote(parts.username or "") or os.environ.get("PGUSER", "")
        self.database = unquote(parts.path.lstrip("/")) or os.environ.get("PGDATABASE", "")
        host = parts.hostname or os.environ.get("PGHOST", "") or "localhost"
        self.where = f"{host}:{port or os.environ.get('PGPORT', '') or 5432}"
        self.shown = redact(url)

    def pool_size(self) -> int:
        raw = os.environ.get(POOL_SIZE_ENV, "")
        if not raw:
            return DEFAULT_POOL_SIZE
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise StoreError(f"{POOL_SIZE_ENV}={raw!r}: give a whole number of connections, >= 1")
        return size

    async def pool(self) -> Any:
        """Open the connection pool (its first connection proves the URL works)."""
        asyncpg = driver()
        settings = {} if "application_name=" in self.url else {"application_name": "botrunner"}
        size = self.pool_size()
        try:
            return await asyncpg.create_pool(
                self.url,
                min_size=min(2, size),
                max_size=size,
                timeout=CONNECT_TIMEOUT,
                server_settings=settings,
            )
        except Exception as exc:  # every driver error is turned into one line below
            raise self.explain(exc) from exc

    def explain(self, exc: BaseException) -> StoreError:
        """One line for a failed connection: what happened and what to do."""
        asyncpg = driver()
        errors = asyncpg.exceptions
        db, user = self.database or "(the user's name)", self.user or "(your login name)"
        if isinstance(exc, errors.InvalidCatalogNameError):
            return StoreError(
                f"PostgreSQL at {self.where} has no database {db!r}: create it "
                f"(createdb -h {self.where.rsplit(':', 1)[0]} -p {self.where.rsplit(':', 1)[1]} "
                f"{db}) or fix the database name in {self.shown}"
            )
        if isinstance(exc, errors.InvalidPasswordError):
            return StoreError(
                f"PostgreSQL at {self.where} refused the password of user {user!r}: fix the "
                f"password in the URL (or PGPASSWORD, ~/.pgpass) of {self.shown}"
            )
        if isinstance(exc, errors.InvalidAuthorizationSpecificationError):
            return StoreError(
                f"PostgreSQL at {self.where} refused user {user!r} ({_first_line(exc)}): fix "
                f"the user in {self.shown}, or let it in (CREATE ROLE, pg_hba.conf)"
            )
        if isinstance(exc, errors.TooManyConnectionsError):
            return StoreError(
                f"PostgreSQL at {self.where} has no free connections ({_first_line(exc)}): "
                f"raise max_connections or lower {POOL_SIZE_ENV} (now {self.pool_size()})"
            )
        if isinstance(exc, errors.PostgresError):
            return StoreError(f"PostgreSQL at {self.where} refused the connection: {exc}")
        if isinstance(exc, socket.gaierror):
            return StoreError(
                f"cannot reach PostgreSQL at {self.where}: unknown host; fix the host in "
                f"{self.shown}"
            )
        if isinstance(exc, TimeoutError):
            return StoreError(
                f"cannot reach PostgreSQL at {self.where}: no answer within "
                f"{CONNECT_TIMEOUT:.0f} s; check the host, the port and any firewall"
            )
        if isinstance(exc, OSError):
            return StoreError(
                f"cannot reach PostgreSQL at {self.where} ({_reason(exc)}): start the server, "
                f"or fix the host and port in {self.shown}"
            )
        if isinstance(exc, errors.ClientConfigurationError | ValueError):
            return StoreError(
                f"not a valid PostgreSQL URL {self.shown!r}: {_first_line(exc)}; write it as "
                "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            )
        return StoreError(f"cannot connect to PostgreSQL at {self.where}: {_first_line(exc)}")


def redact(url: str) -> str:
    """`url` without its password (the only secret a libpq URL carries in its authority)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@")[-1]
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connection refused: is the server running?"
    return _first_line(exc) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
