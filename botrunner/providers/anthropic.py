"""The Anthropic provider: the official SDK's raw streaming API (Messages), with botrunner's own
retries (see `sdk`). The mapping of API failures is in `anthropic_errors`, the accumulation of
the stream's events in `anthropic_stream`.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import anthropic
import httpx2

from botrunner.bot import Bot
from botrunner.providers.anthropic_errors import classify
from botrunner.providers.anthropic_stream import Accumulator
from botrunner.providers.base import ModelRequest, ProviderError, register
from botrunner.providers.retry import BACKOFF_BASE, BACKOFF_MAX, Retryable
from botrunner.providers.sdk import SDKProvider
from botrunner.providers.sse import sse_events

# The names the decoder tests import from here.
_Accumulator, _sse_events = Accumulator, sse_events

# SDK releases with OpenTelemetry spans take an `open_telemetry` client option.
_SDK_HAS_TRACING = "open_telemetry" in inspect.signature(anthropic.AsyncAnthropic).parameters

# The SDK's own limits, but at most 32 idle connections kept (the SDK keeps 100): the pool
# checks every idle connection's socket on every request, so after a burst of 128 concurrent
# turns each turn cost up to twice the CPU while the extra connections idled (bench/ab.py).
# Idle ones still live 5 s, so a bot with a message now and then keeps a warm connection.
POOL_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=32)

ENV_API_KEY = "ANTHROPIC_API_KEY"
ENV_AUTH_TOKEN = "ANTHROPIC_AUTH_TOKEN"


@register("anthropic")
class AnthropicProvider(SDKProvider):
    def __init__(
        self,
        bot: Bot,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        super().__init__(bot, backoff_base=backoff_base, backoff_max=backoff_max)
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
            http_client=anthropic.DefaultAsyncHttpxClient(timeout=timeout, limits=POOL_LIMITS),
            **options,
        )

    # -- streaming ------------------------------------------------------------------------

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [_compact(m) for m in request.messages],
            "stream": True,
        }
        if request.system:
            params["system"] = request.system
        if request.tools:
            params["tools"] = request.tools
        if request.temperature is not None:
            # This SDK version has no `temperature` argument; the API still takes it.
            params["extra_body"] = {"temperature": request.temperature}
        return params

    def _open(self, client: anthropic.AsyncAnthropic, request: ModelRequest) -> Any:
        return client.messages.with_streaming_response.create(**self._params(request))

    def _accumulator(self) -> Accumulator:
        return Accumulator()

    def _classify(self, exc: BaseException) -> ProviderError | Retryable:
        return classify(
            exc,
            key_source=self.key_source(),
            secrets=(self.api_key, os.environ.get(ENV_API_KEY)),
            where=self._where(),
        )


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
