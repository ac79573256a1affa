"""The records a store keeps and hands back: conversations, messages, turns, admissions and
token usage. Plain frozen data: the stores build them, the engine and the transports read them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

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
