"""One structured JSON record per turn, on the `botrunner.engine.turn` logger.

The engine fills a `TurnRecord`; transports decide where the logger writes (stderr, a file),
so records never mix with chat output. Message text and secrets are never logged (an
error's `error_detail` is what the model API said, with secrets redacted).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

logger = logging.getLogger("botrunner.engine.turn")


@dataclass(slots=True)
class TurnRecord:
    request_id: str
    bot: str
    bot_version: str
    user: str
    session: str
    model: str
    started: float = field(default_factory=time.time)
    # None: the provider did not report it (see `Usage`).
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tool_calls: list[str] = field(default_factory=list)
    rounds: int = 0
    outcome: str = "ok"
    error_code: str | None = None
    # What the model API said when it refused (secrets redacted); never sent to an end user.
    error_detail: str | None = None


def log_turn(record: TurnRecord) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info("turn", extra={"turn": record})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        turn = getattr(record, "turn", None)
        if isinstance(turn, TurnRecord):
            # Not dataclasses.asdict: it deep-copies every value, on every turn.
            data = {name: getattr(turn, name) for name in _FIELDS}
            data["time"] = _iso(turn.started)
            data["event"] = "turn"
        else:
            data = {"time": _iso(record.created), "level": record.levelname.lower()}
            data["event"] = record.getMessage()
            data.update(getattr(record, "fields", {}))
        return json.dumps(data, separators=(",", ":"), default=str)


_FIELDS = tuple(f.name for f in fields(TurnRecord))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def configure(destination: str | Path | None, *, level: int = logging.INFO) -> None:
    """Send botrunner's structured logs to stderr (None or "-") or append them to a file."""
    handler: logging.Handler
    if destination in (None, "-"):
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(destination, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("botrunner")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
