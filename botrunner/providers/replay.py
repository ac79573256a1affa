"""The providers of `botrunner test`: `replay` plays recorded model replies back, `record` keeps
every exchange of the bot's own provider.

`replay` needs no key and no network. Each request botrunner makes is compared with the one
recorded at the same place; the first that differs (or one the recording does not have) makes
the replay stale: it is refused with a `stale` error, and `stale` says what changed. A stale
replay never answers again, so a test can never pass on replies meant for another request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botrunner.bot import Bot
from botrunner.events import TextDelta
from botrunner.providers.base import (
    AssistantMessage,
    ModelRequest,
    Provider,
    ProviderError,
    register,
)
from botrunner.providers.tape import (
    error_data,
    message_lines,
    reply_data,
    reply_message,
    request_data,
    request_diff,
)

RERECORD = "rerun with --record"


@dataclass(frozen=True, slots=True)
class Stale:
    """Why a replay stopped: `request` is the 1-based number of the model request in the test."""

    request: int
    reason: str
    diff: str = ""


@register("replay")
class ReplayProvider:
    def __init__(self, bot: Bot, *, exchanges: Sequence[Mapping[str, Any]]) -> None:
        self.exchanges = list(exchanges)
        self.played = 0
        self.stale: Stale | None = None

    def check(self) -> None:
        """Nothing to check: a replay needs no key and no network."""

    async def stream(
        self, request: ModelRequest, *, deadline: float
    ) -> AsyncIterator[TextDelta | AssistantMessage]:
        if self.stale is not None:
            raise ProviderError("stale", f"The replay stopped at request {self.stale.request}.")
        index, current = self.played, request_data(request)
        if index >= len(self.exchanges):
            last = current["messages"][-1] if current["messages"] else {}
            lines = [f"  + {line}" for line in message_lines(last).splitlines()]
            self._stop(
                index, "botrunner now makes a model request the recording does not have", lines
            )
        recorded = self.exchanges[index]
        if recorded.get("request") != current:
            diff = request_diff(recorded.get("request") or {}, current)
            self._stop(index, "the request to the model differs from the recording", [diff])
        self.played += 1
        error = recorded.get("error")
        if error is not None:
            raise ProviderError(
                str(error.get("code", "upstream")),
                str(error.get("message", "")),
                str(error.get("detail", "")),
            )
        message = reply_message(recorded.get("reply") or {})
        for block in message.content:
            if block.get("type") == "text" and block.get("text"):
                yield TextDelta(block["text"])
        yield message

    def finish(self) -> None:
        """At the end of a test: recorded requests botrunner no longer makes are stale too."""
        left = len(self.exchanges) - self.played
        if self.stale is None and left > 0:
            self.stale = Stale(
                self.played + 1,
                f"the recording has {left} more model request{'s' if left > 1 else ''} than "
                f"botrunner makes now; {RERECORD}",
            )

    def _stop(self, index: int, reason: str, lines: list[str]) -> None:
        self.stale = Stale(index + 1, f"{reason}; {RERECORD}", "\n".join(lines))
        raise ProviderError("stale", f"The replay is stale: {reason}.")

    async def aclose(self) -> None:
        pass


@register("record")
class RecordingProvider:
    """Passes every request to `upstream` and appends each exchange (the request, and the reply
    or the error) to `exchanges`, as `replay` reads them. Keys and headers are never part of an
    exchange."""

    def __init__(
        self, bot: Bot, *, upstream: Provider, exchanges: list[dict[str, Any]] | None = None
    ) -> None:
        self.upstream = upstream
        self.exchanges: list[dict[str, Any]] = [] if exchanges is None else exchanges

    def check(self) -> None:
        self.upstream.check()

    async def stream(
        self, request: ModelRequest, *, deadline: float
    ) -> AsyncIterator[TextDelta | AssistantMessage]:
        data = request_data(request)
        try:
            async for item in self.upstream.stream(request, deadline=deadline):
                if isinstance(item, AssistantMessage):
                    self.exchanges.append({"request": data, "reply": reply_data(item)})
                yield item
        except ProviderError as exc:
            self.exchanges.append({"request": data, "error": error_data(exc)})
            raise

    async def aclose(self) -> None:
        pass  # the upstream is the bot's shared provider: closed with the others
