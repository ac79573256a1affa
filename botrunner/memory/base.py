"""The interface of a memory strategy, and what every strategy builds on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botrunner.bot import Bot, Memory
from botrunner.store.base import Conversation, ConversationStore, RecentTurns

Summarizer = Callable[[str, list[dict[str, Any]]], Awaitable[str]]


@dataclass(frozen=True)
class Context:
    # Past turns to send, wire shape, oldest first.
    messages: list[dict[str, Any]]
    # Appended as is to the rendered system prompt (starts with a blank line when non-empty).
    system_suffix: str = ""
    # Text sent in the new user message, before the user's own text: for context that
    # changes with every message, after the prefix that stays the same (and is cached).
    preamble: str = ""


class MemoryStrategy(Protocol):
    def recent(self, bot: Bot) -> RecentTurns | None:
        """When all this strategy reads is one `RecentTurns`: that read, which the store then
        does in the same step as storing the new message (no second round trip), and
        `from_recent` builds the context from it. None: `context` reads what it needs."""

    def from_recent(self, conv: Conversation, bot: Bot, messages: list[dict[str, Any]]) -> Context:
        """The context from the messages `recent(bot)` asked for."""

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
    """The most earlier completed turns that go verbatim with a new message."""
    return max(memory.max_turns - 1, 0)


def window_step(memory: Memory) -> int:
    """How many old turns `window` and `retrieval` drop at a time: a quarter of max_turns
    (at least 1), so the start of what is sent stays the same for that many messages."""
    return max(memory.max_turns // 4, 1)


class BaseStrategy:
    """Nothing to do after a turn (every strategy but `summarize`); no `RecentTurns` read."""

    def recent(self, bot: Bot) -> RecentTurns | None:
        return None

    def from_recent(self, conv: Conversation, bot: Bot, messages: list[dict[str, Any]]) -> Context:
        raise NotImplementedError(f"{type(self).__name__} reads its own context")

    async def after_turn(
        self, store: ConversationStore, conv: Conversation, bot: Bot, summarize: Summarizer
    ) -> None:
        return None


class RecentStrategy(BaseStrategy):
    """A strategy whose one read is `recent(bot)`: `context` is that read + `from_recent`."""

    def recent(self, bot: Bot) -> RecentTurns:
        raise NotImplementedError

    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        spec = self.recent(bot)
        messages = []
        if spec.count != 0:
            after = spec.after(conv, turn)
            messages = await store.recent_turns(conv, spec.count, before=turn, after=after)
        return self.from_recent(conv, bot, messages)
