"""A conversation the client keeps itself, read like a stored one.

Clients of the OpenAI-compatible endpoint send the whole conversation with every request. So
that the bot's memory policy applies to what they sent (and nothing stored is ever read into
their request), the memory strategies read a `Transcript` built from those messages instead of
the store: the same read methods, answered from memory, with turns numbered from 1. Nothing is
written to it; the reply of the new turn is stored under a conversation of its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from botrunner.store.base import Conversation, ConversationKey
from botrunner.store.messages import fts_query, message_text

# The store's index and ranking (a turn scores as its best message), one row per message.
_INDEX = (
    "CREATE VIRTUAL TABLE t USING fts5(text, conv, turn UNINDEXED, tokenize = 'porter unicode61')"
)
_SEARCH = (
    "WITH hits AS MATERIALIZED (SELECT turn, bm25(t, 1.0, 0.0) AS score FROM t WHERE t MATCH ?1) "
    "SELECT turn, MIN(score) AS best FROM hits WHERE turn < ?2 "
    "GROUP BY turn ORDER BY best, turn LIMIT ?3"
)


class Transcript:
    """Wire-shape messages grouped into turns. A turn starts at a user message that is not
    only tool results; only turns that end with an assistant message are *completed*, as the
    store returns only completed turns."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        turns: list[list[dict[str, Any]]] = []
        for message in messages:
            blocks = message.get("content") or []
            results = all(b.get("type") == "tool_result" for b in blocks)
            if message.get("role") == "user" and not (turns and blocks and results):
                turns.append([])
            if turns:
                turns[-1].append(message)
        # Numbered from 1; None for a turn that was never answered (never sent again).
        self._turns = {
            n: (t if t[-1]["role"] == "assistant" else None) for n, t in enumerate(turns, 1)
        }

    @property
    def next_turn(self) -> int:
        """The number the new message gets: every earlier turn is before it."""
        return len(self._turns) + 1

    def conversation(self, key: ConversationKey) -> Conversation:
        """What a strategy reads besides the messages: no summary, nothing stored."""
        return Conversation(id=0, key=key, turns=len(self._turns))

    def _completed(self, before: int | None, after: int | None) -> list[int]:
        low, high = after or 0, self.next_turn if before is None else before
        return [n for n, t in self._turns.items() if t is not None and low < n < high]

    async def turn_numbers(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[int]:
        numbers = self._completed(before, after)
        if count is None:
            return numbers
        return numbers[len(numbers) - count :] if count > 0 else []

    async def turns(self, conv: Conversation, numbers: list[int]) -> list[dict[str, Any]]:
        return [m for n in sorted(set(numbers)) for m in self._turns.get(n) or []]

    async def recent_turns(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        numbers = await self.turn_numbers(conv, count, before=before, after=after)
        return await self.turns(conv, numbers)

    async def search_turns(
        self, conv: Conversation, query: str, *, before: int, limit: int
    ) -> list[int]:
        """Ranked as the store ranks them (FTS5 BM25, same tokenizer and query), in a
        throwaway in-memory index."""
        match = fts_query(0, query)
        if match is None or limit <= 0:
            return []
        rows = [
            (message_text(m["content"]), "c0", n)
            for n, t in self._turns.items()
            if t is not None
            for m in t
        ]
        with contextlib.closing(sqlite3.connect(":memory:")) as db:
            db.execute(_INDEX)
            db.executemany("INSERT INTO t (text, conv, turn) VALUES (?, ?, ?)", rows)
            found = db.execute(_SEARCH, (match, before, limit)).fetchall()
        return [n for n, _ in found]
