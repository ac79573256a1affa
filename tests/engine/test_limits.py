"""Per-user limits over every real limits backend (the SQLite and PostgreSQL stores, and
Redis, through the `limits_backend` fixture): GCRA requests per minute (atomic under concurrency), tokens per UTC
day with reservations for turns in flight, isolation per user and bot, survival across
restarts."""

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
    estimate_tokens,
    hold_seconds,
    seconds_to_utc_midnight,
    utc_day,
)
from botrunner.events import Usage
from botrunner.templating import Template

# 2025-03-10 12:00:00 UTC
NOON = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()


def make_bot(
    name: str = "tutor", rpm: int | None = None, tpd: int | None = None, max_tokens: int = 256
) -> Bot:
    return Bot(
        name=name,
        model=Model("claude-test", max_tokens),
        system=Template("You are a tutor."),
        path=Path(f"{name}.yaml"),
        version="test",
        limits=Limits(per_user=PerUser(requests_per_minute=rpm, tokens_per_day=tpd)),
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def outcomes(limiter: Limiter, bot: Bot, user: str, n: int) -> list[object]:
    return await asyncio.gather(
        *(limiter.admit(bot, user) for _ in range(n)), return_exceptions=True
    )


def admitted(results: list[object]) -> int:
    return sum(not isinstance(r, BaseException) for r in results)


async def test_100_simultaneous_requests_admit_exactly_5(limits_backend):
    bot = make_bot(rpm=5)
    limiter = await limits_backend.limiter()  # real clock: the calls really are simultaneous
    results = await outcomes(limiter, bot, "alice", 100)
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert admitted(results) == 5 and len(refused) == 95
    assert all(r.kind == "requests" and 0 < r.retry_after <= 12.5 for r in refused)


async def test_gcra_refills_one_per_interval(limits_backend):
    clock = Clock(NOON)
    limiter = await limits_backend.limiter(clock)
    bot = make_bot(rpm=10)  # one every 6 s, burst of 10
    assert admitted(await outcomes(limiter, bot, "u", 11)) == 10
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
    assert admitted(await outcomes(limiter, bot, "u", 11)) == 10


async def test_limits_are_per_user_per_bot(limits_backend):
    limiter = await limits_backend.limiter(Clock(NOON))
    tutor, other = make_bot("tutor", rpm=1), make_bot("other", rpm=1)
    await limiter.admit(tutor, "alice")
    with pytest.raises(RateLimited):
        await limiter.admit(tutor, "alice")
    await limiter.admit(tutor, "bob")
    await limiter.admit(other, "alice")


async def test_no_limits_means_no_checks(limits_backend):
    limiter = await limits_backend.limiter(Clock(NOON))
    bot = make_bot()
    for _ in range(50):
        assert await limiter.admit(bot, "alice") is None


async def test_tokens_per_day(limits_backend):
    clock = Clock(NOON)
    limiter = await limits_backend.limiter(clock)
    bot = make_bot(tpd=1000)
    turn = await limiter.admit(bot, "alice")
    await limiter.record(bot, "alice", Usage(400, 200), turn)
    turn = await limiter.admit(bot, "alice")  # 600 < 1000
    await limiter.record(bot, "alice", Usage(300, 100), turn)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(bot, "alice")
    assert refused.value.kind == "tokens"
    assert refused.value.retry_after == pytest.approx(12 * 3600)
    assert "1,000 tokens" in refused.value.message and "12 hours" in refused.value.message
    await limiter.admit(bot, "bob")  # someone else's budget
    await limiter.admit(make_bot("other", tpd=1000), "alice")  # another bot's budget
    clock.now += 12 * 3600  # midnight UTC: a new day
    await limiter.admit(bot, "alice")


async def test_token_refusal_does_not_use_a_request_slot(limits_backend):
    clock = Clock(NOON + 12 * 3600 - 1)  # a second before midnight UTC
    limiter = await limits_backend.limiter(clock)
    bot = make_bot(rpm=2, tpd=10)
    await limiter.record(bot, "alice", Usage(10, 0))
    for _ in range(5):
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(bot, "alice")
        assert refused.value.kind == "tokens"
    clock.now += 1  # a new day's budget; had the refusals counted, the rate would refuse
    turn = await limiter.admit(bot, "alice")
    await limiter.record(bot, "alice", Usage(1, 0), turn)
    await limiter.admit(bot, "alice")


async def test_simultaneous_turns_reserve_their_estimate(limits_backend):
    """20 turns at once against 1,000 tokens a day: each holds its estimate (256 + its input)
    from admission, so 4 are admitted, not 20; the refusals say the budget is held by replies
    in progress (not spent until midnight) and ask for a short wait."""
    limiter = await limits_backend.limiter(Clock(NOON))
    bot = make_bot(tpd=1000)
    estimate = estimate_tokens(bot, "")
    assert 256 < estimate < 270
    results = await outcomes(limiter, bot, "alice", 20)
    assert admitted(results) == 4  # admitted while 0, 1, 2 or 3 estimates are held
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert {r.kind for r in refused} == {"tokens"}
    assert all("in progress" in r.message and r.retry_after <= 10 for r in refused)
    # The real usage replaces the estimates: 4 x 25 tokens charged, nothing held.
    for turn in [r for r in results if not isinstance(r, BaseException)]:
        await limiter.record(bot, "alice", Usage(20, 5), turn)
    assert await limiter.backend.tokens_used("tutor", "alice", utc_day(NOON)) == 100
    assert admitted(await outcomes(limiter, bot, "alice", 20)) == 4  # 100 + 3 x 263 < 1000


async def test_a_turn_is_charged_to_the_day_it_was_admitted(limits_backend):
    clock = Clock(NOON + 12 * 3600 - 1)  # one second before midnight UTC
    limiter = await limits_backend.limiter(clock)
    bot = make_bot(tpd=1000)
    turn = await limiter.admit(bot, "alice")
    clock.now += 5
    await limiter.record(bot, "alice", Usage(700, 100), turn)
    assert await limiter.backend.tokens_used("tutor", "alice", utc_day(NOON)) == 800
    assert await limiter.backend.tokens_used("tutor", "alice", utc_day(clock.now)) == 0


async def test_a_reservation_never_settled_expires(limits_backend):
    """A process that dies mid-turn never settles its reservation: it holds the budget until
    it expires (the turn's deadline plus a margin), then the next admission drops it."""
    clock = Clock(NOON)
    bot = make_bot(tpd=200)
    dead = await limits_backend.limiter(clock)
    await dead.admit(bot, "alice")  # its turn never ends
    alive = await limits_backend.limiter(clock)
    with pytest.raises(RateLimited) as refused:
        await alive.admit(bot, "alice")
    assert "in progress" in refused.value.message
    clock.now += hold_seconds(bot) - 1
    with pytest.raises(RateLimited):
        await alive.admit(bot, "alice")
    clock.now += 2
    turn = await alive.admit(bot, "alice")
    await alive.record(bot, "alice", Usage(10, 10), turn)
    assert await alive.backend.tokens_used("tutor", "alice", utc_day(NOON)) == 20


async def test_limits_survive_a_restart(limits_backend):
    clock = Clock(NOON)
    bot = make_bot(rpm=3)
    first = await limits_backend.limiter(clock)
    for _ in range(3):
        await first.admit(bot, "alice")
    await first.record(make_bot("tokens", tpd=100), "bob", Usage(90, 20))
    await first.backend.close()

    second = await limits_backend.limiter(clock)
    with pytest.raises(RateLimited) as refused:
        await second.admit(bot, "alice")
    assert refused.value.kind == "requests"
    with pytest.raises(RateLimited) as refused:
        await second.admit(make_bot("tokens", tpd=100), "bob")
    assert refused.value.kind == "tokens"
    assert await second.backend.tokens_used("tokens", "bob", utc_day(NOON)) == 110


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
