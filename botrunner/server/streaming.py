"""Engine events on the wire: NDJSON (the default) or SSE, and a response that stops cleanly.

One event per line (NDJSON) or per SSE message, with the same JSON in both:

    {"delta": "Hel"}                                   text as it arrives
    {"tool_call": {"id": ..., "name": ..., "input": ...}}
    {"tool_result": {"id": ..., "name": ..., "is_error": false}}
    {"done": true, "usage": {"input_tokens": 12, "output_tokens": 40}, "stop_reason": "end_turn"}
    {"error": {"code": "overloaded", "message": "...", "request_id": "..."}}  no full reply

SSE names each message after its kind (`event: delta|tool_call|tool_result|done|error`).
Tool results are reported without their content (it is for the model, not the end user).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from botrunner.engine.turn import PreparedTurn
from botrunner.events import Done, Error, Event, TextDelta, ToolCall, ToolResult
from botrunner.server.jsonbody import dumps
from botrunner.server.metrics import TurnTimer

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def event_dict(event: Event, request_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """(SSE event name, JSON body). An error carries the request id (to find the request in
    the log), never its `detail`."""
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
        error = {"code": event.code, "message": event.message}
        if request_id:
            error["request_id"] = request_id
        return "error", {"error": error}
    if isinstance(event, Done):
        body = {"done": True, "usage": event.usage.to_dict(), "stop_reason": event.stop_reason}
        return "done", body
    raise TypeError(f"not an engine event: {event!r}")


def encode_ndjson(event: Event, request_id: str | None = None) -> bytes:
    if type(event) is TextDelta:  # the common case, without the intermediate dict
        return ('{"delta":' + dumps(event.text) + "}\n").encode()
    return (dumps(event_dict(event, request_id)[1]) + "\n").encode()


def encode_sse(event: Event, request_id: str | None = None) -> bytes:
    kind, body = event_dict(event, request_id)
    return f"event: {kind}\ndata: {dumps(body)}\n\n".encode()


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
        timer.finish(record, error_code)


async def encoded(
    events: AsyncGenerator[Event, None], sse: bool, request_id: str | None = None
) -> AsyncGenerator[bytes, None]:
    encode = encode_sse if sse else encode_ndjson
    try:
        async for event in events:
            yield encode(event, request_id)
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

    How: the generator runs in its own task (`produce`), which appends to `ready` and only lets
    the sender (`deliver`) run when it has to wait; `deliver` then sends everything ready in
    one message. The generator never sees the sender's waits (a slow client) or failures.
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
        ready: list[bytes] = []
        more = asyncio.Event()  # set: something to send, or the generator has ended
        room = asyncio.Event()  # cleared while `ready` is full
        room.set()
        ended: bool | BaseException = False  # True, or what the generator raised

        async def produce() -> None:
            nonlocal ended
            try:
                async for chunk in self.chunks:
                    ready.append(chunk)
                    more.set()
                    if len(ready) >= _MAX_BATCH:
                        room.clear()
                        await room.wait()
                ended = True
            except BaseException as exc:
                ended = exc
                raise
            finally:
                more.set()
                # Here, in the task the generator ran in: its cleanup (closing the turn in the
                # store) never waits for the client.
                await self.chunks.aclose()

        async def deliver() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while True:
                await more.wait()
                more.clear()
                last = ended
                body = b"".join(ready)
                ready.clear()
                room.set()
                if last is True:
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if last:
                    return  # the generator failed: no clean end of the body

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        producing = asyncio.create_task(produce())
        delivering = asyncio.create_task(deliver())
        watching = asyncio.create_task(disconnected())
        try:
            await asyncio.wait({delivering, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producing, delivering, watching):
                task.cancel()
            outcomes = await asyncio.gather(producing, delivering, watching, return_exceptions=True)
            await self.chunks.aclose()
        for outcome in outcomes[:2]:
            # A failed generator is a bug worth a traceback; a client that went away is not.
            if isinstance(outcome, Exception) and not isinstance(outcome, OSError):
                raise outcome
