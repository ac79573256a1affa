"""Prometheus metrics, per app (a private CollectorRegistry, so several apps in one process,
as in tests, never collide): requests, errors, tokens, latency and time to first token per bot.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from botrunner.engine.turnlog import TurnRecord

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "botrunner_requests",
            "Chat requests by bot, API (native/openai) and HTTP status.",
            ["bot", "api", "status"],
            registry=r,
        )
        self.errors = Counter(
            "botrunner_errors",
            "Turns or requests that failed, by bot and error code.",
            ["bot", "code"],
            registry=r,
        )
        self.tokens = Counter(
            "botrunner_tokens",
            "Model tokens by bot and direction (input, cache_read, output).",
            ["bot", "direction"],
            registry=r,
        )
        self.latency = Histogram(
            "botrunner_turn_latency_seconds",
            "Time from request to the end of the reply, by bot.",
            ["bot"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "botrunner_time_to_first_token_seconds",
            "Time from request to the first streamed text, by bot.",
            ["bot"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "botrunner_streams_in_flight", "Replies being streamed now.", ["bot"], registry=r
        )
        self.bots_loaded = Gauge("botrunner_bots_loaded", "Bots currently loaded.", registry=r)
        self.reload_errors = Gauge(
            "botrunner_bot_files_with_errors",
            "Bot files whose last edit failed to load (the previous version keeps serving).",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def turn(self, bot: str, api: str) -> TurnTimer:
        return TurnTimer(self, bot, api)


class TurnTimer:
    """Observes one streamed turn: first token, tokens, outcome, latency."""

    def __init__(self, metrics: Metrics, bot: str, api: str) -> None:
        self.m, self.bot, self.api = metrics, bot, api
        self.started = time.monotonic()
        self.first_token: float | None = None
        metrics.requests.labels(bot, api, "200").inc()
        metrics.in_flight.labels(bot).inc()

    def text(self) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic()
            self.m.ttft.labels(self.bot).observe(self.first_token - self.started)

    def finish(self, record: TurnRecord, error_code: str | None) -> None:
        m, bot = self.m, self.bot
        m.in_flight.labels(bot).dec()
        m.latency.labels(bot).observe(time.monotonic() - self.started)
        if record.input_tokens:
            m.tokens.labels(bot, "input").inc(record.input_tokens)
        if record.cache_read_tokens:
            m.tokens.labels(bot, "cache_read").inc(record.cache_read_tokens)
        if record.output_tokens:
            m.tokens.labels(bot, "output").inc(record.output_tokens)
        if error_code is not None:
            m.errors.labels(bot, error_code).inc()


def refused(metrics: Metrics, bot: str, api: str, status: int, code: str) -> None:
    metrics.requests.labels(bot, api, str(status)).inc()
    metrics.errors.labels(bot, code).inc()
