"""The conversation engine: (bot, conversation, user message) -> a stream of typed events.

A turn is split in two so transports can answer bad input with a plain error before they
start streaming: `Engine.prepare` checks the message, the limits and the provider, and hands
the user's message to the store (admitted and numbered, and, for the memory strategies that
can, with the earlier turns to send read in the same step); `PreparedTurn.events`
(`botrunner.engine.turn`) talks to the model, runs tools and stores every message of the turn as it
completes. The model request goes out while the store is still making the user's message
durable (the fsync overlaps the model's time to first token), but no event reaches the user
before it is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from botrunner.bot import Bot
from botrunner.engine.limits import Limiter, RateLimited, abandoned_after
from botrunner.engine.turn import NotStored, PreparedTurn
from botrunner.events import Error, Event, Usage
from botrunner.memory import get_strategy
from botrunner.providers import get_provider
from botrunner.providers.base import Provider, ProviderError
from botrunner.store.base import (
    ConversationKey,
    LimitStore,
    LimitsUnavailable,
    Refused,
    Store,
    TokenCharge,
)
from botrunner.store.transcript import Transcript
from botrunner.tools.http import ToolRunner

log = logging.getLogger("botrunner.engine")

# Control characters other than tab and newline (CR is normalised to newline first).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class InputError(Exception):
    """The user's message can't be accepted; nothing was stored. Carries a stable `code`, and
    `details` a client can act on (e.g. the attribute and its limit)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def clean_message(text: str, max_chars: int) -> str:
    """Strip control characters; refuse empty and over-long messages (never cut them)."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise InputError("empty_message", "The message is empty: type something to send.")
    if len(text) > max_chars:
        raise InputError(
            "message_too_long",
            f"The message is {len(text)} characters long; this bot accepts at most "
            f"{max_chars}. Shorten it or split it into several messages.",
        )
    return text


def clean_user(bot: Bot, attributes: Mapping[str, Any], *, trusted: bool = False) -> dict[str, Any]:
    """The user attributes the bot's template gets: each one the bot accepts (see
    `Bot.user_attributes`), as text without control characters, `id` as given (the transport
    has checked it). Refuses an attribute the bot does not accept, unless `trusted` (a backend
    the operator gave a trusted key: it is left out then), and any value over its limit."""
    cleaned: dict[str, Any] = {}
    for name, value in attributes.items():
        if name == "id":
            cleaned[name] = value
            continue
        spec = bot.user_attributes.get(name)
        if spec is None:
            if trusted:
                continue
            accepted = ", ".join(sorted(bot.user_attributes)) or "none"
            raise InputError(
                "unknown_user_attribute",
                f'This bot does not accept the user attribute "{name}" (it accepts: '
                f"{accepted}). Leave it out, or ask the bot's author to add it under "
                "user_attributes:.",
                attribute=name,
            )
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = _CONTROL.sub("", str(value))
        else:
            raise InputError(
                "invalid_user_attribute",
                f'The user attribute "{name}" must be text, a number or true/false.',
                attribute=name,
            )
        if len(text) > spec.max_length:
            raise InputError(
                "user_attribute_too_long",
                f'The user attribute "{name}" is {len(text)} characters long; this bot '
                f"accepts at most {spec.max_length}. Shorten it.",
                attribute=name,
                max_length=spec.max_length,
            )
        cleaned[name] = text
    return cleaned


def clean_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A client's earlier messages with control characters stripped from their text, as
    from a new message (nothing is refused: what memory sends of them is bounded)."""
    cleaned = []
    for message in messages:
        blocks = [
            {**b, "text": _CONTROL.sub("", str(b.get("text", "")))}
            if b.get("type") == "text"
            else b
            for b in message.get("content") or []
        ]
        cleaned.append({**message, "content": blocks})
    return cleaned


class Engine:
    """Shared by every transport. Owns the tool runner and background work (summaries)."""

    def __init__(
        self,
        store: Store,
        *,
        tools: ToolRunner | None = None,
        limits: LimitStore | None = None,
        providers: Callable[[Bot], Provider] = get_provider,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        """`limits`: another limits backend (`--limits redis://`); `providers` picks each
        bot's provider (`botrunner test` plays a cassette back); `clock` is the time the
        templates see as `now` and `today` (a test pins it)."""
        # By default one store keeps conversations and limit counters, so a turn's start
        # (limits + conversation + user message) and end (reply + status + tokens) are one
        # durable write each. Another limits backend is asked first and settled last, each in
        # its own atomic step.
        self.store = store
        self.limits: LimitStore = store if limits is None else limits
        self.limiter = Limiter(self.limits)
        self.tools = tools or ToolRunner()
        self.providers = providers
        self.clock = clock or _local_now
        self._background: set[asyncio.Task[None]] = set()

    def check(self, bot: Bot) -> None:
        """Raise ProviderError('config') when the bot can't reach its model at all."""
        self.providers(bot).check()

    async def prepare(
        self,
        bot: Bot,
        key: ConversationKey,
        message: str,
        *,
        user: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        history: list[dict[str, Any]] | None = None,
        trusted: bool = False,
    ) -> PreparedTurn:
        """Validate and acknowledge one user message. Raises InputError, RateLimited,
        LimitsUnavailable or ProviderError before anything is stored.

        `user` holds the user's attributes for the template, checked by `clean_user`
        (`trusted`: see there). `history`: the earlier messages (wire shape) of a
        conversation the client keeps itself. When given, the memory policy is applied to
        them and nothing stored is read: the store only receives this turn, under `key`
        (which should name a session of its own). None: the earlier turns are the stored
        ones of `key`."""
        text = clean_message(message, bot.limits.max_message_chars)
        attributes = clean_user(bot, user or {}, trusted=trusted)
        provider = self.providers(bot)
        provider.check()
        content = [{"type": "text", "text": text}]
        admission = self.limiter.admission(bot, key.user, text)
        transcript = None if history is None else Transcript(clean_history(history))
        recent = None if transcript is not None else get_strategy(bot.memory.strategy).recent(bot)
        if admission is None or self.limits_in_store:
            started = await self.store.start_turn(key, content, admission, recent)
        else:
            refused = await self.limits.admit(admission)  # LimitsUnavailable: nothing stored
            if refused is not None:
                raise self.limiter.refusal(admission, refused)
            try:
                started = await self.store.start_turn(key, content, None, recent)
            except BaseException:
                await self.settle(self.limiter.charge(bot, key.user, Usage(), admission))
                raise
        if isinstance(started, Refused):
            assert admission is not None
            raise self.limiter.refusal(admission, started)
        return PreparedTurn(
            self,
            bot,
            provider,
            started,
            text,
            attributes,
            variables,
            request_id,
            admission,
            transcript=transcript,
        )

    @property
    def limits_in_store(self) -> bool:
        """The limit counters live in the conversation store (the default)."""
        return self.limits is self.store

    async def settle(self, charge: TokenCharge | None) -> None:
        """Settle a turn with a limits backend other than the store (the store settles inside
        `complete_turn`). A backend that is down loses this charge, and the turn's reservation
        lasts until it expires: the reply has already been sent, so that is only logged."""
        if charge is None or self.limits_in_store:
            return
        try:
            await self.limits.settle(charge)
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("could not settle %s tokens for %s: %s", charge.tokens, charge.user, exc)

    async def turn(
        self, bot: Bot, key: ConversationKey, message: str, **options: Any
    ) -> AsyncIterator[Event]:
        """prepare() and events() in one call, for callers that stream errors inline."""
        try:
            prepared = await self.prepare(bot, key, message, **options)
        except (InputError, ProviderError) as exc:
            yield Error(exc.code, exc.message)
            return
        except RateLimited as exc:
            yield Error("rate_limited", exc.message)
            return
        except LimitsUnavailable as exc:
            yield Error("limits_unavailable", exc.message)
            return
        async for event in prepared.events():
            yield event

    async def fail_abandoned_turns(
        self, bots: Iterable[Bot], *, older_than: float | None = None
    ) -> int:
        """Close as `error` the turns a dead process left pending (SIGKILL, a crash): those
        pending for longer than any turn of `bots` may run (`abandoned_after`), or than
        `older_than` seconds when given. Returns how many, and logs it when there were any.
        Store errors are raised: the caller decides whether to try again later."""
        seconds = abandoned_after(bots) if older_than is None else older_than
        failed = await self.store.fail_abandoned_turns(seconds)
        if failed:
            fields = {"turns": failed, "pending_for_over_s": seconds}
            log.info("abandoned_turns_failed", extra={"fields": fields})
        return failed

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background work (summaries) to finish."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def aclose(self) -> None:
        from botrunner.providers import aclose_all

        await self.drain()
        await self.tools.aclose()
        await aclose_all()


def _local_now() -> dt.datetime:
    return dt.datetime.now().astimezone()


__all__ = [
    "Engine",
    "InputError",
    "LimitsUnavailable",
    "NotStored",
    "PreparedTurn",
    "clean_message",
    "clean_user",
]
