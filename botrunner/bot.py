"""The typed, frozen form of a bot file: what the loader returns and everything else consumes.

Nothing outside `botrunner.botfile.loader` builds these from raw YAML; the engine and the transports
only ever see a `Bot`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

# `Location` lives below the templates that carry it; the loader and the checks import it here.
from botrunner.templating.location import Location

if TYPE_CHECKING:
    from botrunner.templating import BodyTemplate, Template, UrlTemplate

MemoryStrategyName = Literal["none", "full", "window", "summarize", "retrieval"]
CacheMode = Literal["auto", "off"]
CacheTtl = Literal["5m", "1h"]


@dataclass(frozen=True, slots=True)
class EnvRef:
    """One `${NAME}` or `${NAME:-default}` reference in the file."""

    name: str
    default: str | None
    location: Location


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    max_tokens: int
    provider: str = "anthropic"
    temperature: float | None = None
    reasoning_effort: str | None = None  # provider openai only
    # Connection settings: `${NAME}` is resolved at load time. None means "let the SDK decide"
    # (ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL, or OPENAI_API_KEY / OPENAI_BASE_URL).
    base_url: str | None = None
    api_key: str | None = None
    # The variable the key comes from, for error messages that name it.
    api_key_env: str | None = None
    # Prompt caching: `auto` marks the stable prefix of every request (see
    # botrunner.providers.caching); `off` sends no cache_control at all.
    cache: CacheMode = "auto"
    cache_ttl: CacheTtl = "5m"


@dataclass(frozen=True, slots=True)
class Memory:
    strategy: MemoryStrategyName = "window"
    # window/summarize/retrieval: how many recent user turns are sent verbatim.
    max_turns: int = 20
    # retrieval: how many older turns (by relevance) are added ahead of the recent ones.
    retrieve_turns: int = 3
    # summarize: summarise once this many turns have fallen out of the recent window.
    summarize_every: int = 5


@dataclass(frozen=True, slots=True)
class UserAttribute:
    """An attribute of the end user the system template may use (`{{ user.name }}`)."""

    # Longer values are refused (HTTP 400), never cut.
    max_length: int = 200
    description: str = ""


@dataclass(frozen=True, slots=True)
class PerUser:
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_chars: int = 4000
    per_user: PerUser = field(default_factory=PerUser)
    max_tool_rounds: int = 5
    max_tool_calls_per_reply: int = 8


@dataclass(frozen=True, slots=True)
class Retry:
    max_retries: int = 3
    timeout_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ToolHttp:
    method: str
    url: UrlTemplate
    params: Mapping[str, Template] = field(default_factory=dict)
    headers: Mapping[str, Template] = field(default_factory=dict)
    body: BodyTemplate | None = None
    timeout_seconds: float = 10.0
    max_response_bytes: int = 65536
    follow_redirects: bool = False


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    # JSON Schema for the input, checked against the metaschema at load; passed to the model as is.
    input_schema: Mapping[str, Any]
    http: ToolHttp
    location: Location | None = None

    def to_api(self) -> dict[str, Any]:
        """The tool definition in the Messages API wire format."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


@dataclass(frozen=True, slots=True)
class Bot:
    name: str
    model: Model
    system: Template
    path: Path
    # sha256 of the file's bytes (first 12 hex digits): shown on /readyz and in logs.
    version: str
    description: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)
    greeting: str | None = None
    # The user attributes clients may send, by name: the file's `user_attributes:`, else the
    # ones `system` reads, with the default length. `id` is never listed: it is always there.
    user_attributes: Mapping[str, UserAttribute] = field(default_factory=dict)
    memory: Memory = field(default_factory=Memory)
    limits: Limits = field(default_factory=Limits)
    retry: Retry = field(default_factory=Retry)
    tools: tuple[Tool, ...] = ()
    # Every `${NAME}` the file references, for `validate --strict`.
    env_refs: tuple[EnvRef, ...] = ()
    # Resolved values of those references: redacted wherever they could leak.
    secrets: frozenset[str] = frozenset()

    def tool(self, name: str) -> Tool | None:
        for tool in self.tools:
            if tool.name == name:
                return tool
        return None
