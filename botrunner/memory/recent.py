"""The strategies that send the most recent completed turns: `none` (no earlier turn), `full`
(every one) and `window` (the last `max_turns - 1`, dropped `window_step` at a time). Each is
one indexed read, which the store does in the same step as the turn's start (`RecentTurns`).
"""

from __future__ import annotations

from typing import Any

from botrunner.bot import Bot
from botrunner.memory.base import Context, RecentStrategy, earlier_turns, window_step
from botrunner.store.base import Conversation, RecentTurns


class NoMemory(RecentStrategy):
    """Every message stands alone."""

    def recent(self, bot: Bot) -> RecentTurns:
        return RecentTurns(0)

    def from_recent(self, conv: Conversation, bot: Bot, messages: list[dict[str, Any]]) -> Context:
        return Context([])


class FullMemory(RecentStrategy):
    """Every completed turn (grows with the conversation, by definition)."""

    def recent(self, bot: Bot) -> RecentTurns:
        return RecentTurns(None)

    def from_recent(self, conv: Conversation, bot: Bot, messages: list[dict[str, Any]]) -> Context:
        return Context(messages)


class WindowMemory(RecentStrategy):
    """The recent completed turns, at most `max_turns - 1`, dropped `window_step` at a time
    (see `window_start`): one indexed read."""

    def recent(self, bot: Bot) -> RecentTurns:
        return RecentTurns(earlier_turns(bot.memory), step=window_step(bot.memory))

    def from_recent(self, conv: Conversation, bot: Bot, messages: list[dict[str, Any]]) -> Context:
        return Context(messages)
