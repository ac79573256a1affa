"""What only the Redis limits backend has: the server's clock, a TTL on every key, its URL and
its optional dependency. (The limit behaviour itself is tested on every backend by
tests/engine/test_limits.py through the `limits_backend` fixture.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from limits_backends import REDIS_URL

from botrunner.engine.limits import Limiter, RateLimited, hold_seconds
from botrunner.events import Usage
from botrunner.store import open_limits
from botrunner.store.base import LimitsUnavailable
from botrunner.store.redis_limits import TOKENS_TTL_SECONDS, RedisLimits, split_url

ROOT = Path(__file__).resolve().parents[2]


def bot(rpm: int | None = None, tpd: int | None = None):
    from engine.test_limits import make_bot

    return make_bot(rpm=rpm, tpd=tpd)


async def test_processes_whose_clocks_disagree_share_one_exact_limit(redis_session):
    """Time is the Redis server's: a process whose clock runs 30 s ahead can't use the burst
    another process's clock has not refilled yet (with its own clock it would get 2 more)."""
    url = f"{REDIS_URL}?prefix={redis_session.new_prefix()}"
    now = time.time
    behind, ahead = RedisLimits(url), RedisLimits(url)
    try:
        first = Limiter(behind, clock=now)
        second = Limiter(ahead, clock=lambda: now() + 30)
        limited = bot(rpm=5)  # 5 at once, then one every 12 s
        results = await asyncio.gather(
            *(first.admit(limited, "alice") for _ in range(5)),
            *(second.admit(limited, "alice") for _ in range(5)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 5
        assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))
    finally:
        await behind.close()
        await ahead.close()


async def test_more_requests_in_flight_than_connections_wait_for_one(redis_session):
    """300 simultaneous admissions through one backend (over its pool of connections, and
    over redis-py's default of 100): every one is decided, none is refused as unavailable."""
    backend = RedisLimits(f"{REDIS_URL}?prefix={redis_session.new_prefix()}")
    try:
        limiter = Limiter(backend)
        results = await asyncio.gather(
            *(limiter.admit(bot(rpm=50), f"user{i % 3}") for i in range(300)),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, LimitsUnavailable)]
        assert sum(not isinstance(r, BaseException) for r in results) == 150  # 50 x 3 users
    finally:
        await backend.close()


async def test_every_key_has_a_ttl_matching_what_it_holds(redis_session):
    prefix = redis_session.new_prefix()
    backend = RedisLimits(f"{REDIS_URL}?prefix={prefix}")
    try:
        limiter = Limiter(backend)
        limited = bot(rpm=6, tpd=10_000)
        turn = await limiter.admit(limited, "alice")
        held = await limiter.admit(limited, "alice")  # never settled
        assert held is not None
        await limiter.record(limited, "alice", Usage(10, 5), turn)
        client = redis_session.client
        ttls = {k.decode().rsplit("}", 1)[1]: client.pttl(k) for k in redis_session.keys(prefix)}
        assert set(ttls) == {":rate", f":tokens:{held.day}", f":held:{held.day}"}
        # The rate key lives until the burst is whole again (2 requests = 20 s at 6/min).
        assert 19_000 < ttls[":rate"] <= 21_000
        day_ms = ttls[f":tokens:{held.day}"]
        assert TOKENS_TTL_SECONDS * 1000 - 5_000 < day_ms <= TOKENS_TTL_SECONDS * 1000
        # Reservations last as long as the newest one may.
        assert 0 < ttls[f":held:{held.day}"] <= hold_seconds(limited) * 1000 + 1000
        assert redis_session.keys_without_ttl(prefix) == []
    finally:
        await backend.close()
        redis_session.delete(prefix)


async def test_the_url_chooses_the_prefix_and_hides_the_password():
    client_url, prefix, shown = split_url(
        "redis://:s3cret@cache:6380/2?prefix=app:&ssl_cert_reqs=none"
    )
    assert client_url == "redis://:s3cret@cache:6380/2?ssl_cert_reqs=none"
    assert prefix == "app:" and shown == "redis://cache:6380/2"
    assert split_url("redis://localhost")[1:] == ("botrunner:", "redis://localhost:6379/0")
    with pytest.raises(ValueError, match="unknown limits backend memcached://"):
        open_limits("memcached://x", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis://cache:6379/0"):
        RedisLimits("redis://:pw@cache:6379/0?socket_timeout=soon")


async def test_an_unreachable_redis_raises_limits_unavailable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    backend = RedisLimits(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(LimitsUnavailable) as refused:
            await Limiter(backend).admit(bot(rpm=5), "alice")
        assert "can't be checked" in refused.value.message and refused.value.retry_after >= 1
        with pytest.raises(LimitsUnavailable):
            await backend.ping()
    finally:
        await backend.close()


def test_without_the_redis_package_the_error_says_what_to_install():
    code = (
        "import sys; sys.modules['redis'] = None\n"  # as if `redis` were not installed
        "from botrunner.store import open_limits\n"
        "try:\n"
        "    open_limits('redis://127.0.0.1:6379/0', None)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert out.stdout.strip() == (
        "Redis limits need the redis package: pip install 'botrunner[redis]'"
    ), out.stderr
