"""Engine events on the wire: NDJSON (the default) or SSE, and a response that stops cleanly.

One event per line (NDJSON) or per SSE message, with the same JSON in both:

    {"delta": "Hel"}                                   text as it arrives
    {"tool_call": {"id": ..., "name": ..., "input": ...}}
    {"tool_result": {"id": ..., "name": ..., "is_error": false}}
    {"done": true, "usage": {"input_tokens": 12, "output_tokens": 40}, "stop_reason": "end_turn"}
    {"error": {"code": "overloaded", "message": "..."}}  the turn ended without a full reply

SSE names each message after its kind (`event: delta|tool_call|tool_result|done|error`).
Tool results are reported without their content (it is for the model, not the end user).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from botrunner.engine import PreparedTurn
from botrunner.events import Done, Error, Event, TextDelta, ToolCall, ToolResult
from botrunner.server.metrics import TurnTimer

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def event_dict(event: Event) -> tuple[str, dict[str, Any]]:
    if isinstance(event, TextDelta):
        return "delta", {"delta": event.text}
    if isinstance(event, ToolCall):
        return "tool_call", {
            "tool_call": {"id": event.id, "name": event.name, "input": event.input}
        }
    if isinstance(event, ToolResult):
        result = {"id": event.id, "name": event.name, "is_error": event.is_error}
        return "tool_result", {"tool_result": result}
    if isinstance(event, Error):
        return "error", {"error": {"code": event.code, "message": event.message}}
    if isinstance(event, Done):
        body = {"done": True, "usage": event.usage.to_dict(), "stop_reason": event.stop_reason}
        return "done", body
    raise TypeError(f"not an engine event: {event!r}")


def encode_ndjson(event: Event) -> bytes:
    if type(event) is TextDelta:  # the common case, without the intermediate dict
        return ('{"delta":' + _dumps(event.text) + "}\n").encode()
    return (_dumps(event_dict(event)[1]) + "\n").encode()


def encode_sse(event: Event) -> bytes:
    kind, body = event_dict(event)
    return f"event: {kind}\ndata: {_dumps(body)}\n\n".encode()


def wants_sse(accept: str | None) -> bool:
    return SSE in (accept or "")


async def observed(prepared: PreparedTurn, timer: TurnTimer) -> AsyncGenerator[Event, None]:
    """The turn's events, measured; the engine's generator is always closed (which closes the
    turn in the store with its real status), even when the client goes away mid-reply."""
    events = prepared.events()
    error_code: str | None = None
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                timer.text()
            elif isinstance(event, Error):
                error_code = event.code
            yield event
    except (asyncio.CancelledError, GeneratorExit):
        error_code = error_code or "client_disconnected"
        raise
    finally:
        await events.aclose()
        record = prepared.record
        timer.finish(record.input_tokens, record.output_tokens, error_code)


async def encoded(events: AsyncGenerator[Event, None], sse: bool) -> AsyncGenerator[bytes, None]:
    encode = encode_sse if sse else encode_ndjson
    try:
        async for event in events:
            yield encode(event)
    finally:
        await events.aclose()


# A body message carries at most this many ready chunks (bounded memory, steady flow).
_MAX_BATCH = 256


class TurnStream(Response):
    """Streams `chunks`; stops when the client disconnects and always closes `chunks`.

    Starlette's StreamingResponse may leave the body iterator suspended (not closed) on a
    disconnect; here the generator is closed deterministically, so the turn ends at once.

    Chunks that are ready one after another without waiting (several text deltas decoded from
    one upstream read, the last event and the end of the body) go out in one body message, so
    one socket write instead of one per event; a chunk is never held back while the next one
    is awaited. The bytes on the wire are the same.
    """

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        *,
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(
            {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            ready: list[bytes] = []

            async def flush(more_body: bool = True) -> None:
                body = b"".join(ready)
                ready.clear()
                await send({"type": "http.response.body", "body": body, "more_body": more_body})

            while True:
                step = self.chunks.__anext__()
                try:
                    waiting_on = step.send(None)  # run the generator until it yields or waits
                except StopIteration as produced:  # a chunk, ready without waiting
                    ready.append(produced.value)
                    if len(ready) >= _MAX_BATCH:
                        await flush()
                    continue
                except StopAsyncIteration:
                    break
                resume = _Resume(step, waiting_on)
                if ready:  # the next chunk needs a wait: send what is ready first
                    try:
                        await flush()
                    except BaseException as exc:  # noqa: BLE001
                        # The generator is suspended in its wait: it sees the exception (a
                        # cancellation) there, as it would have if this wait were its own.
                        if isinstance(exc, asyncio.CancelledError) and isinstance(
                            waiting_on, asyncio.Future
                        ):
                            waiting_on.cancel()
                        resume = _Resume(step, None, exc)
                try:
                    ready.append(await resume)
                except StopAsyncIteration:
                    break
            await flush(more_body=False)

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming = asyncio.create_task(pump())
        watching = asyncio.create_task(disconnected())
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not streaming.done():
                streaming.cancel()
            try:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await streaming
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await watching
            finally:
                await self.chunks.aclose()


class _Resume:
    """Awaits the rest of an awaitable step that was started with `step.send(None)` and
    stopped at `waiting_on` (what it waits for): exactly what `await step` would have done
    from there, in the same task (its timeouts and cancel scopes stay valid), including
    cancellation, which is thrown into the step. `throw`: an exception to raise in the step
    where it waits, first."""

    __slots__ = ("step", "waiting_on", "throw")

    def __init__(self, step: Any, waiting_on: Any, throw: BaseException | None = None) -> None:
        self.step, self.waiting_on, self.throw = step, waiting_on, throw

    def __await__(self) -> Any:
        step, value, pending = self.step, self.waiting_on, self.throw
        while True:
            try:
                if pending is not None:
                    exc, pending = pending, None
                    value = step.throw(exc)
                try:
                    sent = yield value
                except GeneratorExit:
                    step.close()
                    raise
                except BaseException as exc:  # noqa: BLE001 - cancellation and the like: pass it on
                    pending = exc
                    continue
                value = step.send(sent)
            except StopIteration as done:
                return done.value
