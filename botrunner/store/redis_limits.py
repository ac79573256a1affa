"""LimitStore over Redis (`--limits redis://host:6379/0`): the request rate and the daily token
budget shared by every `serve` process pointed at the same Redis, whatever their database.

Each check-and-count (`admit`) and each charge-and-release (`settle`) is one Lua script, so it
is atomic across processes, and time is the Redis server's clock (`TIME`), so processes on
machines whose clocks disagree still share one exact limit. Every key has a TTL: nothing grows
without bound. The keys of one user of one bot share a hash tag (one cluster slot):

    {prefix}{{bot}:{user}}:rate           GCRA theoretical arrival time (unix s)
    {prefix}{{bot}:{user}}:tokens:{day}   tokens charged for a UTC day
    {prefix}{{bot}:{user}}:held:{day}     reservations of turns in flight: id -> "tokens expires"

The prefix (default `botrunner:`) is the URL's `prefix` query parameter:
`redis://host:6379/0?prefix=myapp:`.

Any Redis error (down, timeout, restarting) is raised as `LimitsUnavailable`: limits that
can't be checked refuse the request. The client reconnects on its own, so requests succeed
again as soon as Redis is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from botrunner.store.base import Admission, LimitsUnavailable, MissingExtra, Refused, TokenCharge

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - exercised by test_redis_extra_missing in a subprocess
    aioredis = None  # type: ignore[assignment]

log = logging.getLogger("botrunner.limits")

INSTALL = "pip install 'botrunner[redis]'"
DEFAULT_PREFIX = "botrunner:"
# A day's token count outlives its day by one more, for turns that settle after midnight.
TOKENS_TTL_SECONDS = 2 * 86400
# Seconds to wait for Redis before refusing the request with a 503.
TIMEOUT_SECONDS = 2.0
# Connections per process: a check or a charge holds one for one round trip.
MAX_CONNECTIONS = 32
# What a refused client is told to wait while Redis is unreachable.
RETRY_AFTER_SECONDS = 5.0

# ARGV: now ('' = the server's clock), tokens_per_day ('' = none), requests_per_minute ('' =
# none), reserve, reservation id, hold seconds. Returns {kind, used, held, wait}; kind 'ok' when
# admitted. Numbers that may have a fraction go back as strings (Redis truncates Lua floats).
_ADMIT = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local tpd = tonumber(ARGV[2])
local rpm = tonumber(ARGV[3])
if tpd then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  local held = 0
  local entries = redis.call('HGETALL', KEYS[3])
  for i = 1, #entries, 2 do
    local tokens, expires = string.match(entries[i + 1], '^(%d+) (%S+)$')
    if tonumber(expires) <= now then
      redis.call('HDEL', KEYS[3], entries[i])
    else
      held = held + tonumber(tokens)
    end
  end
  if used + held >= tpd then
    return {'tokens', used, held, '0'}
  end
end
if rpm then
  local interval = 60 / rpm
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - rpm * interval - now
  if wait > 0.001 then
    return {'requests', 0, 0, string.format('%.6f', wait)}
  end
  local ttl = math.ceil((new_tat - now) * 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl)
end
local reserve = tonumber(ARGV[4])
if tpd and ARGV[5] ~= '' and reserve > 0 then
  local hold = tonumber(ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[5], reserve .. ' ' .. string.format('%.3f', now + hold))
  local want = math.ceil(hold * 1000) + 1000
  if redis.call('PTTL', KEYS[3]) < want then
    redis.call('PEXPIRE', KEYS[3], want)
  end
end
return {'ok', 0, 0, '0'}
"""

# KEYS: tokens, held. ARGV: tokens, reservation id ('' = none), TTL of the day's count.
_SETTLE = """
if ARGV[2] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
local tokens = tonumber(ARGV[1])
if tokens > 0 then
  redis.call('INCRBY', KEYS[1], tokens)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
"""


def split_url(url: str) -> tuple[str, str, str]:
    """(URL for the client without our `prefix` parameter, the key prefix, the URL as it may be
    shown: without a password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis URL: {url!r} (write redis://host:6379/0)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    for name, value in query:
        if name == "prefix":
            prefix = value
    rest = urlencode([(n, v) for n, v in query if n != "prefix"])
    client_url = urlunsplit(parts._replace(query=rest))
    host = parts.hostname or "localhost"
    shown = f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"
    return client_url, prefix, shown


class RedisLimits:
    """The LimitStore protocol over one Redis (see the module docstring). `clock`: None (the
    default) takes the time from the Redis server; a function is used instead only by tests
    that move time."""

    name = "redis"

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None) -> None:
        if aioredis is None:
            raise MissingExtra(f"Redis limits need the redis package: {INSTALL}")
        client_url, self.prefix, self.shown = split_url(url)
        self._clock = clock
        try:
            # A blocking pool: with more requests in flight than connections, a request waits
            # for one (up to the timeout). redis-py's default pool raises "Too many
            # connections" past 100 instead, which turned load into 503s.
            pool = aioredis.BlockingConnectionPool.from_url(
                client_url,
                max_connections=MAX_CONNECTIONS,
                timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
                socket_timeout=TIMEOUT_SECONDS,
                # One quick retry: a pooled connection is dead after Redis restarts, and the
                # retry reconnects. More would keep a request waiting while Redis is down.
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, (RedisConnectionError,)),
            )
            self._client = aioredis.Redis.from_pool(pool)
        except ValueError as exc:
            raise ValueError(f"{self.shown}: {exc}") from None
        self._admit = self._client.register_script(_ADMIT)
        self._settle = self._client.register_script(_SETTLE)
        # Whether the last call reached Redis (None: no call yet). Changes are logged once,
        # not every refused request; a first call that fails is its caller's to report.
        self._up: bool | None = None

    def _keys(self, bot: str, user: str) -> str:
        return f"{self.prefix}{{{bot}:{user}}}"

    async def _run(self, what: str, call: Any) -> Any:
        try:
            result = await call
        except (RedisError, OSError) as exc:
            if self._up:
                log.warning("Redis limits at %s unreachable (%s): %s", self.shown, what, exc)
            self._up = False
            raise LimitsUnavailable(
                "Rate limits can't be checked right now, so the message was not sent. "
                f"Try again in {RETRY_AFTER_SECONDS:g} seconds.",
                RETRY_AFTER_SECONDS,
            ) from exc
        if self._up is False:
            log.warning("Redis limits at %s reachable again", self.shown)
        self._up = True
        return result

    async def admit(self, admission: Admission) -> Refused | None:
        a = admission
        base = self._keys(a.bot, a.user)
        keys = [f"{base}:rate", f"{base}:tokens:{a.day}", f"{base}:held:{a.day}"]
        args = [
            "" if self._clock is None else repr(self._clock()),
            "" if a.tokens_per_day is None else a.tokens_per_day,
            "" if a.requests_per_minute is None else a.requests_per_minute,
            a.reserve,
            a.reservation,
            a.hold,
        ]
        kind, used, held, wait = await self._run("admit", self._admit(keys, args))
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "tokens":
            return Refused("tokens", used=int(used), reserved=int(held))
        if kind == "requests":
            return Refused("requests", wait=float(wait))
        return None

    async def settle(self, charge: TokenCharge) -> None:
        base = self._keys(charge.bot, charge.user)
        keys = [f"{base}:tokens:{charge.day}", f"{base}:held:{charge.day}"]
        args = [int(charge.tokens), charge.reservation, TOKENS_TTL_SECONDS]
        await self._run("settle", self._settle(keys, args))

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        value = await self._run("read", self._client.get(f"{self._keys(bot, user)}:tokens:{day}"))
        return 0 if value is None else int(value)

    async def ping(self) -> None:
        await self._run("ping", self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()
