"""Whole turns with HTTP tools: the engine, each provider's real SDK against its fake API, and
a real local tool server (issue 3, section 4). Every test runs once per provider (`upstream`).

Each test asserts what a user (the events) and the model (the requests the fake received, in
the Messages API's content-block form whichever API carried them) see, and what the store
keeps.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_anthropic import FakeServer, text, tool_use
from test_tools import SECRET, ToolServer, closed_port, tool_yaml

from botrunner.bot import Bot
from botrunner.botfile.loader import load_bot
from botrunner.engine.engine import Engine
from botrunner.events import Done, Error, Event, TextDelta, ToolCall, ToolResult
from botrunner.providers import aclose_all
from botrunner.store import ConversationKey, start_store


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Harness:
    engine: Engine
    fake: FakeServer
    tmp_path: Path

    @property
    def store(self) -> Any:
        return self.engine.store

    def bot(self, tools_yaml: str, *, extra: str = "", env: dict[str, str] | None = None) -> Bot:
        """A bot pointed at the fake (model.base_url, so no shared SDK client between tests)."""
        body = "\n".join("  " + line for line in tools_yaml.strip("\n").splitlines())
        path = self.tmp_path / "bot.yaml"
        path.write_text(
            "name: toolbot\n"
            "model:\n"
            f"  provider: {self.fake.provider}\n"
            "  name: test-model\n"
            "  max_tokens: 256\n"
            f"  base_url: {self.fake.url}\n"
            "system: You call tools.\n"
            "retry: {max_retries: 0, timeout_seconds: 20}\n"
            f"{extra}"
            f"tools:\n{body}\n"
        )
        return load_bot(path, env=env or {})

    async def turn(self, bot: Bot, message: str, session: str = "s1") -> list[Event]:
        key = ConversationKey(bot.name, "u1", session)
        return [event async for event in self.engine.turn(bot, key, message)]

    async def history(self, bot: Bot, session: str = "s1") -> list[Any]:
        return await self.store.history(ConversationKey(bot.name, "u1", session))

    def result(self, tool_use_id: str, content: str, is_error: bool = False) -> dict[str, Any]:
        """A tool_result block as the model gets it (Chat Completions cannot flag errors)."""
        block = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
        if is_error and self.fake.flags_tool_errors:
            block["is_error"] = True
        return block


@pytest.fixture
async def h(tmp_path: Path, upstream: FakeServer, store_url: str) -> AsyncIterator[Harness]:
    store = await start_store(store_url)
    engine = Engine(store)
    try:
        yield Harness(engine, upstream, tmp_path)
    finally:
        await engine.aclose()
        await store.close()
        await aclose_all()


def user_text(s: str) -> dict[str, Any]:
    return {"role": "user", "content": s}  # one text block goes as a plain string


def as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def texts(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def results(events: list[Event]) -> list[ToolResult]:
    return [e for e in events if isinstance(e, ToolResult)]


CITY = "{type: object, properties: {city: {type: string}}, required: [city]}"
TZ = "{type: object, properties: {tz: {type: string}}, required: [tz]}"


def weather_and_time(server: ToolServer) -> str:
    return tool_yaml(
        server.url + "/weather/{{ input.city }}", name="get_weather", schema=CITY
    ) + tool_yaml(
        server.url + "/time",
        name="get_time",
        schema=TZ,
        http_extra='    params: {tz: "{{ input.tz }}"}\n',
    )


# --------------------------------------------------------------------------------------------
# Two rounds with parallel tool_use blocks
# --------------------------------------------------------------------------------------------


async def test_two_rounds_with_parallel_tool_calls(h, tool_server):
    # Each call waits for the other to arrive: they can only both answer if run in parallel.
    both = threading.Barrier(2, timeout=5)

    def weather(seen):
        both.wait()
        return 200, {}, f"sunny in {seen.path.rsplit('/', 1)[1]}".encode()

    def clock(seen):
        both.wait()
        return 200, {}, f"12:00 in {seen.params['tz'][0]}".encode()

    tool_server.routes = {"/weather/": weather, "/time": clock}
    bot = h.bot(weather_and_time(tool_server))
    h.fake.enqueue(
        tool_use(
            [
                ("get_weather", {"city": "Lisbon"}, "toolu_w"),
                ("get_time", {"tz": "Europe/Lisbon"}, "toolu_t"),
            ],
            text="Let me check.",
        ),
        text("Sunny, and it is noon."),
    )

    events = await h.turn(bot, "Weather and time in Lisbon?")

    # What the user sees.
    assert texts(events) == "Let me check.Sunny, and it is noon."
    assert [e for e in events if isinstance(e, ToolCall)] == [
        ToolCall("toolu_w", "get_weather", {"city": "Lisbon"}),
        ToolCall("toolu_t", "get_time", {"tz": "Europe/Lisbon"}),
    ]
    assert results(events) == [
        ToolResult("toolu_w", "get_weather", "sunny in Lisbon", False),
        ToolResult("toolu_t", "get_time", "12:00 in Europe/Lisbon", False),
    ]
    assert isinstance(events[-1], Done) and events[-1].stop_reason == "end_turn"
    assert not any(isinstance(e, Error) for e in events)

    # What the tool server received.
    assert sorted(tool_server.paths()) == ["/time?tz=Europe%2FLisbon", "/weather/Lisbon"]

    # What the model was offered and sent back: both results in ONE user message, in order.
    first, second = h.fake.requests
    assert first.tools == [tool.to_api() for tool in bot.tools]
    assert first.messages == [user_text("Weather and time in Lisbon?")]
    assert second.messages == [
        user_text("Weather and time in Lisbon?"),
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_w",
                    "name": "get_weather",
                    "input": {"city": "Lisbon"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_t",
                    "name": "get_time",
                    "input": {"tz": "Europe/Lisbon"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                h.result("toolu_w", "sunny in Lisbon"),
                h.result("toolu_t", "12:00 in Europe/Lisbon"),
            ],
        },
    ]
    assert second.tools == first.tools

    # The store keeps the whole exchange, as sent (a plain-string content is one text block).
    stored = await h.history(bot)
    assert [(m.role, m.content) for m in stored] == [
        (m["role"], as_blocks(m["content"])) for m in second.messages
    ] + [("assistant", [{"type": "text", "text": "Sunny, and it is noon."}])]
    assert {m.status for m in stored} == {"ok"}


async def test_the_next_turn_sends_the_whole_tool_exchange(h, tool_server):
    tool_server.routes = {"/weather/": lambda seen: (200, {}, b"rain")}
    bot = h.bot(weather_and_time(tool_server))
    h.fake.enqueue(tool_use([("get_weather", {"city": "Oslo"}, "toolu_1")]), text("Rain."))
    await h.turn(bot, "Oslo?")
    h.fake.enqueue(text("Still rain."))
    events = await h.turn(bot, "And now?")
    assert texts(events) == "Still rain."
    assert h.fake.requests[-1].messages == [
        user_text("Oslo?"),
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                }
            ],
        },
        {"role": "user", "content": [h.result("toolu_1", "rain")]},
        {"role": "assistant", "content": "Rain."},
        user_text("And now?"),
    ]


# --------------------------------------------------------------------------------------------
# Invalid input: the model is told why, corrects itself, the corrected call runs
# --------------------------------------------------------------------------------------------


async def test_invalid_input_is_corrected_by_the_model(h, tool_server):
    tool_server.routes = {"/weather/": lambda seen: (200, {}, b"sunny")}
    bot = h.bot(weather_and_time(tool_server))
    h.fake.enqueue(
        tool_use([("get_weather", {"town": "Lisbon"}, "toolu_bad")]),
        tool_use([("get_weather", {"city": "Lisbon"}, "toolu_good")]),
        text("Sunny in Lisbon."),
    )

    events = await h.turn(bot, "Lisbon weather?")

    why = (
        "Invalid input for tool get_weather: 'city' is a required property. "
        "Fix the input and call it again."
    )
    assert results(events) == [
        ToolResult("toolu_bad", "get_weather", why, True),
        ToolResult("toolu_good", "get_weather", "sunny", False),
    ]
    assert texts(events) == "Sunny in Lisbon."
    assert isinstance(events[-1], Done)
    # The invalid call never reached the tool server; the corrected one did.
    assert tool_server.paths() == ["/weather/Lisbon"]
    # The model got the reason as an is_error tool_result...
    assert h.fake.requests[1].messages[-1] == {
        "role": "user",
        "content": [h.result("toolu_bad", why, is_error=True)],
    }
    # ...and then the corrected call's result.
    assert h.fake.requests[2].messages[-1] == {
        "role": "user",
        "content": [h.result("toolu_good", "sunny")],
    }
    assert len(h.fake.requests[2].messages) == 5


async def test_an_unknown_tool_is_an_error_result(h, tool_server):
    bot = h.bot(weather_and_time(tool_server))
    h.fake.enqueue(tool_use([("delete_everything", {}, "toolu_x")]), text("Sorry."))
    events = await h.turn(bot, "Do it.")
    assert results(events) == [
        ToolResult(
            "toolu_x", "delete_everything", "There is no tool called 'delete_everything'.", True
        )
    ]
    assert texts(events) == "Sorry."
    assert tool_server.seen == []


# --------------------------------------------------------------------------------------------
# Failures: each a short is_error result; the turn goes on
# --------------------------------------------------------------------------------------------


async def test_timeout_500_huge_body_and_refused_connection(h, tool_server):
    url = tool_server.url
    tools = (
        tool_yaml(url + "/slow", name="slow", http_extra="    timeout_seconds: 0.3\n")
        + tool_yaml(url + "/fail", name="broken")
        + tool_yaml(url + "/huge", name="huge", http_extra="    max_response_bytes: 2048\n")
        + tool_yaml(f"http://127.0.0.1:{closed_port()}/x", name="down")
    )
    bot = h.bot(tools)
    h.fake.enqueue(
        tool_use(
            [("slow", {}, "t1"), ("broken", {}, "t2"), ("huge", {}, "t3"), ("down", {}, "t4")]
        ),
        text("Some tools failed."),
    )

    events = await h.turn(bot, "Try everything.")

    got = {r.id: r for r in results(events)}
    assert got["t1"].content == "Tool slow timed out: 127.0.0.1 did not answer within 0.3 s."
    assert got["t2"].content == "Tool broken failed with HTTP 500: database exploded"
    assert got["t3"].content == "x" * 2048 + "\n[response truncated at 2048 bytes]"
    assert got["t4"].content.startswith("Tool down could not reach 127.0.0.1: ")
    assert [got[i].is_error for i in ("t1", "t2", "t3", "t4")] == [True, True, False, True]
    for r in (got["t1"], got["t2"], got["t4"]):
        assert len(r.content) < 300 and "\n" not in r.content and "Traceback" not in r.content
    # The huge body was read as a stream: the server could not send most of it.
    [stream] = tool_server.streams
    assert stream.done.wait(5) and stream.aborted and stream.sent < stream.total // 4

    # The model saw the same four results, in order, in one message; then the turn finished.
    sent = h.fake.requests[1].messages[-1]
    assert sent["role"] == "user"
    assert [b["tool_use_id"] for b in sent["content"]] == ["t1", "t2", "t3", "t4"]
    if h.fake.flags_tool_errors:
        assert [b.get("is_error", False) for b in sent["content"]] == [True, True, False, True]
    assert [b["content"] for b in sent["content"]] == [
        got[i].content for i in ("t1", "t2", "t3", "t4")
    ]
    assert texts(events) == "Some tools failed."
    assert isinstance(events[-1], Done)


# --------------------------------------------------------------------------------------------
# What the model controls never leaves its place
# --------------------------------------------------------------------------------------------


async def test_model_input_is_encoded_and_cannot_move_the_call(h, tool_server):
    tools = tool_yaml(
        tool_server.url + "/weather/{{ input.city }}",
        name="get_weather",
        schema=CITY,
        http_extra='    params: {q: "{{ input.city }}"}\n',
    )
    bot = h.bot(tools)
    h.fake.enqueue(
        tool_use(
            [
                ("get_weather", {"city": "../admin"}, "t1"),
                ("get_weather", {"city": "http://evil.example.com/?a=1&b=2"}, "t2"),
                ("get_weather", {"city": ".."}, "t3"),
            ]
        ),
        text("Done."),
    )
    events = await h.turn(bot, "Go.")
    # None of them could stay in its path segment: nothing was sent, and the model was told.
    assert tool_server.seen == []
    assert all(r.is_error and "cannot fill a path segment" in r.content for r in results(events))
    assert isinstance(events[-1], Done)


# --------------------------------------------------------------------------------------------
# Secrets reach the tool server, never the model, the store or the events
# --------------------------------------------------------------------------------------------


async def test_an_echoed_secret_is_redacted_everywhere(h, tool_server):
    tools = tool_yaml(
        tool_server.url + "/secret",
        name="whoami",
        http_extra='    headers: {X-Api-Key: "${TOOL_KEY}"}\n',
    )
    bot = h.bot(tools, env={"TOOL_KEY": SECRET})
    assert SECRET in bot.secrets
    h.fake.enqueue(tool_use([("whoami", {}, "toolu_s")]), text("Your key is hidden."))

    events = await h.turn(bot, "What is my key?")

    # The tool server got the real key.
    assert tool_server.seen[0].headers["x-api-key"] == SECRET
    # The model got the echo redacted, and never the key in any request.
    assert h.fake.requests[1].messages[-1] == {
        "role": "user",
        "content": [h.result("toolu_s", '{"echo": "your key is [redacted]"}')],
    }
    for request in h.fake.requests:
        assert SECRET.encode() not in request.raw_body
    assert b"[redacted]" in h.fake.requests[1].raw_body
    # Not in the events the client gets, nor in the stored transcript.
    assert SECRET not in repr(events)
    assert results(events)[0].content == '{"echo": "your key is [redacted]"}'
    stored = json.dumps([m.content for m in await h.history(bot)])
    assert SECRET not in stored
    assert "[redacted]" in stored


# A key with the characters that change on the way out and back (issue 9, item 2).
ODD_SECRET = "qs+canary/Zm9vYmFy=="
BASIC = "YWxpY2U6czNjcmV0LXBhc3N3b3Jk"  # base64 of "alice:s3cret-password"


def _every_form_reply(seen):
    """A tool server that echoes what it got in every way real servers do: the URL as sent
    (percent-encoded), JSON with escaped slashes, and a decoded Basic credential."""
    import base64
    from urllib.parse import unquote

    query = seen.target.split("?", 1)[1]
    decoded = unquote(query)
    basic = seen.headers.get("authorization", "").removeprefix("Basic ")
    body = (
        "{"
        + f'"url": "{seen.target}", '
        + f'"escaped": {json.dumps(decoded).replace("/", chr(92) + "/")}, '
        + f'"lower": "{re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), query)}", '
        + f'"user": {json.dumps(base64.b64decode(basic).decode())}, '
        + f'"password": "{base64.b64decode(basic).decode().split(":")[1]}"'
        + "}"
    )
    return 200, {"content-type": "application/json"}, body.encode()


async def test_a_secret_is_redacted_in_every_form_it_comes_back_in(h, tool_server):
    tool_server.routes = {"/echo-all": _every_form_reply}
    tools = tool_yaml(
        tool_server.url + "/echo-all",
        name="probe",
        http_extra=(
            '    params: {key: "${TOOL_KEY}"}\n'
            '    headers: {Authorization: "Basic ${BASIC_CREDS}"}\n'
        ),
    )
    bot = h.bot(tools, env={"TOOL_KEY": ODD_SECRET, "BASIC_CREDS": BASIC})
    h.fake.enqueue(tool_use([("probe", {}, "toolu_p")]), text("Done."))

    events = await h.turn(bot, "Probe it.")

    echoed = tool_server.seen[0].target
    assert "qs%2Bcanary%2FZm9vYmFy%3D%3D" in echoed  # the server really got it encoded
    leaks = [
        ODD_SECRET,
        "qs%2Bcanary%2FZm9vYmFy%3D%3D",
        "qs%2bcanary%2fZm9vYmFy%3d%3d",  # lower-case hex
        "qs+canary\\/Zm9vYmFy==",
        BASIC,
        "alice:s3cret-password",
        "s3cret-password",
    ]
    stored = json.dumps([m.content for m in await h.history(bot)])
    for leak in leaks:
        for request in h.fake.requests:
            assert leak.encode() not in request.raw_body, leak
        assert leak not in repr(events), leak
        assert leak not in stored, leak
    assert results(events)[0].content.count("[redacted]") >= 4


# --------------------------------------------------------------------------------------------
# Redirects
# --------------------------------------------------------------------------------------------


async def test_redirects_through_a_turn(h, tool_server):
    from urllib.parse import quote

    other = ToolServer().start()
    try:
        base = tool_server.url + "/redirect?to="
        tools = (
            tool_yaml(base + quote("/echo/same", safe=""), name="plain")
            + tool_yaml(
                base + quote("/echo/same", safe=""),
                name="follows",
                http_extra="    follow_redirects: true\n",
            )
            + tool_yaml(
                base + quote(other.url + "/echo", safe=""),
                name="elsewhere",
                http_extra="    follow_redirects: true\n",
            )
        )
        bot = h.bot(tools)
        h.fake.enqueue(
            tool_use([("plain", {}, "t1"), ("follows", {}, "t2"), ("elsewhere", {}, "t3")]),
            text("ok"),
        )
        events = await h.turn(bot, "Go.")
        plain, follows, elsewhere = results(events)
        assert plain == ToolResult(
            "t1",
            "plain",
            "Tool plain got a redirect (HTTP 302) and does not follow redirects.",
            True,
        )
        assert not follows.is_error
        assert json.loads(follows.content)["target"] == "/echo/same"
        assert elsewhere.is_error
        assert elsewhere.content == (
            "Tool elsewhere was redirected to another host (127.0.0.1); "
            "botrunner only follows redirects on the same host."
        )
        assert other.seen == []
        assert sorted(s.path for s in tool_server.seen) == [
            "/echo/same",
            "/redirect",
            "/redirect",
            "/redirect",
        ]
    finally:
        other.stop()


# --------------------------------------------------------------------------------------------
# max_tool_rounds
# --------------------------------------------------------------------------------------------


async def test_tool_round_limit_ends_the_turn_and_the_next_turn_is_clean(h, tool_server):
    tool_server.routes = {"/weather/": lambda seen: (200, {}, b"cloudy")}
    bot = h.bot(weather_and_time(tool_server), extra="limits: {max_tool_rounds: 2}\n")
    h.fake.enqueue(
        tool_use([("get_weather", {"city": "A"}, "r1")]),
        tool_use([("get_weather", {"city": "B"}, "r2")]),
        tool_use([("get_weather", {"city": "C"}, "r3")]),
    )

    events = await h.turn(bot, "Loop forever.")

    assert isinstance(events[-1], Error)
    assert events[-1].code == "tool_limit"
    assert "2 rounds of tool calls" in events[-1].message
    assert not any(isinstance(e, Done) for e in events)
    assert [e.id for e in events if isinstance(e, ToolCall)] == ["r1", "r2"]
    # The third call was never run.
    assert tool_server.paths() == ["/weather/A", "/weather/B"]
    assert len(h.fake.requests) == 3

    # The next turn works and does not send the unfinished one.
    h.fake.enqueue(text("Hello again."))
    events = await h.turn(bot, "Hi.")
    assert texts(events) == "Hello again."
    assert isinstance(events[-1], Done)
    assert h.fake.requests[-1].messages == [user_text("Hi.")]

    # The stopped turn stays in the transcript, marked as such.
    stored = await h.history(bot)
    assert {m.status for m in stored if m.turn == 1} == {"stopped"}
    assert [m.status for m in stored if m.turn == 2] == ["ok", "ok"]


# --------------------------------------------------------------------------------------------
# Bounded fan-out (issue 9, item 4): at most limits.max_tool_calls_per_reply calls per reply,
# a few at a time; the rest get an error result so the history stays valid, and another
# conversation's call is not queued behind them.
# --------------------------------------------------------------------------------------------


def _tracking(server: ToolServer, hold: threading.Event) -> dict[str, int]:
    """Routes /weather/ through a handler that counts calls in flight and waits on `hold`."""
    state = {"now": 0, "peak": 0, "calls": 0}
    lock = threading.Lock()

    def weather(seen):
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["now"])
        hold.wait(0.05)
        with lock:
            state["now"] -= 1
        return 200, {}, b"sunny"

    server.routes = {"/weather/": weather}
    return state


async def test_a_reply_with_150_tool_calls_makes_8_four_at_a_time(h, tool_server):
    state = _tracking(tool_server, threading.Event())
    bot = h.bot(tool_yaml(tool_server.url + "/weather/{{ input.city }}", name="w", schema=CITY))
    calls = [("w", {"city": f"c{n}"}, f"toolu_{n}") for n in range(150)]
    h.fake.enqueue(tool_use(calls), text("Done."))

    events = await h.turn(bot, "Weather everywhere?")

    assert isinstance(events[-1], Done)
    assert state["calls"] == 8
    assert state["peak"] <= 4
    got = results(events)
    assert [r.is_error for r in got] == [False] * 8 + [True] * 142
    assert "at most 8 tool calls" in got[8].content
    # The model's next request answers every tool_use, so the history stays valid.
    answered = h.fake.requests[1].messages[-1]["content"]
    assert [b["tool_use_id"] for b in answered] == [f"toolu_{n}" for n in range(150)]
    if h.fake.flags_tool_errors:
        assert all(b.get("is_error") for b in answered[8:])


async def test_the_cap_is_set_in_the_bot_file(h, tool_server):
    state = _tracking(tool_server, threading.Event())
    bot = h.bot(
        tool_yaml(tool_server.url + "/weather/{{ input.city }}", name="w", schema=CITY),
        extra="limits: {max_tool_calls_per_reply: 2}\n",
    )
    h.fake.enqueue(tool_use([("w", {"city": f"c{n}"}, f"t{n}") for n in range(5)]), text("ok"))
    events = await h.turn(bot, "Weather?")
    assert state["calls"] == 2
    assert [r.is_error for r in results(events)] == [False, False, True, True, True]


async def test_another_conversation_is_not_queued_behind_a_fan_out(h, tool_server):
    """Turn A asks for 150 calls that the tool server holds; turn B, another user's, makes one
    call meanwhile through the same shared tool client and is answered at once."""
    release = threading.Event()
    held: list[str] = []

    def slow(seen):
        held.append(seen.path)
        release.wait(20)
        return 200, {}, b"slow"

    tool_server.routes = {"/slow/": slow, "/fast": lambda seen: (200, {}, b"fast")}
    bot = h.bot(
        tool_yaml(tool_server.url + "/slow/{{ input.city }}", name="slow", schema=CITY)
        + tool_yaml(tool_server.url + "/fast", name="fast")
    )
    h.fake.enqueue(tool_use([("slow", {"city": f"c{n}"}, f"a{n}") for n in range(150)]))
    turn_a = asyncio.ensure_future(h.turn(bot, "Many places?", session="a"))
    try:
        while not held:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # let every call A would make arrive
        h.fake.enqueue(tool_use([("fast", {}, "b1")]), text("B is done."))
        events_b = await asyncio.wait_for(h.turn(bot, "Quick one?", session="b"), 10)
        assert [r.content for r in results(events_b)] == ["fast"]
        assert len(held) <= 4  # A never had more than its share in flight
    finally:
        h.fake.enqueue(text("A is done."))
        release.set()
        events_a = await turn_a
    assert isinstance(events_a[-1], Done)
