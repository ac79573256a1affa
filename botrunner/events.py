"""The typed events one turn produces; both transports consume exactly these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a model call used. None is "not reported": some OpenAI-compatible servers send no
    usage, and a count is never guessed. `input_tokens` excludes the prompt tokens read from
    the provider's cache (`cache_read_tokens`), as the Messages API counts them."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            _plus(self.input_tokens, other.input_tokens),
            _plus(self.output_tokens, other.output_tokens),
            _plus(self.cache_read_tokens, other.cache_read_tokens),
        )

    @property
    def known(self) -> int:
        """Every reported token (input, cache reads, output); what token budgets count."""
        return (self.input_tokens or 0) + (self.cache_read_tokens or 0) + (self.output_tokens or 0)

    def to_dict(self) -> dict[str, int | None]:
        out = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.cache_read_tokens is not None:
            out["cache_read_tokens"] = self.cache_read_tokens
        return out


def _plus(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    input: Any


@dataclass(frozen=True, slots=True)
class ToolResult:
    id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Error:
    """A turn ended without a complete reply. `code` is stable and machine-readable;
    `message` is for the end user; `detail` (what the model API said, secrets redacted) is for
    the operator: a terminal may show it, an HTTP transport never sends it."""

    code: str
    message: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Done:
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"


Event = TextDelta | ToolCall | ToolResult | Error | Done
