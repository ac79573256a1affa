"""What the engine needs from storage: conversations (transcripts) and per-user limit counters.

Messages are kept in the Messages API wire shape (`{"role": ..., "content": [blocks]}`) so a
stored turn can be sent back to the model unchanged. A *turn* is one user message plus every
assistant message and tool result it caused; turns that did not complete are kept in the
transcript but never sent to the model again, so a failure can't leave a dangling `tool_use`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from botrunner.events import Usage

TurnStatus = Literal["pending", "ok", "error", "stopped"]


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Sessions belong to users: the same session id under two users is two conversations."""

    bot: str
    user: str
    session: str


@dataclass(slots=True)
class Conversation:
    id: int
    key: ConversationKey
    # Number of turns ever started (the next turn is `turns + 1`).
    turns: int
    # summarize memory: the running summary and the last turn it covers (0 = none yet).
    summary: str = ""
    summary_upto: int = 0


@dataclass(frozen=True, slots=True)
class StoredMessage:
    turn: int
    role: str
    content: list[dict[str, Any]]
    status: TurnStatus
    created: float
    usage: Usage | None = None


class ConversationStore(Protocol):
    async def open(self, key: ConversationKey) -> Conversation:
        """Return the conversation, creating it if it does not exist."""

    async def find(self, key: ConversationKey) -> Conversation | None: ...

    async def begin_turn(self, conv: Conversation, content: list[dict[str, Any]]) -> int:
        """Durably store the user's message as a new pending turn; return its number."""

    async def add_message(
        self,
        conv: Conversation,
        turn: int,
        role: str,
        content: list[dict[str, Any]],
        usage: Usage | None = None,
    ) -> None: ...

    async def finish_turn(
        self, conv: Conversation, turn: int, status: TurnStatus
    ) -> TurnStatus | None:
        """Close a turn. A backend may refuse to store `ok` for a turn that is not a complete
        exchange (see SQLiteStore) and store `error` instead; it returns what it stored."""

    async def recent_turns(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        """Messages of the last `count` completed turns (all when None) before turn `before`
        (exclusive; None = no bound) and after turn `after` (exclusive; None = no bound),
        oldest first, in wire shape."""

    async def turn_numbers(
        self,
        conv: Conversation,
        count: int | None,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> list[int]:
        """Numbers of the last `count` completed turns in (`after`, `before`), oldest first."""

    async def turns(self, conv: Conversation, numbers: list[int]) -> list[dict[str, Any]]:
        """Messages of the given completed turns, in turn order, in wire shape."""

    async def search_turns(
        self, conv: Conversation, query: str, *, before: int, limit: int
    ) -> list[int]:
        """Completed turns before `before` most relevant to `query` (FTS5 BM25), best first.
        `query` is plain text: the store turns its words into a safe full-text query itself
        (any words matching, each quoted; no operators), so user text can be passed as is."""

    async def set_summary(self, conv: Conversation, summary: str, upto: int) -> None:
        """Store the running summary covering turns up to `upto` and update `conv`. Never moves
        backwards: a call with `upto` <= the stored `summary_upto` changes nothing."""

    async def history(self, key: ConversationKey) -> list[StoredMessage]: ...

    async def delete(self, key: ConversationKey) -> bool: ...

    async def close(self) -> None: ...


class LimitStore(Protocol):
    async def take_request(self, bot: str, user: str, per_minute: int, now: float) -> float:
        """Atomically admit one request under a `per_minute` limit (burst = per_minute).
        Return 0.0 when admitted, else the seconds until one would be (nothing recorded)."""

    async def tokens_used(self, bot: str, user: str, day: str) -> int: ...

    async def add_tokens(self, bot: str, user: str, day: str, tokens: int) -> None: ...

    async def close(self) -> None: ...


class Store(ConversationStore, LimitStore, Protocol):
    """One backend serving both: what `botrunner.store.open_store` returns."""
