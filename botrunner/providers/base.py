"""The provider interface: one small Protocol, and a registry keyed by `model.provider`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botrunner.events import TextDelta, Usage


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str
    max_tokens: int
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    temperature: float | None = None
    # OpenAI's reasoning models (and local servers that copy it): how much to think first.
    reasoning_effort: str | None = None


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    """The complete assistant message, emitted last by `Provider.stream`."""

    content: list[dict[str, Any]]
    stop_reason: str
    usage: Usage


class ProviderError(Exception):
    """A model call failed. `message` is short and safe to show to a user (no keys, no raw
    upstream bodies); `code` is stable: `auth`, `rate_limited`, `overloaded`, `upstream`,
    `timeout`, `connection`, `bad_request`, `prompt_too_long`, `request_too_large`,
    `stream_interrupted`, `config`. `detail` is what the API said (status, error type, its
    message with secrets redacted, its request id), for the operator: logged, never sent to
    an end user."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


class Provider(Protocol):
    def check(self) -> None:
        """Raise ProviderError('config', ...) when the provider cannot work at all (e.g. no
        API key), naming what to set. Called before the first message is sent."""

    def stream(
        self, request: ModelRequest, *, deadline: float
    ) -> AsyncIterator[TextDelta | AssistantMessage]:
        """Yield text deltas as they arrive, then exactly one AssistantMessage. Retries happen
        only before the first delta; `deadline` is a `time.monotonic()` value the whole call
        (retries and waits included) must finish by. Raises ProviderError."""

    async def aclose(self) -> None: ...


# Called with the bot, and the options `new_provider` passes on (none for `get_provider`).
ProviderFactory = Callable[..., Provider]
PROVIDERS: dict[str, ProviderFactory] = {}


def register(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    def decorate(factory: ProviderFactory) -> ProviderFactory:
        PROVIDERS[name] = factory
        return factory

    return decorate
