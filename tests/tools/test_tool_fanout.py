"""Bounded tool fan-out (issue 9, item 4): one model reply with 150 tool calls runs at most
`limits.max_tool_calls_per_reply` of them, a few at a time, and never holds up another
conversation's tools; one slow tool server never takes the whole shared connection pool.

The tool servers record what they see (how many calls are in flight, and in which order calls
arrive); nothing here asserts on timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic, text, tool_use
from test_tools import Seen, ToolServer, one_tool, tool_yaml

from botrunner.bot import Bot
from botrunner.botfile.loader import load_bot
from botrunner.engine.engine import Engine
from botrunner.engine.turn import TOOL_CALLS_AT_ONCE
from botrunner.events import Done, Event, ToolCall, ToolResult
from botrunner.providers import aclose_all
from botrunner.store import ConversationKey, open_store
from botrunner.tools import ToolRunner
from botrunner.tools.http import MAX_CALLS_PER_HOST, MAX_CONNECTIONS

# How long a held call waits for the call it is waiting for before giving up: only reached
# when the code under test queues that call behind the held ones (the failure being tested).
GIVE_UP_SECONDS = 10
# How long to wait for the first held call (a first turn imports the SDK: slow on a busy host).
ARRIVAL_SECONDS = 60


@dataclass
class Holding:
    """Calls to /hold stay open until a call to /free arrives; records what it saw."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Event = field(default_factory=threading.Event)
    freed: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    most_in_flight: int = 0
    held: int = 0
    gave_up: int = 0  # held calls that ended without the /free call having arrived
    in_flight_when_freed: int | None = None

    def hold(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.held += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.arrived.set()
        if not self.freed.wait(GIVE_UP_SECONDS):
            with self.lock:
                self.gave_up += 1
        with self.lock:
            self.in_flight -= 1
        return 200, {}, b"held result"

    def free(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.in_flight_when_freed = self.in_flight
        self.freed.set()
        return 200, {}, b"free result"


@pytest.fixture
def holding() -> Iterator[tuple[ToolServer, Holding]]:
    state = Holding()
    server = ToolServer()
    server.routes.update({"/hold": state.hold, "/free": state.free})
    server.start()
    try:
        yield server, state
    finally:
        state.freed.set()
        server.stop()


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    store = open_store(tmp_path / "db")
    engine = Engine(store)
    try:
        yield engine
    finally:
        await engine.aclose()
        await store.close()
        await aclose_all()


def make_bot(tmp_path: Path, name: str, fake: FakeAnthropic, tools: str, extra: str = "") -> Bot:
    body = "\n".join("  " + line for line in tools.strip("\n").splitlines())
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "model:\n"
        "  name: claude-test\n"
        "  max_tokens: 256\n"
        f"  base_url: {fake.url}\n"
        "system: You call tools.\n"
        "retry: {max_retries: 0, timeout_seconds: 60}\n"
        f"{extra}"
        f"tools:\n{body}\n"
    )
    return load_bot(path, env={})


async def turn(engine: Engine, bot: Bot, message: str) -> list[Event]:
    key = ConversationKey(bot.name, "u1", "s1")
    return [event async for event in engine.turn(bot, key, message)]


async def test_a_reply_with_150_tool_calls_runs_8_and_does_not_hold_up_another_conversation(
    tmp_path, engine, fake_anthropic, holding
):
    server, state = holding
    greedy = make_bot(
        tmp_path,
        "greedy",
        fake_anthropic,
        tool_yaml(server.url + "/hold", name="lookup", http_extra="    timeout_seconds: 30\n"),
    )
    calls = [("lookup", {"n": i}, f"toolu_{i:03d}") for i in range(150)]
    fake_anthropic.enqueue(tool_use(calls), text("Looked up what I could."))
    other_fake = FakeAnthropic().start()
    try:
        other = make_bot(
            tmp_path, "other", other_fake, tool_yaml(server.url + "/free", name="ping")
        )
        other_fake.enqueue(tool_use([("ping", {}, "toolu_ping")]), text("Pong."))

        greedy_turn = asyncio.create_task(turn(engine, greedy, "Look up everything."))
        assert await asyncio.to_thread(state.arrived.wait, ARRIVAL_SECONDS)
        # The greedy conversation's calls are now held open at the tool server.
        other_events = await turn(engine, other, "Ping.")
        greedy_events = await greedy_turn
    finally:
        other_fake.stop()

    # The other conversation's call reached the tool server while the greedy one's were held:
    # it was not queued behind them.
    assert state.gave_up == 0
    assert state.in_flight_when_freed is not None and state.in_flight_when_freed >= 1
    assert [e for e in other_events if isinstance(e, ToolResult)] == [
        ToolResult("toolu_ping", "ping", "free result", False)
    ]
    assert isinstance(other_events[-1], Done)

    # The greedy reply: 8 calls made, at most TOOL_CALLS_AT_ONCE at a time.
    assert state.held == 8
    assert state.most_in_flight <= TOOL_CALLS_AT_ONCE
    results = [e for e in greedy_events if isinstance(e, ToolResult)]
    assert [r.id for r in results] == [c[2] for c in calls]
    assert [e.id for e in greedy_events if isinstance(e, ToolCall)] == [c[2] for c in calls]
    assert all(r.content == "held result" and not r.is_error for r in results[:8])
    assert all(r.is_error for r in results[8:])
    assert results[8].content == (
        "Not run: only the first 8 tool calls of a reply are run, and this reply had 150. "
        "Call it again in your next reply if you still need it."
    )
    assert isinstance(greedy_events[-1], Done)

    # The history the model gets next is valid: every tool_use has its tool_result, in order.
    sent_back = fake_anthropic.requests[1].messages[-1]["content"]
    assert [b["tool_use_id"] for b in sent_back] == [c[2] for c in calls]
    assert [bool(b.get("is_error")) for b in sent_back] == [False] * 8 + [True] * 142


async def test_the_cap_is_a_limit_in_the_bot_file(tmp_path, engine, fake_anthropic, holding):
    server, state = holding
    state.freed.set()  # nothing is held in this test
    bot = make_bot(
        tmp_path,
        "capped",
        fake_anthropic,
        tool_yaml(server.url + "/hold", name="lookup"),
        extra="limits: {max_tool_calls_per_reply: 2}\n",
    )
    assert bot.limits.max_tool_calls_per_reply == 2
    fake_anthropic.enqueue(
        tool_use([("lookup", {}, "a"), ("lookup", {}, "b"), ("lookup", {}, "c")]), text("Ok.")
    )
    events = await turn(engine, bot, "Three lookups.")
    assert [(r.id, r.is_error) for r in events if isinstance(r, ToolResult)] == [
        ("a", False),
        ("b", False),
        ("c", True),
    ]
    assert state.held == 2


def test_the_default_cap_is_8(tmp_path, fake_anthropic):
    bot = make_bot(tmp_path, "plain", fake_anthropic, tool_yaml("https://example.com/x"))
    assert bot.limits.max_tool_calls_per_reply == 8


async def test_a_slow_tool_server_never_takes_the_whole_connection_pool(tmp_path, holding):
    # More calls to one hung server than the pool has connections (many conversations at
    # once): another server's call still goes through while they are held.
    slow, state = holding
    fast = ToolServer()
    fast.routes["/free"] = state.free
    fast.start()
    runner = ToolRunner()
    try:
        held, _ = one_tool(tmp_path, slow.url + "/hold", http_extra="    timeout_seconds: 30\n")
        free, _ = one_tool(tmp_path, fast.url + "/free")
        waiting = [
            asyncio.create_task(runner.run(held, {}, frozenset()))
            for _ in range(MAX_CONNECTIONS + 10)
        ]
        assert await asyncio.to_thread(state.arrived.wait, ARRIVAL_SECONDS)
        outcome = await runner.run(free, {}, frozenset())
        outcomes = await asyncio.gather(*waiting)
    finally:
        await runner.aclose()
        fast.stop()
    assert outcome.content == "free result"
    assert state.gave_up == 0
    assert state.in_flight_when_freed is not None and state.in_flight_when_freed >= 1
    assert state.most_in_flight <= MAX_CALLS_PER_HOST
    assert {o.content for o in outcomes} == {"held result"}
