"""The typed events one turn produces; both transports consume exactly these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one or more model calls, split the way they are billed. None is "not
    reported": some OpenAI-compatible servers send no usage (or no cache counts), and a count
    is never guessed. `input_tokens` is the uncached input only, as the Messages API counts
    it: the whole prompt is `input_tokens + cache_read_tokens + cache_write_tokens`.
    `cache_write_1h_tokens` is the part of the writes made with the 1-hour TTL (priced higher
    than 5-minute writes)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            _plus(self.input_tokens, other.input_tokens),
            _plus(self.output_tokens, other.output_tokens),
            _plus(self.cache_read_tokens, other.cache_read_tokens),
            _plus(self.cache_write_tokens, other.cache_write_tokens),
            _plus(self.cache_write_1h_tokens, other.cache_write_1h_tokens),
        )

    @property
    def prompt_tokens(self) -> int:
        """Every reported prompt token, however it was billed."""
        return (
            (self.input_tokens or 0)
            + (self.cache_read_tokens or 0)
            + (self.cache_write_tokens or 0)
        )

    @property
    def known(self) -> int:
        """Every reported token (the whole prompt, cached or not, and the output): what the
        daily token budget counts."""
        return self.prompt_tokens + (self.output_tokens or 0)

    def to_dict(self) -> dict[str, int | None]:
        out = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.cache_read_tokens is not None:
            out["cache_read_tokens"] = self.cache_read_tokens
        if self.cache_write_tokens is not None:
            out["cache_write_tokens"] = self.cache_write_tokens
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
