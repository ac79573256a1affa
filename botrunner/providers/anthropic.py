"""The Anthropic provider: the official SDK's raw streaming API, with our own retries.

Why our own retry loop (the client is built with `max_retries=0`): retries must stop at the
first byte of output (a reply already shown to the user is never silently replayed), every wait
must fit in the turn's deadline, and errors must reach users as short, safe messages. The policy
is in `retry`, the mapping of API failures in `anthropic_errors`.

The SDK builds and sends the request (auth, headers, base URL, status errors); the SSE body is
read through `with_streaming_response` and decoded by `sse` into plain dicts, then accumulated
into the final message (`anthropic_stream`). That is cheaper than both the SDK's
`MessageStream` helper (a snapshot of the whole message per event) and its raw event stream (a
line-by-line decoder and a pydantic model per event): about 3 ms instead of 5 ms of CPU for a
32-token streamed reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2

from botrunner.bot import Bot
from botrunner.events import TextDelta
from botrunner.providers import caching
from botrunner.providers.anthropic_errors import classify
from botrunner.providers.anthropic_stream import Accumulator
from botrunner.providers.base import AssistantMessage, ModelRequest, ProviderError, register
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
from botrunner.providers.sse import SSEDecoder, sse_events

# The names the decoder tests import from here.
_Accumulator, _sse_events = Accumulator, sse_events

# SDK releases with OpenTelemetry spans take an `open_telemetry` client option.
_SDK_HAS_TRACING = "open_telemetry" in inspect.signature(anthropic.AsyncAnthropic).parameters

# The SDK's own limits, but at most 32 idle connections kept (the SDK keeps 100): the pool
# checks every idle connection's socket on every request, so after a burst of 128 concurrent
# turns each turn cost up to twice the CPU while the extra connections idled (bench/ab.py).
# Idle ones still live 5 s, so a bot with a message now and then keeps a warm connection.
_POOL_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=32)

ENV_API_KEY = "ANTHROPIC_API_KEY"
ENV_AUTH_TOKEN = "ANTHROPIC_AUTH_TOKEN"


@register("anthropic")
class AnthropicProvider:
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
        self._client: anthropic.AsyncAnthropic | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._checked = False

    # -- configuration --------------------------------------------------------------------

    def key_source(self) -> str:
        """Where the key comes from, for messages: a variable name or the bot file."""
        if self.api_key_env:
            return self.api_key_env
        if self.api_key:
            return "model.api_key in the bot file"
        if not os.environ.get(ENV_API_KEY) and os.environ.get(ENV_AUTH_TOKEN):
            return ENV_AUTH_TOKEN
        return ENV_API_KEY

    def check(self) -> None:
        if self._checked or self.api_key:
            return
        if self.api_key_env:
            # The bot file names its own variable (`api_key: ${NAME}`) and it came out empty.
            raise ProviderError(
                "config",
                f"No API key: the bot reads it from {self.api_key_env}, which is not set. "
                f"Set it, e.g. `export {self.api_key_env}=sk-ant-...`.",
            )
        if os.environ.get(ENV_API_KEY) or os.environ.get(ENV_AUTH_TOKEN):
            self._checked = True
            return
        # No key in the environment: the SDK may still find credentials (a profile on disk,
        # workload identity); ask it the way it would resolve them.
        try:
            client = self._make_client()
        except Exception:  # noqa: BLE001 - a broken credentials setup is a missing key to us
            client = None
        if client is not None and (client.api_key or client.auth_token or client.credentials):
            self._client, self._client_loop = client, None
            self._checked = True
            return
        raise ProviderError(
            "config",
            f"No API key: set {ENV_API_KEY}, e.g. `export {ENV_API_KEY}=sk-ant-...` "
            "(or set model.api_key in the bot file).",
        )

    def _make_client(self) -> anthropic.AsyncAnthropic:
        options: dict[str, Any] = {}
        if _SDK_HAS_TRACING and not _tracing_configured():
            # The SDK would build a span per request that nothing records (about a tenth of
            # its CPU per request); with OpenTelemetry set up, its defaults apply.
            options["open_telemetry"] = {"traces": False, "propagation": False}
        # The deadline is enforced around every await; this only bounds connecting.
        timeout = httpx2.Timeout(timeout=None, connect=10.0)
        return anthropic.AsyncAnthropic(
            api_key=self.api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            http_client=anthropic.DefaultAsyncHttpxClient(timeout=timeout, limits=_POOL_LIMITS),
            **options,
        )

    def _get_client(self) -> anthropic.AsyncAnthropic:
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

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing to close
                await client.close()

    # -- streaming ------------------------------------------------------------------------

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        messages = [_compact(m) for m in request.messages]
        tools, system = request.tools, request.system + request.system_extra
        if request.cache:
            ttl = request.cache_ttl
            messages = caching.mark_messages(messages, ttl)
            tools = caching.mark_tools(tools, ttl)
            system = caching.system_blocks(request.system, request.system_extra, ttl)
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
            "stream": True,
        }
        if system:
            params["system"] = system
        if tools:
            params["tools"] = tools
        if request.temperature is not None:
            # This SDK version has no `temperature` argument; the API still takes it.
            params["extra_body"] = {"temperature": request.temperature}
        return params

    async def stream(
        self, request: ModelRequest, *, deadline: float
    ) -> AsyncIterator[TextDelta | AssistantMessage]:
        self.check()  # a missing key is a clear config error, not a failed request
        client = self._get_client()
        loop = asyncio.get_running_loop()
        # `deadline` is a time.monotonic() value; asyncio wants its loop's clock.
        loop_deadline = loop.time() + (deadline - time.monotonic())
        params = self._params(request)
        attempt = 0
        while True:
            emitted = False
            try:
                # Every await below has its own deadline-bound timeout, never one spanning a
                # `yield`: a timeout armed across a yield would cancel the consumer instead.
                call = client.messages.with_streaming_response.create(**params)
                async with asyncio.timeout_at(loop_deadline):
                    response = await call.__aenter__()
                chunks = response.http_response.aiter_bytes()
                try:
                    acc, decoder = Accumulator(), SSEDecoder()
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

    def _classify(self, exc: BaseException) -> ProviderError | Retryable:
        return classify(
            exc,
            key_source=self.key_source(),
            secrets=(self.api_key, os.environ.get(ENV_API_KEY)),
            where=self._where(),
        )

    def _where(self) -> str:
        client = self._client
        if client is None:
            return ""
        url = client.base_url
        return f" at {url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _tracing_configured() -> bool:
    """Whether the SDK's OpenTelemetry spans could go anywhere: its variables are set, or a
    tracer provider is (the API's default is a proxy that records nothing)."""
    if any(name.startswith("ANTHROPIC_OPEN_TELEMETRY") for name in os.environ):
        return True
    try:
        from opentelemetry import trace
    except ImportError:  # an SDK without tracing
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _compact(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose content is one plain text block, with the text as its content: the same
    request to the API, and a third of the objects for the SDK to copy on every request."""
    content = message["content"]
    if type(content) is list and len(content) == 1:
        block = content[0]
        if len(block) == 2 and block.get("type") == "text" and type(block.get("text")) is str:
            return {"role": message["role"], "content": block["text"]}
    return message


async def _close_quietly(*closeables: Any) -> None:
    for closeable in closeables:
        with contextlib.suppress(Exception):  # the connection is being dropped anyway
            if hasattr(closeable, "aclose"):
                await closeable.aclose()
            else:
                await closeable.__aexit__(None, None, None)
