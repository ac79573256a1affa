"""The typed events one turn produces; both transports consume exactly these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    def to_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


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
