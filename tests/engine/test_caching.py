"""Prompt caching end to end: the real SDK against the fake upstream, which applies the
documented caching rules (tests/fake_cache.py). Where the breakpoints go, what stays
byte-identical from turn to turn, what the usage says and what the budget counts."""

from __future__ import annotations

import json
import logging
import socket
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic, text, tool_use

from botrunner.bot import Bot
from botrunner.botfile.loader import load_bot
from botrunner.engine import Engine
from botrunner.engine.limits import RateLimited
from botrunner.engine.turnlog import TurnRecord
from botrunner.events import Done, Error, Usage
from botrunner.store import ConversationKey, open_store


def closed_port() -> int:
    """A port nothing listens on (bound, then released): the tool call fails fast."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# About 5,000 tokens (the fake counts 4 bytes a token): far above any minimum.
LONG_PROMPT = "You are a patient tutor. Explain every step. " * 440


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = Engine(open_store(tmp_path / "chat.db"))
    try:
        yield engine
    finally:
        await engine.aclose()
        await engine.store.close()


def make_bot(tmp_path: Path, fake: FakeAnthropic, extra: str = "", model: str = "") -> Bot:
    path = tmp_path / "bot.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: tutor
            model:
              name: claude-test
              max_tokens: 100
              base_url: {fake.url}
              {model}
            system: |
              {LONG_PROMPT}
              Today is {{{{ today }}}}. The user is {{{{ user.name }}}}; you are {{{{ bot.name }}}}.
            retry: {{max_retries: 0, timeout_seconds: 10}}
            """
        )
        + textwrap.dedent(extra)
    )
    return load_bot(path)


TOOL = f"""\
tools:
  - name: lookup
    description: Look something up.
    input_schema: {{type: object}}
    http:
      method: GET
      url: http://127.0.0.1:{closed_port()}/lookup
"""


async def say(engine: Engine, bot: Bot, message: str, user: str = "alice") -> list:
    key = ConversationKey(bot.name, user, "s1")
    return [e async for e in engine.turn(bot, key, message, user={"name": user.title()})]


def done(events: list) -> Done:
    assert isinstance(events[-1], Done), events[-1]
    return events[-1]


async def test_breakpoints_go_on_tools_system_and_the_last_two_messages(
    tmp_path, engine, fake_anthropic
):
    bot = make_bot(tmp_path, fake_anthropic, TOOL)
    fake_anthropic.enqueue(text("Hello."))
    await say(engine, bot, "hi")
    fake_anthropic.enqueue(tool_use([("lookup", {})]), text("Found nothing."))
    await say(engine, bot, "look it up")
    fake_anthropic.enqueue(text("Bye."))
    await say(engine, bot, "thanks")

    marks = [r.breakpoints for r in fake_anthropic.requests]
    assert marks == [
        ["tools[0]", "system[0]", "messages[0][0]"],
        # the previous exchange's reply, and the new message
        ["tools[0]", "system[0]", "messages[1][0]", "messages[2][0]"],
        # the tool round: the tool_use message and the tool results
        ["tools[0]", "system[0]", "messages[3][0]", "messages[4][0]"],
        ["tools[0]", "system[0]", "messages[5][0]", "messages[6][0]"],
    ]
    assert all(len(m) <= 4 for m in marks)
    # The tool_use block itself (the last markable block of its message) carries the marker.
    assert fake_anthropic.requests[2].body["messages"][3]["content"][-1]["type"] == "tool_use"
    # Markers never reach the store: history comes back without them.
    history = await engine.store.history(ConversationKey("tutor", "alice", "s1"))
    assert "cache_control" not in json.dumps([m.content for m in history])


async def test_the_system_prompt_is_byte_identical_across_turns(tmp_path, engine, fake_anthropic):
    bot = make_bot(tmp_path, fake_anthropic, "memory: {strategy: summarize, max_turns: 3}\n")
    for n in range(5):
        fake_anthropic.enqueue(text(f"answer {n}"))
        if n in (2, 4):  # 3 turns wait: the oldest 2 are summarized, after the turn
            fake_anthropic.enqueue(text("They asked two questions."))
        await say(engine, bot, f"question {n}")
        await engine.drain()
    turns = [r for r in fake_anthropic.requests if isinstance(r.body["system"], list)]
    assert len(turns) == 5 and len(fake_anthropic.requests) == 7
    prompts = [r.body["system"][0] for r in turns]
    assert prompts[0]["text"].startswith("You are a patient tutor.")
    assert "The user is Alice; you are tutor." in prompts[0]["text"]
    assert all(p == prompts[0] for p in prompts)
    # The summary follows in a block of its own, the same on every turn until the next fold.
    summaries = [r.body["system"][1:] for r in turns]
    assert summaries[:3] == [[], [], []]
    assert (
        summaries[3]
        == summaries[4]
        == [
            {
                "type": "text",
                "text": "\n\nSummary of the earlier conversation:\nThey asked two questions.",
            }
        ]
    )
    # And the rendered prompt's bytes are exactly the same in every request body.
    prompt = json.dumps(prompts[0]["text"], ensure_ascii=False)[1:-1].encode()
    assert all(prompt in r.raw_body for r in turns)


async def test_each_turn_reads_what_the_previous_turn_wrote(tmp_path, engine, fake_anthropic):
    bot = make_bot(tmp_path, fake_anthropic)
    fake_anthropic.enqueue(text("One."), text("Two."), text("Three."))
    first = done(await say(engine, bot, "first")).usage
    second = done(await say(engine, bot, "second")).usage
    third = done(await say(engine, bot, "third")).usage
    assert first.cache_read_tokens == 0 and first.cache_write_tokens > 4500
    # Everything the first request sent is read back; only the new exchange is written.
    assert second.cache_read_tokens == first.cache_write_tokens
    assert 0 < second.cache_write_tokens < 50
    assert third.cache_read_tokens == second.cache_read_tokens + second.cache_write_tokens
    # Cached or not, every prompt token is counted once.
    assert second.prompt_tokens > first.prompt_tokens


async def test_another_user_reads_the_shared_tools_but_not_the_personal_prompt(
    tmp_path, engine, fake_anthropic
):
    """The system prompt names the user, so it differs per user: a second user's first turn
    reads only the tools from the cache (their own breakpoint), and writes the rest."""
    bot = make_bot(tmp_path, fake_anthropic, TOOL.replace("Look something up.", "x " * 3000))
    fake_anthropic.enqueue(text("Hi Alice."), text("Hi Bob."))
    alice = done(await say(engine, bot, "hi", user="alice")).usage
    bob = done(await say(engine, bot, "hi", user="bob")).usage
    assert alice.cache_read_tokens == 0
    assert 1500 <= bob.cache_read_tokens < alice.cache_write_tokens


async def test_cache_off_sends_no_cache_control(tmp_path, engine, fake_anthropic):
    bot = make_bot(tmp_path, fake_anthropic, TOOL, model="cache: off")
    assert bot.model.cache == "off"
    fake_anthropic.enqueue(text("One."), tool_use([("lookup", {})]), text("Two."))
    first = done(await say(engine, bot, "first")).usage
    done(await say(engine, bot, "second"))
    assert len(fake_anthropic.requests) == 3
    for request in fake_anthropic.requests:
        assert b"cache_control" not in request.raw_body
        assert isinstance(request.body["system"], str)
    assert (first.cache_read_tokens, first.cache_write_tokens) == (0, 0)


async def test_a_one_hour_ttl_marks_every_breakpoint_and_is_reported(
    tmp_path, engine, fake_anthropic
):
    bot = make_bot(tmp_path, fake_anthropic, TOOL, model="cache_ttl: 1h")
    fake_anthropic.enqueue(text("One."))
    usage = done(await say(engine, bot, "first")).usage
    body = fake_anthropic.requests[0].body
    markers = [body["tools"][0]["cache_control"], body["system"][0]["cache_control"]]
    markers.append(body["messages"][0]["content"][0]["cache_control"])
    assert markers == [{"type": "ephemeral", "ttl": "1h"}] * 3
    assert usage.cache_write_1h_tokens == usage.cache_write_tokens > 4500


async def test_usage_reports_what_the_upstream_returned(tmp_path, engine, fake_anthropic, caplog):
    bot = make_bot(tmp_path, fake_anthropic)
    fake_anthropic.enqueue(
        text(
            "Cached.",
            input_tokens=7,
            output_tokens=3,
            cache_read_tokens=900,
            cache_write_tokens=120,
            cache_write_1h_tokens=20,
        )
    )
    with caplog.at_level(logging.INFO, logger="botrunner.engine.turn"):
        usage = done(await say(engine, bot, "hi")).usage
    assert usage == Usage(7, 3, 900, 120, 20)
    assert usage.to_dict() == {
        "input_tokens": 7,
        "output_tokens": 3,
        "cache_read_tokens": 900,
        "cache_write_tokens": 120,
    }
    (record,) = [r.turn for r in caplog.records if isinstance(getattr(r, "turn", None), TurnRecord)]
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (
        7,
        900,
        120,
    )
    (reply,) = [
        m for m in await engine.store.history(ConversationKey("tutor", "alice", "s1")) if m.usage
    ]
    assert reply.usage == Usage(7, 3, 900, 120)
    (total,) = await engine.store.usage_totals(by="user")
    assert (total.group, total.model, total.turns) == ("alice", "claude-test", 1)
    assert total.usage == Usage(7, 3, 900, 120, 20)


async def test_the_daily_budget_counts_cache_reads_and_writes(tmp_path, engine, fake_anthropic):
    bot = make_bot(tmp_path, fake_anthropic, "limits: {per_user: {tokens_per_day: 1000}}\n")
    fake_anthropic.enqueue(
        text("Ok.", input_tokens=10, output_tokens=10, cache_read_tokens=900, cache_write_tokens=90)
    )
    done(await say(engine, bot, "hi"))
    assert (
        await engine.store.tokens_used("tutor", "alice", engine.limiter.admission(bot, "alice").day)
        == 1010
    )
    # 1,010 of 1,000 used: the next message is refused, though input + output were only 20.
    events = await say(engine, bot, "again")
    assert isinstance(events[-1], Error) and events[-1].code == "rate_limited"
    with pytest.raises(RateLimited):
        await engine.prepare(bot, ConversationKey("tutor", "alice", "s1"), "again")
