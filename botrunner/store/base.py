"""What the engine needs from storage: conversations (transcripts) and per-user limit counters.

Messages are kept in the Messages API wire shape (`{"role": ..., "content": [blocks]}`) so a
stored turn can be sent back to the model unchanged. A *turn* is one user message plus every
assistant message and tool result it caused; turns that did not complete are kept in the
transcript but never sent to the model again, so a failure can't leave a dangling `tool_use`.
"""

from __future__ import annotations

from typing import Any, Protocol

from botrunner.events import Usage

# The records and errors are their own modules; they are re-exported here because every store
# and the engine name them together with the protocols.
from botrunner.store.errors import (
    LimitsUnavailable,
    MissingExtra,
    StoreClosed,
    StoreError,
    TurnClosed,
)
from botrunner.store.records import (
    Admission,
    Conversation,
    ConversationKey,
    RecentTurns,
    Refused,
    StartedTurn,
    StoredMessage,
    TokenCharge,
    TurnStatus,
    UsageGroup,
    UsageRecord,
    UsageTotal,
    window_start,
)

__all__ = [
    "Admission",
    "Conversation",
    "ConversationKey",
    "ConversationStore",
    "LimitStore",
    "LimitsUnavailable",
    "MissingExtra",
    "RecentTurns",
    "Refused",
    "StartedTurn",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoredMessage",
    "TokenCharge",
    "TurnClosed",
    "TurnStatus",
    "TurnStore",
    "UsageGroup",
    "UsageRecord",
    "UsageStore",
    "UsageTotal",
    "window_start",
]


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

    async def fail_abandoned_turns(self, older_than_seconds: float) -> int:
        """Close as `error` every turn of every conversation still pending more than
        `older_than_seconds` after it started (the store's clock, as for `created`): the
        process running it died (SIGKILL, a crash, a power cut), so nobody will finish it.
        One statement, over an index of the pending turns only; returns how many it closed.
        Writing to such a turn afterwards raises TurnClosed."""

    async def delete(self, key: ConversationKey) -> bool: ...

    async def close(self) -> None: ...


class LimitStore(Protocol):
    """Per-user limit counters: the SQLite store itself by default, or another backend
    (`botrunner.store.open_limits`)."""

    async def admit(self, admission: Admission) -> Refused | None:
        """Atomically check and count `admission`: the token budget first (a refusal never
        uses a request slot), then the request rate (GCRA, burst = requests_per_minute), then
        reserve the estimate. None when admitted; `Refused` with nothing counted otherwise."""

    async def settle(self, charge: TokenCharge) -> None:
        """Atomically add the turn's real tokens and release its reservation."""

    async def tokens_used(self, bot: str, user: str, day: str) -> int:
        """Tokens charged for `day` (not counting reservations)."""

    async def ping(self) -> None:
        """Raise (LimitsUnavailable or the backend's error) when the backend can't be used."""

    async def close(self) -> None: ...


class TurnStore(Protocol):
    """A turn's start and end, each as ONE durable write (one transaction, one commit) instead
    of several. What the engine uses; the finer-grained methods above serve memory strategies,
    the HTTP API and tests."""

    async def start_turn(
        self,
        key: ConversationKey,
        content: list[dict[str, Any]],
        admission: Admission | None,
        recent: RecentTurns | None = None,
    ) -> StartedTurn | Refused:
        """Atomically: check and count `admission` (exactly as `admit` would), open (or
        create) the conversation and store `content` as the user message of a new pending turn,
        like `open` + `begin_turn`; and read `recent`.
        Returns the new turn, or `Refused` with nothing stored or counted. It may return
        before the write is durable (see `StartedTurn.durable`), not before it is decided."""

    async def complete_turn(
        self,
        conv: Conversation,
        turn: int,
        status: TurnStatus,
        messages: list[tuple[str, list[dict[str, Any]], Usage | None]],
        charge: TokenCharge | None = None,
        record: UsageRecord | None = None,
    ) -> TurnStatus:
        """Atomically: append `messages` (role, content, usage) to the pending turn as
        `add_message` would, close it as `finish_turn` would (returning the status stored),
        settle `charge` as `settle` would and append `record` to the usage ledger (with the
        conversation's bot, user and session and the time). On an error nothing of it is
        stored."""


class UsageStore(Protocol):
    """The usage ledger, read back for `botrunner usage`."""

    async def usage_totals(
        self,
        *,
        by: UsageGroup,
        since: float | None = None,
        long_prompt_above: int | None = None,
    ) -> list[UsageTotal]:
        """The ledger since the unix time `since` (all of it when None), summed per group
        (`bot`, `user`, or `day`: the UTC date, YYYY-MM-DD) and model, ordered by group then
        model. With `long_prompt_above`, the turns whose prompt per model call
        (prompt tokens / requests) is longer are summed in rows of their own."""


class Store(ConversationStore, LimitStore, TurnStore, UsageStore, Protocol):
    """One backend serving all: what `botrunner.store.open_store` returns."""

    async def start(self) -> None:
        """Connect and apply migrations; raise StoreError when that is impossible. Call once,
        before anything else (`botrunner.store.start_store` does both steps)."""
