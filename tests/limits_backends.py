"""Every limits backend behind one parametrized fixture, `limits_backend`: the store itself
(SQLite, the default, and PostgreSQL) and Redis (`--limits redis://`, with a SQLite store). A
test that takes it runs once per backend.

Redis is the server at BOTRUNNER_TEST_REDIS (default redis://127.0.0.1:6379/0). Each test
session uses its own key prefix and each test a prefix under it; after a test, every key under
its prefix must have a TTL (else the test fails), and the session's keys are deleted at the
end. Without Redis (or the redis package) the Redis cases skip, saying why, and fail instead
when CI=true.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from botrunner.engine.limits import Limiter
from botrunner.store import start_store
from botrunner.store.base import LimitStore

REDIS_URL = os.environ.get("BOTRUNNER_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(what: str, how: str) -> NoReturn:
    """Skip the test because a server it needs is absent; fail instead when CI=true."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing server fails instead of skipping)")
    pytest.skip(message)


class RedisSession:
    """A sync client for housekeeping, and a key prefix unique to this test session."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.prefix = f"botrunner-test-limits-{uuid.uuid4().hex[:10]}:"
        self._numbers = itertools.count()

    def new_prefix(self) -> str:
        return f"{self.prefix}{next(self._numbers)}:"

    def keys(self, prefix: str) -> list[bytes]:
        return list(self.client.scan_iter(match=prefix + "*", count=500))

    def keys_without_ttl(self, prefix: str) -> list[str]:
        return [k.decode() for k in self.keys(prefix) if self.client.pttl(k) < 0]

    def delete(self, prefix: str) -> None:
        keys = self.keys(prefix)
        if keys:
            self.client.delete(*keys)


@pytest.fixture(scope="session")
def redis_session():
    try:
        import redis
    except ImportError:
        unavailable("The redis package", "pip install 'botrunner[redis]'")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(
            f"Redis at {REDIS_URL}", f"start redis-server or set BOTRUNNER_TEST_REDIS ({exc})"
        )
    session = RedisSession(client)
    yield session
    session.delete(session.prefix)
    client.close()


class Backends:
    """Opens limits backends of one kind over the same counters: a second `open` is another
    process (or the same one restarted). `url` is what `serve --limits` takes (None: the
    store); `db` is what `serve --db` takes (a SQLite file, or a PostgreSQL URL)."""

    def __init__(self, kind: str, db: str, redis: RedisSession | None = None) -> None:
        self.kind = kind
        self.db = db
        self.redis = redis
        self.prefix = redis.new_prefix() if redis is not None else ""
        self.url = f"{REDIS_URL}?prefix={self.prefix}" if redis is not None else None
        self.opened: list[LimitStore] = []

    async def open(self, clock: Callable[[], float] | None = None) -> LimitStore:
        """A backend; `clock` moves time for it (Redis then trusts it instead of its own)."""
        if self.kind == "redis":
            from botrunner.store.redis_limits import RedisLimits

            assert self.url is not None
            backend: LimitStore = RedisLimits(self.url, clock=clock)
        else:
            backend = await start_store(self.db)
        self.opened.append(backend)
        return backend

    async def limiter(self, clock: Callable[[], float] | None = None) -> Limiter:
        return Limiter(await self.open(clock), clock=clock or time.time)

    def keys_without_ttl(self) -> list[str]:
        return [] if self.redis is None else self.redis.keys_without_ttl(self.prefix)

    async def close(self) -> None:
        for backend in self.opened:
            await backend.close()


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def limits_backend(request: pytest.FixtureRequest, tmp_path: Path):
    redis = request.getfixturevalue("redis_session") if request.param == "redis" else None
    if request.param == "postgres":
        from stores import pg_schema_url

        db = pg_schema_url(request.getfixturevalue("pg_database"))
    else:
        db = str(tmp_path / "limits.db")
    backends = Backends(request.param, db, redis)
    yield backends
    await backends.close()
    if redis is not None:
        missing = backends.keys_without_ttl()
        redis.delete(backends.prefix)
        assert not missing, f"Redis keys without a TTL: {missing}"


class RedisProcess:
    """A throwaway `redis-server` on a free loopback port (no persistence), to stop and start
    again on the same port mid-test."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            unavailable("redis-server", "install Redis (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def shared_db(request: pytest.FixtureRequest) -> str:
    """A database several `serve` processes can share: a fresh PostgreSQL schema (`pg_url`,
    which skips without a server and fails under CI=true)."""
    from botrunner.store import STORES

    if "postgresql" not in STORES:
        pytest.skip("needs the PostgreSQL store (botrunner.store.postgres), not in this build yet")
    return request.getfixturevalue("pg_url")
