"""Per-user limits over every real store (SQLite, PostgreSQL): GCRA requests per minute (atomic under
concurrency), tokens per UTC day, isolation per user and bot, and survival across restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from botrunner.bot import Bot, Limits, Model, PerUser
from botrunner.engine.limits import (
    Limiter,
    RateLimited,
    describe_wait,
    seconds_to_utc_midnight,
    utc_day,
)
from botrunner.events import Usage
from botrunner.store import start_store

# 2025-03-10 12:00:00 UTC
NOON = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()


def make_bot(name: str = "tutor", rpm: int | None = None, tpd: int | None = None) -> Bot:
    return Bot(
        name=name,
        model=Model("claude-test", 256),
        system="You are a tutor.",  # type: ignore[arg-type]  # stand-in for a Template
        path=Path(f"{name}.yaml"),
        version="test",
        limits=Limits(per_user=PerUser(requests_per_minute=rpm, tokens_per_day=tpd)),
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(store_url: str):
    s = await start_store(store_url)
    yield s
    await s.close()


async def outcomes(limiter: Limiter, bot: Bot, user: str, n: int) -> list[RateLimited | None]:
    return await asyncio.gather(
        *(limiter.admit(bot, user) for _ in range(n)), return_exceptions=True
    )


async def test_100_simultaneous_requests_admit_exactly_5(store):
    bot = make_bot(rpm=5)
    limiter = Limiter(store)  # real clock: the calls really are simultaneous
    results = await outcomes(limiter, bot, "alice", 100)
    admitted = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(admitted) == 5 and len(refused) == 95
    assert all(r.kind == "requests" and 0 < r.retry_after <= 12.5 for r in refused)


async def test_gcra_refills_one_per_interval(store):
    clock = Clock(NOON)
    limiter = Limiter(store, clock=clock)
    bot = make_bot(rpm=10)  # one every 6 s, burst of 10
    assert [r is None for r in await outcomes(limiter, bot, "u", 11)].count(True) == 10
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(bot, "u")
    assert refused.value.retry_after == pytest.approx(6.0)
    assert refused.value.message == (
        "You're sending messages too fast: 10 per minute is the limit. Try again in 6 seconds."
    )
    clock.now += 6
    await limiter.admit(bot, "u")
    with pytest.raises(RateLimited):
        await limiter.admit(bot, "u")
    clock.now += 60  # a full minute idle restores the whole burst
    assert [r is None for r in await outcomes(limiter, bot, "u", 11)].count(True) == 10


async def test_limits_are_per_user_per_bot(store):
    limiter = Limiter(store, clock=Clock(NOON))
    tutor, other = make_bot("tutor", rpm=1), make_bot("other", rpm=1)
    await limiter.admit(tutor, "alice")
    with pytest.raises(RateLimited):
        await limiter.admit(tutor, "alice")
    await limiter.admit(tutor, "bob")
    await limiter.admit(other, "alice")


async def test_no_limits_means_no_checks(store):
    limiter = Limiter(store, clock=Clock(NOON))
    bot = make_bot()
    for _ in range(50):
        await limiter.admit(bot, "alice")


async def test_tokens_per_day(store):
    clock = Clock(NOON)
    limiter = Limiter(store, clock=clock)
    bot = make_bot(tpd=1000)
    await limiter.admit(bot, "alice")
    await limiter.record(bot, "alice", Usage(400, 200))
    await limiter.admit(bot, "alice")  # 600 < 1000
    await limiter.record(bot, "alice", Usage(300, 100))
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(bot, "alice")
    assert refused.value.kind == "tokens"
    assert refused.value.retry_after == pytest.approx(12 * 3600)
    assert "1,000 tokens" in refused.value.message and "12 hours" in refused.value.message
    await limiter.admit(bot, "bob")  # someone else's budget
    await limiter.admit(make_bot("other", tpd=1000), "alice")  # another bot's budget
    clock.now += 12 * 3600  # midnight UTC: a new day
    await limiter.admit(bot, "alice")


async def test_token_refusal_does_not_use_a_request_slot(store):
    clock = Clock(NOON)
    limiter = Limiter(store, clock=clock)
    bot = make_bot(rpm=2, tpd=10)
    await limiter.record(bot, "alice", Usage(10, 0))
    for _ in range(5):
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(bot, "alice")
        assert refused.value.kind == "tokens"
    clock.now += 86400
    await limiter.admit(bot, "alice")
    await limiter.admit(bot, "alice")


async def test_limits_survive_a_restart(store_url: str):
    clock = Clock(NOON)
    bot = make_bot(rpm=3, tpd=100)
    first = await start_store(store_url)
    limiter = Limiter(first, clock=clock)
    for _ in range(3):
        await limiter.admit(bot, "alice")
    await limiter.record(make_bot("tokens", tpd=100), "bob", Usage(90, 20))
    await first.close()

    second = await start_store(store_url)
    try:
        limiter = Limiter(second, clock=clock)
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(bot, "alice")
        assert refused.value.kind == "requests"
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(make_bot("tokens", tpd=100), "bob")
        assert refused.value.kind == "tokens"
        assert await second.tokens_used("tokens", "bob", utc_day(NOON)) == 110
    finally:
        await second.close()


def test_helpers():
    assert utc_day(NOON) == "2025-03-10"
    assert seconds_to_utc_midnight(NOON) == pytest.approx(43200)
    assert describe_wait(0.2) == "1 second"
    assert describe_wait(12) == "12 seconds"
    assert describe_wait(61) == "2 minutes"
    assert describe_wait(3600) == "1 hour"
    assert describe_wait(3 * 3600 + 300) == "3 hours 5 minutes"
    err = RateLimited(3.0, "slow down", "requests")
    assert (err.retry_after, err.message, err.kind, str(err)) == (
        3.0,
        "slow down",
        "requests",
        "slow down",
    )
