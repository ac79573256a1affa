"""Every store (SQLite file, PostgreSQL) through one suite: restart, turns and their status,
search, deletion, migrations, concurrency; then what only SQLite has (durability settings, the
writer thread's group commit) and the opener registry."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
from sqlite_faults import add_deferred_foreign_key, break_the_commit
from stores import scalar

from botrunner.events import Usage
from botrunner.store import (
    STORES,
    ConversationKey,
    SQLiteStore,
    StoreClosed,
    StoreError,
    open_store,
    parse_store_url,
    start_store,
)
from botrunner.store import sqlite as sqlite_module
from botrunner.store.base import RecentTurns

KEY = ConversationKey("tutor", "alice", "s1")


def text(value: str) -> list[dict]:
    return [{"type": "text", "text": value}]


@pytest.fixture
async def store(store_url: str):
    s = await start_store(store_url)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "bot.db")
    yield s
    await s.close()


async def complete_turn(store, conv, user: str, reply: str, *, tool: bool = False) -> int:
    turn = await store.begin_turn(conv, text(user))
    if tool:
        call = {"type": "tool_use", "id": f"t{turn}", "name": "lookup", "input": {"q": user}}
        await store.add_message(conv, turn, "assistant", [call], Usage(10, 5))
        result = {"type": "tool_result", "tool_use_id": f"t{turn}", "content": "42"}
        await store.add_message(conv, turn, "user", [result])
    await store.add_message(conv, turn, "assistant", text(reply), Usage(20, 7))
    await store.finish_turn(conv, turn, "ok")
    return turn


async def test_pragmas_wal_full_foreign_keys(sqlite_store):
    store = sqlite_store

    def pragmas(c: sqlite3.Connection):
        return {
            name: c.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }

    values = await store.call(pragmas)
    assert values["journal_mode"] == "wal"
    assert values["synchronous"] == 2  # FULL
    assert values["foreign_keys"] == 1
    assert values["busy_timeout"] > 0


async def test_open_creates_once_and_find(store):
    assert await store.find(KEY) is None
    conv = await store.open(KEY)
    again = await store.open(KEY)
    assert conv.id == again.id and conv.turns == 0 and conv.key == KEY
    assert (await store.find(KEY)).id == conv.id


async def test_sessions_belong_to_users(store):
    a = await store.open(ConversationKey("tutor", "alice", "same"))
    b = await store.open(ConversationKey("tutor", "bob", "same"))
    c = await store.open(ConversationKey("other", "alice", "same"))
    assert len({a.id, b.id, c.id}) == 3
    await complete_turn(store, a, "alice's secret", "noted")
    assert await store.history(ConversationKey("tutor", "bob", "same")) == []


async def test_history_keeps_everything_with_status_and_usage(store):
    conv = await store.open(KEY)
    await complete_turn(store, conv, "q1", "a1", tool=True)
    failed = await store.begin_turn(conv, text("q2"))
    await store.add_message(conv, failed, "assistant", [{"type": "text", "text": "half"}])
    await store.finish_turn(conv, failed, "error")
    pending = await store.begin_turn(conv, text("q3"))
    assert (failed, pending, conv.turns) == (2, 3, 3)

    history = await store.history(KEY)
    assert [(m.turn, m.role, m.status) for m in history] == [
        (1, "user", "ok"),
        (1, "assistant", "ok"),
        (1, "user", "ok"),
        (1, "assistant", "ok"),
        (2, "user", "error"),
        (2, "assistant", "error"),
        (3, "user", "pending"),
    ]
    assert history[1].content[0]["type"] == "tool_use"
    assert history[1].usage == Usage(10, 5)
    assert history[0].usage is None
    assert all(m.created > 0 for m in history)
    # Only the completed turn is ever sent back.
    assert await store.turn_numbers(conv, None) == [1]
    assert len(await store.recent_turns(conv, None)) == 4


async def test_survives_restart(store_url: str):
    first = await start_store(store_url)
    conv = await first.open(KEY)
    await complete_turn(first, conv, "remember 7", "ok")
    await first.set_summary(conv, "the number is 7", 1)
    await first.begin_turn(conv, text("in flight"))
    await first.close()

    second = await start_store(store_url)
    try:
        again = await second.open(KEY)
        assert (again.id, again.turns, again.summary, again.summary_upto) == (
            conv.id,
            2,
            "the number is 7",
            1,
        )
        assert await second.recent_turns(again, 5) == [
            {"role": "user", "content": text("remember 7")},
            {"role": "assistant", "content": text("ok")},
        ]
        assert [m.status for m in await second.history(KEY)] == ["ok", "ok", "pending"]
        assert await complete_turn(second, again, "next", "fine") == 3
    finally:
        await second.close()


async def test_recent_turns_bounds(store):
    conv = await store.open(KEY)
    for i in range(1, 9):
        if i in (3, 6):
            turn = await store.begin_turn(conv, text(f"q{i}"))
            await store.finish_turn(conv, turn, "stopped")
        else:
            await complete_turn(store, conv, f"q{i}", f"a{i}")
    assert await store.turn_numbers(conv, None) == [1, 2, 4, 5, 7, 8]
    assert await store.turn_numbers(conv, 3) == [5, 7, 8]
    assert await store.turn_numbers(conv, 3, before=8) == [4, 5, 7]
    assert await store.turn_numbers(conv, None, after=2, before=7) == [4, 5]
    assert await store.turn_numbers(conv, 0) == []
    messages = await store.recent_turns(conv, 2, before=7)
    assert [m["content"][0]["text"] for m in messages] == ["q4", "a4", "q5", "a5"]
    assert await store.turns(conv, [8, 1, 3]) == [  # 3 was stopped: never returned
        {"role": "user", "content": text("q1")},
        {"role": "assistant", "content": text("a1")},
        {"role": "user", "content": text("q8")},
        {"role": "assistant", "content": text("a8")},
    ]


async def test_ok_requires_a_complete_exchange(store):
    conv = await store.open(KEY)
    no_reply = await store.begin_turn(conv, text("q"))
    assert await store.finish_turn(conv, no_reply, "ok") == "error"
    dangling = await store.begin_turn(conv, text("q"))
    call = {"type": "tool_use", "id": "x", "name": "lookup", "input": {}}
    await store.add_message(conv, dangling, "assistant", [call])
    assert await store.finish_turn(conv, dangling, "ok") == "error"
    with pytest.raises(ValueError, match="already finished"):
        await store.add_message(conv, dangling, "assistant", text("late"))
    with pytest.raises(KeyError):
        await store.finish_turn(conv, 99, "error")
    with pytest.raises(ValueError):
        await store.finish_turn(conv, dangling, "pending")
    good = await complete_turn(store, conv, "q", "a", tool=True)
    assert await store.turn_numbers(conv, None) == [good]
    assert [m.status for m in await store.history(KEY)][:3] == ["error", "error", "error"]


async def test_search_is_scoped_ranked_and_safe(store):
    conv = await store.open(KEY)
    other = await store.open(ConversationKey("tutor", "bob", "s1"))
    await complete_turn(store, other, "xylophone lessons", "sure")
    for i in range(1, 11):
        words = "my xylophone is blue" if i == 3 else f"ordinary chatter number {i}"
        await complete_turn(store, conv, words, f"reply {i}", tool=(i == 5))
    failed = await store.begin_turn(conv, text("xylophone again"))
    await store.finish_turn(conv, failed, "error")

    assert await store.search_turns(conv, "Tell me about the XYLOPHONE", before=99, limit=3) == [3]
    assert await store.search_turns(conv, "xylophone", before=3, limit=3) == []
    # Tool results are searchable too (turn 5's result is "42").
    assert await store.search_turns(conv, "42", before=99, limit=3) == [5]
    ranked = await store.search_turns(conv, "chatter number 7", before=99, limit=2)
    assert ranked[0] == 7 and len(ranked) == 2
    for hostile in ['"', 'a" OR conv:c1 OR "b', "NEAR(x y)", "* ^ - + :", "text:(", "AND OR NOT"]:
        await store.search_turns(conv, hostile, before=99, limit=3)  # never a syntax error
    assert await store.search_turns(conv, "?! ... ---", before=99, limit=3) == []


async def test_delete_forgets_messages_and_search_rows(store):
    conv = await store.open(KEY)
    await complete_turn(store, conv, "xylophone", "yes", tool=True)
    keep = await store.open(ConversationKey("tutor", "bob", "s1"))
    await complete_turn(store, keep, "xylophone", "yes")

    assert await store.delete(KEY) is True
    assert await store.delete(KEY) is False
    assert await store.find(KEY) is None
    assert await store.history(KEY) == []
    for table in ("messages", "turns"):
        sql = f"SELECT count(*) FROM {table} WHERE conversation_id = {conv.id}"
        assert await scalar(store, sql) == 0
    assert await store.search_turns(keep, "xylophone", before=99, limit=3) == [1]
    fresh = await store.open(KEY)
    assert fresh.turns == 0 and fresh.id != conv.id


async def test_delete_removes_the_sqlite_search_rows(sqlite_store):
    store = sqlite_store
    conv = await store.open(KEY)
    await complete_turn(store, conv, "xylophone", "yes", tool=True)
    keep = await store.open(ConversationKey("tutor", "bob", "s1"))
    await complete_turn(store, keep, "xylophone", "yes")
    fts_rows = "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'xylophone'"
    assert await scalar(store, fts_rows) == 3  # user message and tool input, bob's message
    await store.delete(KEY)
    assert await scalar(store, fts_rows) == 1


async def test_summary_is_monotonic(store):
    conv = await store.open(KEY)
    await store.set_summary(conv, "first", 5)
    await store.set_summary(conv, "stale", 3)
    assert (conv.summary, conv.summary_upto) == ("first", 5)
    again = await store.find(KEY)
    assert (again.summary, again.summary_upto) == ("first", 5)


async def test_concurrent_turns_are_numbered_uniquely(store):
    conv = await store.open(KEY)
    numbers = await asyncio.gather(*(store.begin_turn(conv, text(f"m{i}")) for i in range(50)))
    assert sorted(numbers) == list(range(1, 51))
    assert conv.turns == 50
    assert (await store.find(KEY)).turns == 50


async def test_a_failing_write_leaves_concurrent_writes_alone(store):
    """SQLite: many writes land in one transaction; one failing job rolls back only itself."""
    convs = [await store.open(ConversationKey("b", f"u{i}", "s")) for i in range(40)]
    turns = await asyncio.gather(*(store.begin_turn(c, text("hi")) for c in convs))
    results = await asyncio.gather(
        *(
            store.add_message(c, t, "assistant", text("ok"))
            for c, t in zip(convs, turns, strict=True)
        ),
        store.add_message(convs[0], 77, "assistant", text("no such turn")),
        return_exceptions=True,
    )
    assert all(r is None for r in results[:-1])
    assert isinstance(results[-1], KeyError)
    await asyncio.gather(*(store.finish_turn(c, 1, "ok") for c in convs))
    for c in convs:
        assert len(await store.recent_turns(c, None)) == 2


async def test_writes_batch_into_few_commits(sqlite_store):
    store = sqlite_store
    commits = 0

    def trace(statement: str) -> None:
        nonlocal commits
        commits += statement == "COMMIT"

    await store.call(lambda c: c.set_trace_callback(trace))
    convs = [await store.open(ConversationKey("b", f"u{i}", "s")) for i in range(64)]
    commits = 0
    await asyncio.gather(*(store.begin_turn(c, text("hi")) for c in convs))
    await store.call(lambda c: c.set_trace_callback(None))
    assert commits < 64


async def test_a_cancelled_caller_does_not_break_the_store(store):
    conv = await store.open(KEY)
    task = asyncio.ensure_future(store.begin_turn(conv, text("hi")))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await store.begin_turn(conv, text("again")) >= 1


async def test_call_early_hands_the_result_back_before_the_commit(sqlite_store):
    store = sqlite_store
    """`call_early` returns once the job ran; `durable` resolves only after the COMMIT."""
    armed, commit_may_go = threading.Event(), threading.Event()

    def trace(statement: str) -> None:
        if statement == "COMMIT" and armed.is_set():
            commit_may_go.wait(10)  # hold the writer thread at its COMMIT

    await store.call(lambda c: c.set_trace_callback(trace))
    armed.set()
    value, durable = await asyncio.wait_for(
        store.call_early(lambda c: c.execute("SELECT 6 * 7").fetchone()[0]), 5
    )
    assert value == 42
    await asyncio.sleep(0.05)
    assert not durable.done()  # the COMMIT has not run yet
    commit_may_go.set()
    await asyncio.wait_for(durable, 5)
    armed.clear()
    await store.call(lambda c: c.set_trace_callback(None))


async def test_call_early_reports_a_failed_commit_through_durable(sqlite_store):
    store = sqlite_store
    """A write whose COMMIT fails (here: a deferred foreign key) was handed back already: the
    caller learns it was rolled back from `durable`, and the store goes on working."""

    await add_deferred_foreign_key(store)
    rowid, durable = await store.call_early(break_the_commit)
    assert rowid == 1
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await durable
    assert await store.call(lambda c: c.execute("SELECT COUNT(*) FROM child").fetchone()) == (0,)
    conv = await store.open(KEY)
    assert await store.begin_turn(conv, text("still works")) == 1


async def test_call_early_job_error_raises_and_leaves_nothing_to_wait_for(sqlite_store):
    store = sqlite_store
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await store.call_early(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))


async def test_start_turn_reads_the_recent_turns_in_the_same_step(store):
    conv = await store.open(KEY)
    for n in range(3):
        await complete_turn(store, conv, f"q{n}", f"a{n}")
    started = await store.start_turn(KEY, text("q3"), None, RecentTurns(2))
    await started.durable
    assert started.turn == 4
    assert [m["content"][0]["text"] for m in started.recent] == ["q1", "a1", "q2", "a2"]
    assert (await store.start_turn(KEY, text("q4"), None)).recent is None


async def test_a_close_cut_short_can_be_finished_later(tmp_path: Path):
    """A shutdown deadline that cancels close() must not break the writer: a second close()
    still waits for the queued work and the thread ends cleanly."""
    s = SQLiteStore(tmp_path / "x.db")
    crashes: list[BaseException] = []
    old_hook, threading.excepthook = threading.excepthook, lambda a: crashes.append(a.exc_value)
    try:
        gate = threading.Event()
        slow = asyncio.ensure_future(s.call(lambda c: gate.wait(10) and 7, write=True))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(s.close(), 0.05)
        gate.set()
        await asyncio.wait_for(s.close(), 5)
        assert await slow == 7
        s._thread.join(5)
        assert not s._thread.is_alive()
    finally:
        threading.excepthook = old_hook
    assert crashes == []


async def test_close_is_idempotent_and_final(store_url: str):
    s = await start_store(store_url)
    await s.close()
    await s.close()
    with pytest.raises(StoreClosed):
        await s.find(KEY)


async def test_migrations_are_tracked_by_user_version(tmp_path: Path):
    path = tmp_path / "m.db"
    s = SQLiteStore(path)
    await s.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_module.MIGRATIONS)
        c.execute(f"PRAGMA user_version = {len(sqlite_module.MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this botrunner knows"):
        SQLiteStore(path)


async def test_open_store_registry(tmp_path: Path):
    assert parse_store_url("bots.db") == ("sqlite", "bots.db")
    assert parse_store_url("sqlite:///var/x.db") == ("sqlite", "/var/x.db")
    assert parse_store_url("SQLite://rel.db") == ("sqlite", "rel.db")
    assert parse_store_url("postgres://u@h/x") == ("postgres", "postgres://u@h/x")
    assert {"sqlite", "postgresql", "postgres"} <= STORES.keys()
    with pytest.raises(StoreError, match="unknown store 'mysql'"):
        open_store("mysql://db/x")
    path = tmp_path / "nested" / "dir" / "bot.db"
    s = open_store(f"sqlite://{path}")
    try:
        assert isinstance(s, SQLiteStore)
        await s.open(KEY)
    finally:
        await s.close()
    assert path.exists()
    m = open_store(":memory:")
    await m.open(KEY)
    await m.close()


CRASH_SCRIPT = """
import asyncio, os, signal, sys
from botrunner.store import ConversationKey, start_store
from botrunner.store.base import TokenCharge

async def main():
    store = await start_store(sys.argv[1])
    conv = await store.open(ConversationKey("tutor", "alice", "s1"))
    turn = await store.begin_turn(conv, [{"type": "text", "text": "acknowledged"}])
    await store.settle(TokenCharge("tutor", "alice", "2025-03-10", 42))
    print(turn, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit, no flush

asyncio.run(main())
"""


async def test_acknowledged_writes_survive_a_kill(store_url: str):
    root = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH_SCRIPT,
        store_url,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -9 and out.strip() == b"1"
    store = await start_store(store_url)
    try:
        assert [(m.turn, m.status, m.content) for m in await store.history(KEY)] == [
            (1, "pending", text("acknowledged"))
        ]
        assert await store.tokens_used("tutor", "alice", "2025-03-10") == 42
    finally:
        await store.close()
