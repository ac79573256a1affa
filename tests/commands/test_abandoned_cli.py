"""A turn left pending by a process that was killed (written through the store, never finished,
started long ago) is closed as failed when `botrunner chat` or `botrunner serve` starts, and
the conversation goes on without it; a sweep that fails is logged and tried again."""

from __future__ import annotations

import asyncio
import getpass
import io
import json
from pathlib import Path

import httpx
from fake_anthropic import text
from test_chat_cli import write_bot
from test_server_harness import ProcessServer, upstream_env, wait_until
from test_server_harness import write_bot as write_served_bot

from botrunner.botfile.livebot import LiveBots
from botrunner.commands import chat, process
from botrunner.engine.engine import Engine
from botrunner.server import Settings
from botrunner.store import ConversationKey, SQLiteStore, start_store

TEXT = [{"type": "text", "text": "asked just before the kill"}]


def left_pending(db: Path, key: ConversationKey, seconds_ago: float) -> None:
    """What a process killed mid-reply leaves: its turn started `seconds_ago`, still pending."""

    async def write() -> None:
        store = SQLiteStore(db)
        try:
            started = await store.start_turn(key, TEXT, None)
            await started.durable
            sql = "UPDATE turns SET created = created - ?"
            await store.call(lambda c: c.execute(sql, (seconds_ago,)), write=True)
        finally:
            await store.close()

    asyncio.run(write())


def history(db: Path, key: ConversationKey) -> list[tuple[int, str, str]]:
    async def read():
        store = await start_store(db)
        try:
            return [(m.turn, m.role, m.status) for m in await store.history(key)]
        finally:
            await store.close()

    return asyncio.run(read())


def test_chat_fails_the_turn_a_killed_chat_left_pending(fake_anthropic, tmp_path, monkeypatch):
    path, db = tmp_path / "bot.yaml", tmp_path / "c.db"
    write_bot(path, "Be brief.")  # bot `pipe`: 60 s turns, so 120 s pending is abandoned
    key = ConversationKey("pipe", "local:" + getpass.getuser(), "s1")
    left_pending(db, key, 3600)
    upstream_env(monkeypatch, fake_anthropic)
    fake_anthropic.enqueue(text("Hello again."))
    out = io.StringIO()
    options = {"session": "s1", "variables": {}, "db": db, "reload": False}
    assert chat.run(path, **options, stdin=io.StringIO("hello\n"), stdout=out) == 0
    assert out.getvalue() == "Hello again.\n"
    assert history(db, key) == [(1, "user", "error"), (2, "user", "ok"), (2, "assistant", "ok")]
    assert len(fake_anthropic.requests[-1].messages) == 1  # the failed turn is not sent


def test_serve_fails_the_turns_a_killed_server_left_pending(fake_anthropic, tmp_path):
    path, db, log = write_served_bot(tmp_path), tmp_path / "bots.db", tmp_path / "turns.log"
    key = ConversationKey("tutor", "anonymous", "k")
    left_pending(db, key, 3600)
    env = {"ANTHROPIC_BASE_URL": fake_anthropic.url, "ANTHROPIC_API_KEY": "test", "CI": "false"}
    args = [str(path), "--db", str(db), "--no-reload", "--log", str(log)]
    with ProcessServer(args, env) as srv:

        def statuses() -> list[str]:
            messages = httpx.get(srv.url + "/chat/k", timeout=10).json()["messages"]
            return [m["status"] for m in messages]

        assert wait_until(lambda: statuses() == ["error"])
        srv.terminate()
        assert srv.wait() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    swept = [line for line in lines if line["event"] == "abandoned_turns_failed"]
    assert [(s["turns"], s["pending_for_over_s"]) for s in swept] == [(1, 120.0)]


class FlakyStore(SQLiteStore):
    """A store whose first sweep fails, as when the database is briefly unreachable."""

    sweeps = 0

    async def fail_abandoned_turns(self, older_than_seconds: float) -> int:
        self.sweeps += 1
        if self.sweeps == 1:
            raise OSError("connection refused")
        return await super().fail_abandoned_turns(older_than_seconds)


async def test_a_failed_sweep_is_logged_and_tried_again(tmp_path, caplog):
    key = ConversationKey("tutor", "anonymous", "k")
    store = FlakyStore(tmp_path / "bots.db")
    engine = Engine(store)
    sweeping = asyncio.create_task(
        process._sweep_abandoned(engine, LiveBots(tmp_path), Settings(sweep_every=0.01))
    )
    try:
        started = await store.start_turn(key, TEXT, None)
        await started.durable
        await store.call(lambda c: c.execute("UPDATE turns SET created = 0"), write=True)
        for _ in range(500):
            if [m.status for m in await store.history(key)] == ["error"]:
                break
            await asyncio.sleep(0.01)
        assert [m.status for m in await store.history(key)] == ["error"]
    finally:
        sweeping.cancel()
        await engine.aclose()
        await store.close()
    [failed] = [r for r in caplog.records if r.getMessage() == "abandoned_turns_sweep_failed"]
    assert failed.fields == {"error": "OSError: connection refused"}
