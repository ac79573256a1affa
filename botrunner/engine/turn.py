"""One turn of a conversation, after `Engine.prepare` admitted it: the model's reply streamed
as typed events, tools run, every message stored as it completes, the turn closed with its
real status (see `botrunner.engine.engine` for the whole flow).

The model request goes out while the store is still making the user's message durable, but
no event reaches the user, and nothing more of the turn is written, before it is: a reply the
user saw always belongs to a stored message, and a turn whose start was rolled back writes
nothing (its number may already belong to the next turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from botrunner.bot import Bot
from botrunner.engine.limits import Limiter
from botrunner.engine.prompt import first_request, render_system, template_error
from botrunner.engine.tooluse import run_calls, tool_result
from botrunner.engine.turnlog import TurnRecord, log_turn
from botrunner.engine.wellformed import StreamedText, well_formed, well_formed_value
from botrunner.events import Done, Error, Event, TextDelta, ToolCall, ToolResult, Usage
from botrunner.memory import get_strategy
from botrunner.providers.base import AssistantMessage, ModelRequest, Provider, ProviderError
from botrunner.store.base import Admission, StartedTurn, Store, TurnClosed, UsageRecord
from botrunner.store.transcript import Transcript
from botrunner.templating import RenderFailed
from botrunner.tools import ToolRunner, redact

log = logging.getLogger("botrunner.engine")


class Services(Protocol):
    """What a turn uses of the `Engine` that prepared it (kept structural: the engine imports
    this module, not the reverse)."""

    store: Store
    limiter: Limiter
    tools: ToolRunner
    clock: Callable[[], dt.datetime]

    def spawn(self, coro: Any) -> None: ...


class NotStored(Exception):
    """The store could not make a turn's user message durable (its write was rolled back)."""


class PreparedTurn:
    def __init__(
        self,
        engine: Services,
        bot: Bot,
        provider: Provider,
        started: StartedTurn,
        text: str,
        user: dict[str, Any],
        variables: Mapping[str, Any] | None,
        request_id: str | None,
        admission: Admission | None = None,
        *,
        transcript: Transcript | None = None,
    ) -> None:
        self.engine, self.bot, self.provider = engine, bot, provider
        self.admission = admission  # what the turn was admitted under (its reservation)
        self.conv, self.turn, self.text = started.conv, started.turn, text
        self.started = started
        self._durable: asyncio.Future[None] | None = started.durable  # None once resolved
        # The store could not make the user's message durable: the turn was rolled back.
        self.lost = False
        self.user, self.variables, self.transcript = user, variables, transcript
        # Every token the turn's model calls used so far (the `done` event's usage), and
        # how many calls answered.
        self.usage = Usage()
        self.requests = 0
        key = self.conv.key
        self.user.setdefault("id", key.user)
        self.record = TurnRecord(
            request_id=request_id or uuid.uuid4().hex[:16],
            bot=bot.name,
            bot_version=bot.version,
            user=key.user,
            session=key.session,
            model=bot.model.name,
        )

    def system_prompt(self) -> str:
        """The rendered system prompt; raises RenderFailed when the template fails."""
        return render_system(self.bot, self.variables, self.user, self.engine.clock())

    async def events(self) -> AsyncIterator[Event]:
        """The turn's events. Nothing is passed on (and nothing more of the turn is written)
        before the user's message is durable; if it never becomes durable, the only event is
        a `not_stored` error."""
        events = self._events()
        try:
            try:
                async for event in events:
                    await self._stored()
                    yield event
            except NotStored:
                raise
            except Exception:
                await self._stored()  # a lost turn explains a store error: report that
                raise
        except NotStored:
            yield Error(
                "not_stored",
                "Your message could not be saved, so it was not answered. Send it again.",
            )
        except TurnClosed as exc:  # swept as abandoned while it ran (Engine.fail_abandoned_turns)
            log.warning("conversation %s: %s; its end was not stored", self.conv.id, exc)
            yield Error(
                "turn_expired",
                "This reply ran for too long and was recorded as failed, so it was not saved. "
                "Send your message again.",
            )
        finally:
            await events.aclose()

    async def _stored(self) -> None:
        """Wait until the user's message is durable; raise NotStored if it never will be. A
        lost turn must not write anything: its number may already belong to another turn."""
        if self.lost:
            raise NotStored
        if self._durable is None:
            return
        try:
            # Shielded: a client that goes away must not cancel the store's future; closing
            # the turn (in its own task) waits for it again.
            await asyncio.shield(self._durable)
        except Exception:  # noqa: BLE001 - the store logs why; the user hears not_stored
            self.lost = True
            raise NotStored from None
        self._durable = None

    async def _events(self) -> AsyncIterator[Event]:
        bot, store, conv, turn = self.bot, self.engine.store, self.conv, self.turn
        record, started = self.record, time.monotonic()
        deadline = started + bot.retry.timeout_seconds
        status = "error"
        finishing: asyncio.Future[None] | None = None
        try:
            memory = get_strategy(bot.memory.strategy)
            if (kept := self.transcript) is not None:  # the client's, instead of the store's
                own = kept.conversation(conv.key)
                context = await memory.context(kept, own, bot, kept.next_turn, self.text)
            elif self.started.recent is not None:  # read by start_turn (see Engine.prepare)
                context = memory.from_recent(conv, bot, self.started.recent)
            else:
                context = await memory.context(store, conv, bot, turn, self.text)
            request = first_request(bot, self.system_prompt(), context, self.text)
            messages = request.messages
            while True:
                reply: AssistantMessage | None = None
                streamed = StreamedText()
                async for item in self.provider.stream(request, deadline=deadline):
                    if isinstance(item, TextDelta):
                        if piece := streamed.feed(item.text):
                            if record.ttft_ms is None:
                                record.ttft_ms = round((time.monotonic() - started) * 1000, 1)
                            yield item if piece is item.text else TextDelta(piece)
                    else:
                        reply = item
                assert reply is not None
                if rest := streamed.flush():
                    yield TextDelta(rest)
                reply = dataclasses.replace(reply, content=well_formed_value(reply.content))
                self.usage += reply.usage
                self.requests += 1
                calls = [b for b in reply.content if b.get("type") == "tool_use"]
                if reply.stop_reason != "tool_use" or not calls:
                    break
                await self._stored()
                await store.add_message(conv, turn, "assistant", reply.content, reply.usage)
                messages.append({"role": "assistant", "content": reply.content})
                if record.rounds >= bot.limits.max_tool_rounds:
                    status = "stopped"
                    yield Error(
                        "tool_limit",
                        f"I stopped after {bot.limits.max_tool_rounds} rounds of tool calls "
                        "without a final answer. Try asking in a simpler way.",
                    )
                    return
                record.rounds += 1
                results = []
                for call in calls:
                    record.tool_calls.append(call["name"])
                    yield ToolCall(call["id"], call["name"], call.get("input"))
                outcomes = await run_calls(bot, self.engine.tools, calls)
                for call, outcome in zip(calls, outcomes, strict=True):
                    yield ToolResult(call["id"], call["name"], outcome.content, outcome.is_error)
                    results.append(tool_result(call["id"], outcome))
                await store.add_message(conv, turn, "user", results)
                messages.append({"role": "user", "content": results})
                request = dataclasses.replace(request, messages=messages)
            # The final reply is stored together with the turn's status and tokens, durably,
            # before `done` is sent: a reply the client saw complete is never lost.
            status = "ok"
            self._settle(status, started)
            finishing = asyncio.ensure_future(self._finish(status, reply))
            await asyncio.shield(finishing)
            yield Done(self.usage, reply.stop_reason)
        except ProviderError as exc:
            # What the API said may quote the request, a secret of the bot's in any form.
            detail = redact(exc.detail, bot.secrets) if exc.detail else ""
            record.error_code, record.error_detail = exc.code, detail or None
            yield Error(exc.code, exc.message, detail)
        except RenderFailed as exc:
            record.error_code = "template_error"
            yield template_error(bot, exc, record.request_id)
        except TimeoutError:
            record.error_code = "timeout"
            yield Error(
                "timeout",
                f"The reply took longer than {bot.retry.timeout_seconds:g} s and was stopped.",
            )
        finally:
            # Runs on success, failure and client disconnect alike: the turn is closed with
            # its real status, so an unfinished turn is never sent to the model again.
            if finishing is None:
                self._settle(status, started)
                finishing = asyncio.ensure_future(self._finish(status))
            await asyncio.shield(finishing)

    def _settle(self, status: str, started: float) -> None:
        record, usage = self.record, self.usage
        record.outcome = status if record.error_code is None else "error"
        record.count(usage)
        record.latency_ms = round((time.monotonic() - started) * 1000, 1)

    async def _finish(self, status: str, reply: AssistantMessage | None = None) -> None:
        """Close the turn with `status` (storing `reply` first when given), count its tokens
        and add them to the usage ledger, in one durable write."""
        engine, bot, conv, turn = self.engine, self.bot, self.conv, self.turn
        user, usage = conv.key.user, self.usage
        charge = engine.limiter.charge(bot, user, usage, self.admission)
        spent = UsageRecord(bot.model.name, usage, self.requests) if self.requests else None
        try:
            await self._stored()
        except NotStored:  # the turn was rolled back: nothing of it may be written
            self.record.outcome, self.record.error_code = "error", "not_stored"
            log_turn(self.record)
            await engine.settle(charge)  # (a reservation in the store was rolled back too)
            return
        try:
            stored = await engine.store.complete_turn(
                conv,
                turn,
                status,  # type: ignore[arg-type]
                [] if reply is None else [("assistant", reply.content, reply.usage)],
                charge if engine.limits_in_store else None,
                spent,
            )
        except Exception:
            if reply is None:
                raise
            # The reply could not be stored: close the turn as failed, still count its tokens.
            self.record.outcome = "error"
            with contextlib.suppress(Exception):
                await engine.store.finish_turn(conv, turn, "error")
            with contextlib.suppress(Exception):
                if charge is not None:
                    await engine.limits.settle(charge)
            log_turn(self.record)
            raise
        await engine.settle(charge)
        if stored is not None and stored != status:
            self.record.outcome = status = stored
        log_turn(self.record)
        # A summary of a conversation the client keeps would never be read again.
        if status == "ok" and bot.memory.strategy == "summarize" and self.transcript is None:
            memory = get_strategy(bot.memory.strategy)
            engine.spawn(memory.after_turn(engine.store, conv, bot, self._summarize))

    async def _summarize(self, instructions: str, messages: list[dict[str, Any]]) -> str:
        bot = self.bot
        request = ModelRequest(
            model=bot.model.name,
            max_tokens=min(bot.model.max_tokens, 1024),
            system=instructions,
            messages=messages,
        )
        deadline = time.monotonic() + bot.retry.timeout_seconds
        reply: AssistantMessage | None = None
        async for item in self.provider.stream(request, deadline=deadline):
            if isinstance(item, AssistantMessage):
                reply = item
        assert reply is not None
        text = "".join(b.get("text", "") for b in reply.content if b.get("type") == "text")
        return well_formed(text)
