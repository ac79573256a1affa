"""The interface of a memory strategy, and what every strategy builds on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botrunner.bot import Bot, Memory
from botrunner.store.base import Conversation, ConversationStore

Summarizer = Callable[[str, list[dict[str, Any]]], Awaitable[str]]


@dataclass(frozen=True)
class Context:
    # Past turns to send, wire shape, oldest first.
    messages: list[dict[str, Any]]
    # Appended as is to the rendered system prompt (starts with a blank line when non-empty).
    system_suffix: str = ""


class MemoryStrategy(Protocol):
    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        """What to send before the current message. `turn` is the current (pending, already
        stored) turn; only earlier turns are returned."""

    async def after_turn(
        self, store: ConversationStore, conv: Conversation, bot: Bot, summarize: Summarizer
    ) -> None:
        """Housekeeping after a turn completed (only `summarize` does any)."""


def earlier_turns(memory: Memory) -> int:
    """How many earlier completed turns go verbatim with a new message."""
    return max(memory.max_turns - 1, 0)


class BaseStrategy:
    """Nothing to do after a turn: every strategy but `summarize`."""

    async def after_turn(
        self, store: ConversationStore, conv: Conversation, bot: Bot, summarize: Summarizer
    ) -> None:
        return None
