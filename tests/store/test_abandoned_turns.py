"""Turns a dead process left pending, on every store: `fail_abandoned_turns` closes those older
than the threshold as `error` (and only those), over the index of pending turns; memory never
sends them; writing to a turn closed that way raises TurnClosed."""

from __future__ import annotations

import time

import pytest

from botrunner.events import Usage
from botrunner.store import ConversationKey, SQLiteStore, start_store
from botrunner.store.base import RecentTurns, TurnClosed

KEY = ConversationKey("tutor", "alice", "s1")


def text(value: str) -> list[dict]:
    return [{"type": "text", "text": value}]


@pytest.fixture
async def store(store_url: str):
    s = await start_store(store_url)
    yield s
    await s.close()


async def backdate(store, conv, turn: int, seconds: float) -> None:
    """Make `turn` look started `seconds` ago (as if its process died then)."""
    if isinstance(store, SQLiteStore):
        sql = "UPDATE turns SET created = created - ? WHERE conversation_id = ? AND turn = ?"
        await store.call(lambda c: c.execute(sql, (seconds, conv.id, turn)), write=True)
    else:
        sql = "UPDATE turns SET created = created - $1 WHERE conversation_id = $2 AND turn = $3"
        await store.db.execute(sql, seconds, conv.id, turn)


async def statuses(store, key: ConversationKey = KEY) -> dict[int, str]:
    return {m.turn: m.status for m in await store.history(key)}


async def test_old_pending_turns_fail_and_nothing_else_changes(store):
    conv = await store.open(KEY)
    done = await store.begin_turn(conv, text("answered"))
    await store.add_message(conv, done, "assistant", text("yes"), Usage(3, 4))
    assert await store.finish_turn(conv, done, "ok") == "ok"
    failed = await store.begin_turn(conv, text("failed"))
    assert await store.finish_turn(conv, failed, "stopped") == "stopped"
    dead = await store.begin_turn(conv, text("the process died"))
    await store.add_message(
        conv, dead, "assistant", [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]
    )
    running = await store.begin_turn(conv, text("still running"))
    other = await store.open(ConversationKey("tutor", "bob", "s9"))
    dead_too = await store.begin_turn(other, text("another conversation"))
    for c, turn in ((conv, done), (conv, failed), (conv, dead), (other, dead_too)):
        await backdate(store, c, turn, 1000)

    before = time.time()
    assert await store.fail_abandoned_turns(500) == 2
    assert await statuses(store) == {
        done: "ok",
        failed: "stopped",
        dead: "error",
        running: "pending",
    }
    assert await statuses(store, other.key) == {dead_too: "error"}
    assert await store.fail_abandoned_turns(500) == 0  # idempotent: nothing pending is that old

    # A failed turn is never sent to the model; the next turn starts after it as usual.
    assert await store.recent_turns(conv, None) == [
        {"role": "user", "content": text("answered")},
        {"role": "assistant", "content": text("yes")},
    ]
    assert await store.turn_numbers(conv, None) == [done]
    started = await store.start_turn(KEY, text("next"), None, RecentTurns(None))
    await started.durable
    assert started.turn == running + 1
    assert [m["content"] for m in started.recent] == [text("answered"), text("yes")]

    # Threshold 0: every turn pending now (including the one still running) is failed.
    assert await store.fail_abandoned_turns(0) == 2
    assert set((await statuses(store)).values()) == {"ok", "stopped", "error"}
    assert before <= await finished_time(store, conv, dead) <= time.time()


async def finished_time(store, conv, turn: int) -> float:
    if isinstance(store, SQLiteStore):
        sql = "SELECT finished FROM turns WHERE conversation_id = ? AND turn = ?"
        return await store.call(lambda c: c.execute(sql, (conv.id, turn)).fetchone()[0])
    sql = "SELECT finished FROM turns WHERE conversation_id = $1 AND turn = $2"
    return await store.db.fetchval(sql, conv.id, turn)


async def test_a_turn_failed_while_it_still_ran_refuses_its_late_writes(store):
    """A client that stopped reading for minutes: the sweep closed the turn while its process
    was still running it. Its later writes raise TurnClosed (a ValueError) and change nothing."""
    conv = await store.open(KEY)
    started = await store.start_turn(KEY, text("slow reader"), None)
    await started.durable
    assert await store.fail_abandoned_turns(0) == 1
    call = {"type": "tool_use", "id": "t", "name": "x", "input": {}}
    with pytest.raises(TurnClosed, match="already finished"):
        await store.add_message(conv, started.turn, "assistant", [call])
    with pytest.raises(TurnClosed, match="already finished"):
        await store.complete_turn(conv, started.turn, "ok", [("assistant", text("late"), None)])
    assert [(m.role, m.status) for m in await store.history(KEY)] == [("user", "error")]
    assert await store.recent_turns(conv, None) == []


async def test_the_sweep_reads_only_the_pending_turns_index(tmp_path):
    store = SQLiteStore(tmp_path / "plan.db")
    try:
        sql = "SELECT * FROM turns WHERE status = 'pending' AND created < 1"
        plan = await store.call(lambda c: c.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
        assert any("turns_pending" in row[-1] for row in plan), plan
    finally:
        await store.close()


async def test_postgres_sweeps_through_the_pending_turns_index(pg_url):
    store = await start_store(pg_url)
    try:
        async with store.db.acquire() as c, c.transaction():
            await c.execute("SET LOCAL enable_seqscan = off")
            plan = await c.fetch(
                "EXPLAIN UPDATE turns SET status = 'error' WHERE status = 'pending' AND created < 1"
            )
        assert "turns_pending" in "\n".join(row[0] for row in plan)
    finally:
        await store.close()
