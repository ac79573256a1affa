"""Turns a dead process left pending: the engine closes those older than its bots' longest
turn as failed, and a turn closed that way while its process in fact still ran (a client that
stopped reading for minutes) ends with an error event, never a traceback. Real SDK, fake
upstream (each provider), every store."""

from __future__ import annotations

import logging
import textwrap

import pytest
from fake_anthropic import text, tool_use

from botrunner.botfile.loader import load_bot
from botrunner.engine.engine import Engine
from botrunner.engine.limits import NO_BOTS_ABANDONED_SECONDS, abandoned_after, hold_seconds
from botrunner.events import Done, Error, TextDelta, ToolCall
from botrunner.store import SQLiteStore, start_store
from botrunner.store.base import ConversationKey

KEY = ConversationKey("t", "alice", "s1")
EXPIRED = Error(
    "turn_expired",
    "This reply ran for too long and was recorded as failed, so it was not saved. "
    "Send your message again.",
)


def write_bot(tmp_path, provider: str, name: str = "t", timeout: float = 10):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            model:
              provider: {provider}
              name: test-model
              max_tokens: 100
            system: You are terse.
            retry:
              timeout_seconds: {timeout}
            """
        )
    )
    return load_bot(path)


@pytest.fixture
async def engine(store_url):
    engine = Engine(await start_store(store_url))
    try:
        yield engine
    finally:
        await engine.aclose()
        await engine.store.close()


async def backdate(store, seconds: float) -> None:
    """Every turn looks started `seconds` earlier (as if its process died then)."""
    if isinstance(store, SQLiteStore):
        sql = "UPDATE turns SET created = created - ?"
        await store.call(lambda c: c.execute(sql, (seconds,)), write=True)
    else:
        await store.db.execute("UPDATE turns SET created = created - $1", seconds)


def test_a_turn_may_stay_pending_as_long_as_the_slowest_bot_runs(tmp_path):
    quick = write_bot(tmp_path, "anthropic", "quick", timeout=5)
    slow = write_bot(tmp_path, "anthropic", "slow", timeout=300)
    assert abandoned_after([quick, slow]) == hold_seconds(slow) == 300 + 60
    assert abandoned_after([]) == NO_BOTS_ABANDONED_SECONDS


async def test_the_engine_fails_what_a_dead_process_left_pending(
    upstream, engine, tmp_path, caplog
):
    bot = write_bot(tmp_path, upstream.provider)
    # A process started this turn and died: nothing of it ever runs again.
    await engine.prepare(bot, KEY, "never answered")
    assert await engine.fail_abandoned_turns([bot]) == 0  # younger than the bot's turns run
    await backdate(engine.store, hold_seconds(bot) + 1)
    caplog.set_level(logging.INFO, logger="botrunner.engine")
    assert await engine.fail_abandoned_turns([bot]) == 1
    [line] = [r for r in caplog.records if r.getMessage() == "abandoned_turns_failed"]
    assert line.fields == {"turns": 1, "pending_for_over_s": hold_seconds(bot)}
    assert [(m.role, m.status) for m in await engine.store.history(KEY)] == [("user", "error")]
    # The conversation goes on, and the failed turn is not sent to the model.
    upstream.enqueue(text("Answered."))
    events = [e async for e in engine.turn(bot, KEY, "again")]
    assert isinstance(events[-1], Done)
    assert len(upstream.requests[-1].messages) == 1


@pytest.mark.parametrize("when", ["streaming", "tool_round"])
async def test_a_turn_failed_while_it_still_ran_ends_with_an_error(
    upstream, engine, tmp_path, caplog, when
):
    bot = write_bot(tmp_path, upstream.provider)
    if when == "streaming":  # the reply's end can't be stored
        upstream.enqueue(text("A slow reader's reply.", chunks=["A slow ", "reader's ", "reply."]))
        swept_at = TextDelta
    else:  # the tool results can't be stored (the unknown tool answers with an error)
        upstream.enqueue(tool_use([("lookup", {"q": "x"}, "toolu_1")]), text("Never asked."))
        swept_at = ToolCall
    prepared = await engine.prepare(bot, KEY, "hi")
    events = []
    async for event in prepared.events():
        if isinstance(event, swept_at) and not any(isinstance(e, swept_at) for e in events):
            # Another process's sweep, while this one waits for its client to read.
            assert await engine.store.fail_abandoned_turns(0) == 1
        events.append(event)
    assert events[-1] == EXPIRED and not any(isinstance(e, Done) for e in events)
    assert {m.status for m in await engine.store.history(KEY)} == {"error"}
    assert any("already finished" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)
    # The next turn is answered, without the failed one.
    upstream.enqueue(text("Fine."))
    events = [e async for e in engine.turn(bot, KEY, "again")]
    assert isinstance(events[-1], Done)
    assert len(upstream.requests[-1].messages) == 1
