"""TurnStream on its own, called as an ASGI app with scripted `receive`/`send`: what reaches
the wire, in how many writes, and that the body's generator is always finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from botrunner.server.streaming import TurnStream


class Client:
    """An ASGI peer: records body messages; `slow` makes send wait (a client that reads
    slowly, as uvicorn waits for the socket to drain) until `catch_up` is set."""

    def __init__(self, *, slow: bool = False) -> None:
        self.bodies: list[tuple[bytes, bool]] = []
        self.catch_up = asyncio.Event()
        if not slow:
            self.catch_up.set()
        self.gone = asyncio.Event()

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.body":
            if message["body"]:
                await self.catch_up.wait()
            self.bodies.append((message["body"], message.get("more_body", False)))

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def wire(self) -> bytes:
        return b"".join(body for body, _ in self.bodies)


async def serve(chunks: AsyncGenerator[bytes, None], client: Client) -> None:
    await TurnStream(chunks, media_type="application/x-ndjson")({}, client.receive, client.send)


async def test_chunks_ready_together_go_out_in_one_write():
    async def chunks():
        for i in range(3):
            yield f"{i}\n".encode()  # decoded from one upstream read: no wait in between
        await asyncio.sleep(0.01)  # the next read
        yield b"3\n"

    client = Client()
    await serve(chunks(), client)
    assert client.bodies == [(b"0\n1\n2\n", True), (b"3\n", False)]


async def test_a_slow_client_loses_nothing_when_the_generator_times_out_meanwhile():
    """While the client is slow to read, the generator's own timeout fires and it goes on with
    an error line: every line still reaches the client, in order."""
    reached_timeout = asyncio.Event()

    async def chunks():
        for i in range(3):
            yield f"delta {i}\n".encode()
        try:
            async with asyncio.timeout(0.05):  # like the provider's per-read deadline
                await asyncio.Event().wait()  # the upstream never answers
        except TimeoutError:
            reached_timeout.set()
            yield b"error: timeout\n"

    client = Client(slow=True)
    serving = asyncio.ensure_future(serve(chunks(), client))
    await asyncio.wait_for(reached_timeout.wait(), 5)
    client.catch_up.set()
    await asyncio.wait_for(serving, 5)
    assert client.wire == b"delta 0\ndelta 1\ndelta 2\nerror: timeout\n"
    assert client.bodies[-1][1] is False  # the body was ended cleanly


async def test_a_client_that_goes_away_stops_and_closes_the_generator():
    closed = asyncio.Event()

    async def chunks():
        try:
            yield b"first\n"
            await asyncio.Event().wait()  # a reply that would never end
            yield b"never\n"
        finally:
            closed.set()

    client = Client()
    serving = asyncio.ensure_future(serve(chunks(), client))
    while not client.bodies:
        await asyncio.sleep(0.001)
    client.gone.set()
    await asyncio.wait_for(serving, 5)
    assert closed.is_set()
    assert client.wire == b"first\n"


async def test_a_failing_generator_does_not_end_the_body_cleanly():
    """A bug in the body is raised (uvicorn then aborts the response), never dressed up as a
    complete reply."""

    async def chunks():
        yield b"partial\n"
        await asyncio.sleep(0)
        raise RuntimeError("bug")

    client = Client()
    with pytest.raises(RuntimeError, match="bug"):
        await serve(chunks(), client)
    assert client.wire == b"partial\n"
    assert all(more for _, more in client.bodies)
