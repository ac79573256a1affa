"""The OpenAI provider: any Chat Completions endpoint (OpenAI's, a local model server such as
Ollama, llama.cpp, vLLM or LM Studio, or a gateway) through the official SDK's `AsyncOpenAI`,
with botrunner's own retries (see `sdk`).

The stored conversation keeps the Messages API's content blocks whichever provider wrote it;
this provider translates them to Chat Completions messages (`openai_wire`) and the streamed
chunks back (`openai_stream`). Failures are mapped in `openai_errors`.

Connection settings: `model.base_url`, else OPENAI_BASE_URL, else OpenAI's API; `model.api_key`,
else OPENAI_API_KEY. A key is required only by OpenAI's own API: another server (a local one)
is sent no Authorization header at all when there is no key.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai

from botrunner.bot import Bot
from botrunner.providers.base import ModelRequest, ProviderError, register
from botrunner.providers.openai_errors import classify
from botrunner.providers.openai_stream import Accumulator
from botrunner.providers.openai_wire import wire_messages, wire_tools
from botrunner.providers.retry import BACKOFF_BASE, BACKOFF_MAX, Retryable
from botrunner.providers.sdk import SDKProvider

ENV_API_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"
OPENAI_HOST = "api.openai.com"

# As for Anthropic (see `anthropic.POOL_LIMITS`): at most 32 idle connections kept.
POOL_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=32)

# The SDK will not build a client without a key; with none, this one is never sent (the
# request omits the Authorization header).
_NO_KEY = "no-key"
_WITHOUT_AUTH = {"Authorization": openai.Omit()}


@register("openai")
class OpenAIProvider(SDKProvider):
    def __init__(
        self,
        bot: Bot,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        super().__init__(bot, backoff_base=backoff_base, backoff_max=backoff_max)
        url = self.base_url or os.environ.get(ENV_BASE_URL) or ""
        # OpenAI's own API, where a key is required and current models take only
        # `max_completion_tokens`; other servers know `max_tokens` (Ollama knows no other).
        self.is_openai = not url or urlsplit(url).hostname == OPENAI_HOST
        self.max_tokens_field = "max_completion_tokens" if self.is_openai else "max_tokens"

    # -- configuration --------------------------------------------------------------------

    def _key(self) -> str | None:
        return self.api_key or os.environ.get(ENV_API_KEY) or None

    def key_source(self) -> str:
        if self.api_key_env:
            return self.api_key_env
        if self.api_key:
            return "model.api_key in the bot file"
        return ENV_API_KEY

    def check(self) -> None:
        if self.api_key:
            return
        if self.api_key_env:
            # The bot file names its own variable (`api_key: ${NAME}`) and it came out empty.
            raise ProviderError(
                "config",
                f"No API key: the bot reads it from {self.api_key_env}, which is not set. "
                f"Set it, e.g. `export {self.api_key_env}=sk-...`.",
            )
        if os.environ.get(ENV_API_KEY) or not self.is_openai:
            return  # not OpenAI's API: a local server or a gateway, which may need no key
        raise ProviderError(
            "config",
            f"No API key: set {ENV_API_KEY}, e.g. `export {ENV_API_KEY}=sk-...` (or set "
            "model.api_key in the bot file; a local model server in model.base_url needs none).",
        )

    def _make_client(self) -> openai.AsyncOpenAI:
        # The deadline is enforced around every await; this only bounds connecting.
        timeout = httpx2.Timeout(timeout=None, connect=10.0)
        return openai.AsyncOpenAI(
            api_key=self._key() or _NO_KEY,
            base_url=self.base_url,  # None: OPENAI_BASE_URL, else OpenAI's API (the SDK's rule)
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(timeout=timeout, limits=POOL_LIMITS),
        )

    # -- streaming ------------------------------------------------------------------------

    def params(self, request: ModelRequest) -> dict[str, Any]:
        """The Chat Completions request for `request`."""
        params: dict[str, Any] = {
            "model": request.model,
            "messages": wire_messages(request.system, request.messages),
            self.max_tokens_field: request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            params["tools"] = wire_tools(request.tools)
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.reasoning_effort is not None:
            params["reasoning_effort"] = request.reasoning_effort
        return params

    def _open(self, client: openai.AsyncOpenAI, request: ModelRequest) -> Any:
        params = self.params(request)
        # The SDK checks every message and tool against its typed definitions before sending
        # them (an identity for this plain JSON), which cost 5 times the CPU of the rest of a
        # 20-turn streamed call; extra_body, the SDK's way to send fields as they are, takes
        # precedence over the (empty) typed ones.
        extra = {"messages": params.pop("messages")}
        if "tools" in params:
            extra["tools"] = params.pop("tools")
        if self._key() is None:
            params["extra_headers"] = _WITHOUT_AUTH
        return client.chat.completions.with_streaming_response.create(
            messages=[], extra_body=extra, **params
        )

    def _accumulator(self) -> Accumulator:
        return Accumulator()

    def _classify(self, exc: BaseException) -> ProviderError | Retryable:
        where = self._where()
        if where and not self.is_openai:
            where += " (is the model server running?)"
        return classify(
            exc,
            key_source=self.key_source(),
            secrets=(self.api_key, os.environ.get(ENV_API_KEY)),
            where=where,
        )
