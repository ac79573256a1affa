"""What the engine needs from storage: conversations (transcripts) and per-user limit counters.

Messages are kept in the Messages API wire shape (`{"role": ..., "content": [blocks]}`) so a
stored turn can be sent back to the model unchanged. A *turn* is one user message plus every
assistant message and tool result it caused; turns that did not complete are kept in the
transcript but never sent to the model again, so a failure can't leave a dangling `tool_use`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from botrunner.events import Usage

TurnStatus = Literal["pending", "ok", "error", "stopped"]


class StoreClosed(RuntimeError):
    """The store was closed; no more calls are accepted."""


class StoreError(RuntimeError):
    """The store cannot be opened or used as configured (unreachable server, wrong
    credentials, missing database, a schema newer than this botrunner...). The message is one
    line for the person who configured it: what is wrong and what to do; never a password."""


class TurnClosed(ValueError):
    """The turn is no longer pending, so nothing more may be written to it: it was closed
    already, perhaps by `fail_abandoned_turns` while its process was in fact still running
    (a client that stopped reading for minutes). What the store holds of it stays as it is."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the command that installs it."""


class LimitsUnavailable(Exception):
    """The limits backend can't be reached, so limits can't be enforced: the request is
    refused (nothing sent upstream) and may be retried after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


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


@dataclass(frozen=True, slots=True)
class Admission:
    """The per-user limits a new turn must pass, checked and counted in one atomic step
    (`LimitStore.admit`, or `TurnStore.start_turn` with the user message). Built by
    `Limiter.admission`.

    Token budget: a turn is admitted while the tokens charged today plus those reserved by turns
    still running are under `tokens_per_day`; an admitted turn then reserves `reserve` tokens
    (its estimate) under the id `reservation`, for `hold` seconds at most. `settle` with the
    same id replaces the estimate by the real usage; a reservation never settled (its process
    died) expires and is dropped, swept by a later admission."""

    bot: str
    user: str
    now: float  # the limiter's clock
    day: str  # the UTC day of `now`, for the token budget
    tokens_per_day: int | None
    requests_per_minute: int | None
    reserve: int = 0
    reservation: str = ""
    hold: float = 0.0


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing was stored or counted: the token budget is used up (`used` tokens charged today,
    `reserved` more held by turns still running) or the request rate is exceeded (`wait`
    seconds until a request would be admitted)."""

    kind: Literal["requests", "tokens"]
    used: int = 0
    wait: float = 0.0
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class RecentTurns:
    """A read `start_turn` does in the same step: the messages of the last `count` completed
    turns before the new one (all when None, none when 0), only those after the running
    summary's last turn when `after_summary`, and, with a `step`, only those after the
    window's start (see `window_start`); what `recent_turns` would return."""

    count: int | None
    after_summary: bool = False
    step: int = 0

    def after(self, conv: Conversation, turn: int) -> int | None:
        """The turn the read for new turn `turn` starts after (exclusive), or None for no
        lower bound."""
        bound = conv.summary_upto if self.after_summary else 0
        if self.step and self.count is not None:
            bound = max(bound, window_start(turn, self.count, self.step))
        return bound or None


def window_start(turn: int, count: int, step: int) -> int:
    """The last turn number *not* sent with turn `turn` by a window of at most `count` earlier
    turns that moves `step` turns at a time: 0 while the `turn - 1` earlier turns fit, then
    the smallest multiple of `step` that leaves at most `count` of them. So the window's start
    stays put for `step` turns and at most `count` turns (at least `count - step + 1` when no
    turn failed) are sent: the prefix of the request is the same for `step` turns in a row."""
    earlier = turn - 1
    if earlier <= count:
        return 0
    return -(-(earlier - count) // step) * step


@dataclass(slots=True)
class StartedTurn:
    """What `start_turn` returns once the turn is admitted and numbered. The user's message is
    durable only once `durable` has resolved: nothing of the reply may be shown before."""

    conv: Conversation
    turn: int
    # The messages `RecentTurns` asked for; None when start_turn was given none.
    recent: list[dict[str, Any]] | None
    durable: asyncio.Future[None]  # may be awaited more than once


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one turn's model calls used, for the usage ledger (`complete_turn` appends it;
    `usage_totals` reads it back). Kept apart from transcripts: deleting a conversation does
    not erase what it cost."""

    model: str
    usage: Usage
    requests: int = 1  # model calls (a turn with tool calls makes several)

    def counts(self) -> tuple[int, int, int, int, int]:
        """The ledger's token columns (input, output, cache read, cache write, the 1-hour part
        of the writes); a count the provider did not report is stored as 0."""
        u = self.usage
        return (
            u.input_tokens or 0,
            u.output_tokens or 0,
            u.cache_read_tokens or 0,
            u.cache_write_tokens or 0,
            u.cache_write_1h_tokens or 0,
        )


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """The ledger summed for one group (a bot, a user or a UTC day) and one model. With a
    `long_prompt_above` threshold, turns whose prompt per model call was longer are summed
    apart (`long_prompt`), for models priced higher above a prompt length."""

    group: str
    model: str
    turns: int
    requests: int
    usage: Usage
    long_prompt: bool = False


UsageGroup = Literal["bot", "user", "day"]


@dataclass(frozen=True, slots=True)
class TokenCharge:
    """A turn's real usage: `tokens` added to the user's count for the UTC `day` its admission
    counted against, and its `reservation` (if any) released, in one step."""

    bot: str
    user: str
    day: str
    tokens: int
    reservation: str = ""


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
