"""One slow tool server never takes the whole shared connection pool (issue 9, item 4).

The per-reply cap keeps one conversation to a few connections, but many conversations calling
the same hung server at once would still fill the pool every bot and user shares. The tool
servers record what they see (calls in flight, and which call arrived while others were held);
nothing here asserts on timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from test_tools import Seen, ToolServer, one_tool

from botrunner.tools import ToolRunner
from botrunner.tools.http import MAX_CALLS_PER_HOST, MAX_CONNECTIONS

# How long a held call waits for the free call before giving up: only reached when the code
# under test queues the free call behind the held ones (the failure this file is about).
GIVE_UP_SECONDS = 10
# How long to wait for the first held call to arrive (generous: a busy machine).
ARRIVAL_SECONDS = 60

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Holding:
    """Calls to /hold stay open until a call to /free arrives; records what it saw."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Event = field(default_factory=threading.Event)
    freed: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    most_in_flight: int = 0
    gave_up: int = 0  # held calls that ended without the free call having arrived
    in_flight_when_freed: int | None = None

    def hold(self, seen: Seen) -> Reply:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.arrived.set()
        if not self.freed.wait(GIVE_UP_SECONDS):
            with self.lock:
                self.gave_up += 1
        with self.lock:
            self.in_flight -= 1
        return 200, {}, b"held result"

    def free(self, seen: Seen) -> Reply:
        with self.lock:
            self.in_flight_when_freed = self.in_flight
        self.freed.set()
        return 200, {}, b"free result"


@pytest.fixture
def servers() -> Iterator[tuple[ToolServer, ToolServer, Holding]]:
    state = Holding()
    slow, fast = ToolServer(), ToolServer()
    slow.routes["/hold"] = state.hold
    fast.routes["/free"] = state.free
    slow.start()
    fast.start()
    try:
        yield slow, fast, state
    finally:
        state.freed.set()
        slow.stop()
        fast.stop()


@pytest.fixture
async def runner() -> AsyncIterator[ToolRunner]:
    tools = ToolRunner()
    try:
        yield tools
    finally:
        await tools.aclose()


async def test_a_hung_tool_server_never_takes_the_whole_connection_pool(tmp_path, servers, runner):
    slow, fast, state = servers
    held, _ = one_tool(tmp_path, slow.url + "/hold", http_extra="    timeout_seconds: 30\n")
    free, _ = one_tool(tmp_path, fast.url + "/free", http_extra="    timeout_seconds: 30\n")
    # More calls to the hung server than the pool has connections, as from many conversations.
    waiting = [
        asyncio.create_task(runner.run(held, {}, frozenset())) for _ in range(MAX_CONNECTIONS + 10)
    ]
    assert await asyncio.to_thread(state.arrived.wait, ARRIVAL_SECONDS)

    outcome = await runner.run(free, {}, frozenset())
    outcomes = await asyncio.gather(*waiting)

    # The other server's call went through while the hung server's calls were held open.
    assert outcome.content == "free result"
    assert state.gave_up == 0
    assert state.in_flight_when_freed is not None and state.in_flight_when_freed >= 1
    assert state.most_in_flight <= MAX_CALLS_PER_HOST
    assert {o.content for o in outcomes} == {"held result"}
