"""What the providers share: an official SDK's client per event loop, and one streamed model
call run through botrunner's own retry loop.

Why our own retry loop (clients are built with `max_retries=0`): retries must stop at the
first byte of output (a reply already shown to the user is never silently replayed), every wait
must fit in the turn's deadline, and errors must reach users as short, safe messages. The policy
is in `retry`.

The SDK builds and sends the request (auth, headers, base URL, status errors); the SSE body is
read through `with_streaming_response`, decoded by `sse` into plain dicts and accumulated by the
provider's own accumulator. That is cheaper than the SDKs' stream helpers (a pydantic model,
or a snapshot of the whole message, per event): about 3 ms instead of 5 ms of CPU for a
32-token streamed reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from botrunner.bot import Bot
from botrunner.events import TextDelta
from botrunner.providers.base import AssistantMessage, ModelRequest, ProviderError
from botrunner.providers.retry import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    Retryable,
    backoff,
    gave_up,
    interrupted,
    no_time,
    timed_out,
)
from botrunner.providers.sse import SSEDecoder


class Accumulator(Protocol):
    def feed(self, event: dict[str, Any]) -> str | None:
        """Take one decoded event; return the text it adds for the user, if any."""

    def finish(self) -> AssistantMessage:
        """The complete message; raises `errors.StreamCut` if the stream ended too early."""


class SDKProvider:
    """A provider on an official SDK. Subclasses say how to build the client, send a request,
    accumulate its stream and classify its failures."""

    def __init__(
        self,
        bot: Bot,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.base_url = bot.model.base_url or None
        self.api_key = bot.model.api_key or None
        self.api_key_env = bot.model.api_key_env
        self.max_retries = max(0, bot.retry.max_retries)
        self.timeout_seconds = bot.retry.timeout_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # -- what a provider says -------------------------------------------------------------

    def key_source(self) -> str:
        """Where the key comes from, for messages: a variable name or the bot file."""
        raise NotImplementedError

    def check(self) -> None:
        raise NotImplementedError

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _open(self, client: Any, request: ModelRequest) -> Any:
        """The SDK's `with_streaming_response` call for `request` (not yet entered)."""
        raise NotImplementedError

    def _accumulator(self) -> Accumulator:
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> ProviderError | Retryable:
        raise NotImplementedError

    # -- the client -----------------------------------------------------------------------

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._client
        if client is None or (self._client_loop is not None and self._client_loop is not loop):
            # A client's pooled connections belong to one event loop; a new loop (tests, or a
            # CLI that runs one loop per call) gets a new client.
            try:
                client = self._make_client()
            except Exception as exc:  # noqa: BLE001
                raise ProviderError(
                    "config", f"No usable API credentials: check {self.key_source()}."
                ) from exc
            self._client = client
        self._client_loop = loop
        return client

    def _where(self) -> str:
        """ " at <scheme>://<host>[:port]" of the API in use, for messages ("" before use)."""
        client = self._client
        if client is None:
            return ""
        url = client.base_url
        return f" at {url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing to close
                await client.close()

    # -- streaming ------------------------------------------------------------------------

    async def stream(
        self, request: ModelRequest, *, deadline: float
    ) -> AsyncIterator[TextDelta | AssistantMessage]:
        self.check()  # a missing key is a clear config error, not a failed request
        client = self._get_client()
        loop = asyncio.get_running_loop()
        # `deadline` is a time.monotonic() value; asyncio wants its loop's clock.
        loop_deadline = loop.time() + (deadline - time.monotonic())
        attempt = 0
        while True:
            emitted = False
            try:
                # Every await below has its own deadline-bound timeout, never one spanning a
                # `yield`: a timeout armed across a yield would cancel the consumer instead.
                call = self._open(client, request)
                async with asyncio.timeout_at(loop_deadline):
                    response = await call.__aenter__()
                chunks = response.http_response.aiter_bytes()
                try:
                    acc, decoder = self._accumulator(), SSEDecoder()
                    while True:
                        # One timeout per network read, not per event: a read often carries
                        # many events.
                        async with asyncio.timeout_at(loop_deadline):
                            try:
                                chunk = await chunks.__anext__()
                            except StopAsyncIteration:
                                break
                        for event in decoder.feed(chunk):
                            piece = acc.feed(event)
                            if piece:
                                emitted = True
                                yield TextDelta(piece)
                    message = acc.finish()
                finally:
                    await _close_quietly(chunks, call)
            except TimeoutError:
                raise timed_out(emitted, self.timeout_seconds) from None
            except (ProviderError, GeneratorExit, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a safe ProviderError
                failure = self._classify(exc)
                if emitted:
                    raise interrupted(failure) from None
                if not isinstance(failure, Retryable):
                    raise failure from None
                if attempt >= self.max_retries:
                    raise gave_up(failure, attempt + 1) from None
                wait = backoff(attempt, failure.retry_after, self.backoff_base, self.backoff_max)
                if wait >= loop_deadline - loop.time():
                    raise no_time(failure, wait, self.timeout_seconds) from None
                attempt += 1
                if wait > 0:
                    await asyncio.sleep(wait)
                continue
            yield message
            return


async def _close_quietly(*closeables: Any) -> None:
    for closeable in closeables:
        with contextlib.suppress(Exception):  # the connection is being dropped anyway
            if hasattr(closeable, "aclose"):
                await closeable.aclose()
            else:
                await closeable.__aexit__(None, None, None)
