"""`botrunner db migrate` and `botrunner db copy` through the installed executable: a SQLite file
copied into PostgreSQL whole (histories, statuses, usage, summaries, search), verified, and
safe to run again; a source that went on since is updated, a target used since is left alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from botrunner.events import Usage
from botrunner.store import ConversationKey, SQLiteStore, start_store
from botrunner.store.base import TokenCharge

BOTRUNNER = str(Path(sys.executable).parent / "botrunner")
DAY = "2025-03-10"


def blocks(value: str) -> list[dict]:
    return [{"type": "text", "text": value}]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BOTRUNNER, *args], capture_output=True, text=True, timeout=120)


async def fill(store, user: str, session: str, turns: int) -> None:
    """`turns` turns: a tool round in the first, a failed one in the middle, the last
    pending; a summary; and a usage record."""
    conv = await store.open(ConversationKey("tutor", user, session))
    for n in range(1, turns + 1):
        turn = await store.begin_turn(conv, blocks(f"{session} question {n} xylophone{n}"))
        if n == turns:
            break  # in flight
        if n == 1:
            call = {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "x"}}
            await store.add_message(conv, turn, "assistant", [call], Usage(5, 1))
            result = {"type": "tool_result", "tool_use_id": "t1", "content": "42"}
            await store.add_message(conv, turn, "user", [result])
        await store.add_message(conv, turn, "assistant", blocks(f"answer {n}"), Usage(10, 3))
        await store.finish_turn(conv, turn, "error" if n == 2 else "ok")
    await store.set_summary(conv, f"{session}: a summary", 1)
    await store.settle(TokenCharge("tutor", user, DAY, 100 + turns))


def snapshot(url: str) -> dict:
    async def read() -> dict:
        store = await start_store(url)
        try:
            out = {}
            for key in await store.conversation_keys():
                conv = await store.find(key)
                history = [
                    (m.turn, m.role, m.content, m.status, m.usage) for m in await store.history(key)
                ]
                out[key] = (conv.turns, conv.summary, conv.summary_upto, history)
            out["usage"] = sorted(await store.usage_rows())
            return out
        finally:
            await store.close()

    return asyncio.run(read())


def make_source(path: Path) -> str:
    async def build() -> None:
        store = SQLiteStore(path)
        try:
            for i in range(3):
                await fill(store, f"user{i}", f"s{i}", 3 + i)
        finally:
            await store.close()

    asyncio.run(build())
    return str(path)


def test_copy_sqlite_to_postgres_whole_verified_and_rerunnable(tmp_path, pg_url):
    source = make_source(tmp_path / "botrunner.db")
    first = cli("db", "copy", "--from", source, "--to", pg_url)
    assert first.returncode == 0, first.stderr
    assert "3 conversation(s): 3 copied, 0 updated, 0 already there" in first.stdout
    assert "verified: every conversation and usage record matches the source" in first.stdout
    expected = snapshot(source)
    assert snapshot(pg_url) == expected and len(expected) == 4

    async def search() -> list[int]:
        store = await start_store(pg_url)
        try:
            conv = await store.find(ConversationKey("tutor", "user2", "s2"))
            return await store.search_turns(conv, "xylophone3", before=99, limit=2)
        finally:
            await store.close()

    assert asyncio.run(search()) == [3]  # the copied text is searchable in the target

    again = cli("db", "copy", "--from", source, "--to", pg_url)
    assert again.returncode == 0, again.stderr
    assert "0 copied, 0 updated, 3 already there; 0 message(s) written" in again.stdout
    assert snapshot(pg_url) == expected  # nothing twice, usage not added again


def test_a_rerun_updates_what_went_on_and_leaves_a_diverged_target_alone(tmp_path, pg_url):
    source = make_source(tmp_path / "botrunner.db")
    assert cli("db", "copy", "--from", source, "--to", pg_url).returncode == 0

    async def go_on() -> None:
        sqlite = SQLiteStore(source)
        pg = await start_store(pg_url)
        try:
            conv = await sqlite.open(ConversationKey("tutor", "user0", "s0"))  # the source
            turn = await sqlite.begin_turn(conv, blocks("one more"))
            await sqlite.add_message(conv, turn, "assistant", blocks("sure"))
            await sqlite.finish_turn(conv, turn, "ok")
            await sqlite.settle(TokenCharge("tutor", "user0", DAY, 50))
            used = await pg.open(ConversationKey("tutor", "user1", "s1"))  # the target
            await pg.begin_turn(used, blocks("served by the new store"))
        finally:
            await sqlite.close()
            await pg.close()

    asyncio.run(go_on())
    target_before = snapshot(pg_url)
    rerun = cli("db", "copy", "--from", source, "--to", pg_url)
    assert rerun.returncode == 1
    assert "0 copied, 1 updated, 1 already there" in rerun.stdout
    assert "conflict: bot 'tutor', user 'user1', session 's1': the target has 5 turns" in (
        rerun.stderr
    )
    after, source_now = snapshot(pg_url), snapshot(source)
    s0 = ConversationKey("tutor", "user0", "s0")
    s1 = ConversationKey("tutor", "user1", "s1")
    assert after[s0] == source_now[s0]  # updated to where the source is now
    assert after[s1] == target_before[s1]  # the diverged one untouched
    assert ("tutor", "user0", DAY, 153) in after["usage"]


def test_copy_back_from_postgres_to_sqlite(tmp_path, pg_url):
    source = make_source(tmp_path / "a.db")
    assert cli("db", "copy", "--from", source, "--to", pg_url).returncode == 0
    back = str(tmp_path / "b.db")
    result = cli("db", "copy", "--from", pg_url, "--to", f"sqlite://{back}")
    assert result.returncode == 0, result.stderr
    assert snapshot(back) == snapshot(source)


def test_copy_refuses_what_would_copy_nothing(tmp_path):
    missing = cli("db", "copy", "--from", str(tmp_path / "nope.db"), "--to", str(tmp_path / "x.db"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr and not (tmp_path / "nope.db").exists()
    path = make_source(tmp_path / "same.db")
    same = cli("db", "copy", "--from", path, "--to", f"sqlite://{path}")
    assert same.returncode == 2 and "the same store" in same.stderr


def test_migrate_applies_then_reports_up_to_date(tmp_path, store_url):
    from botrunner.store import migrations
    from botrunner.store.postgres import migrations as pg_migrations

    n = len((pg_migrations if "://" in store_url else migrations).MIGRATIONS)
    first = cli("db", "migrate", "--db", store_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(f"schema version {n} (applied {n} migration(s))")
    second = cli("db", "migrate", "--db", store_url)
    assert second.stdout.strip().endswith(f"schema version {n} (already up to date)")
