"""What every route shares: the server's settings and its `ServerState` (bots, engine, metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

from botrunner.botfile.livebot import LiveBots
from botrunner.engine import Engine
from botrunner.server.auth import KeyRing
from botrunner.server.headlimits import HeadLimits
from botrunner.server.metrics import Metrics

# How often every serving process closes the turns that dead processes left pending.
SWEEP_EVERY_SECONDS = 60.0


@dataclass(slots=True)
class Settings:
    keys: KeyRing = field(default_factory=KeyRing)
    # Request bodies above this are refused with 413 before they are read.
    max_body_bytes: int = 64 * 1024
    # Request heads beyond these are refused with 431 before the body is read.
    head_limits: HeadLimits = field(default_factory=HeadLimits)
    # The sweep of abandoned turns (Engine.fail_abandoned_turns): every `sweep_every` seconds,
    # the turns pending for over `abandoned_after` seconds (None: the longest a turn of the
    # loaded bots may run). Not options: only tests shorten them (see commands/serve.py).
    sweep_every: float = SWEEP_EVERY_SECONDS
    abandoned_after: float | None = None


@dataclass(slots=True)
class ServerState:
    live: LiveBots
    engine: Engine
    settings: Settings
    metrics: Metrics
