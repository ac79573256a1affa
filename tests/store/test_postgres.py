"""What only the PostgreSQL store has to show: migrations when several processes start at once,
a newer schema refused, every start-up failure as one line through the real CLI, limits exact
across separate connection pools, and search that finds what the SQLite store finds. (Everything
both stores promise is in the shared suite: test_store, test_limits, test_memory, ...)"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fake_anthropic import text
from fake_postgres import password_refusing_server
from stores import database_url, scalar

from botrunner.events import Usage
from botrunner.store import ConversationKey, SQLiteStore, StoreError, start_store
from botrunner.store.base import Admission, Refused, StartedTurn
from botrunner.store.postgres.migrations import MIGRATIONS

BOTRUNNER = str(Path(sys.executable).parent / "botrunner")
REPO = Path(__file__).resolve().parents[2]
KEY = ConversationKey("tutor", "alice", "s1")


def blocks(value: str) -> list[dict]:
    return [{"type": "text", "text": value}]


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BOTRUNNER, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_processes_starting_at_once_apply_each_migration_once(pg_url):
    runs = [
        subprocess.Popen(
            [BOTRUNNER, "db", "migrate", "--db", pg_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    said = [out for out, _ in outputs]
    applied = [
        int(m.group(1)) for out in said for m in [re.search(r"applied (\d+) migr", out)] if m
    ]
    assert sum(applied) == len(MIGRATIONS), said  # each step once, whoever took it
    assert all(f"schema version {len(MIGRATIONS)} (" in out for out in said), said


async def test_a_newer_schema_is_refused_with_a_clear_message(pg_url):
    store = await start_store(pg_url)
    await store.db.execute("UPDATE botrunner_schema SET version = 99")
    await store.close()
    with pytest.raises(StoreError, match="schema is version 99, newer than this botrunner"):
        await start_store(pg_url)
    result = cli("db", "migrate", "--db", pg_url)
    assert result.returncode == 2
    assert result.stderr.startswith("error: the database schema is version 99")
    assert "upgrade botrunner" in result.stderr and "Traceback" not in result.stderr


def start_up_failures(pg_database: str) -> dict[str, tuple[str, str]]:
    """--db value -> (what the one line must say, what it must not)."""
    return {
        f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/x": (
            "connection refused: is the server running?",
            "hunter2",
        ),
        database_url("botrunner_no_such_database"): (
            "has no database 'botrunner_no_such_database': create it",
            "Traceback",
        ),
        pg_database.replace("postgres@", "botrunner_no_such_role@"): (
            "refused user 'botrunner_no_such_role'",
            "Traceback",
        ),
        "postgresql://u:hunter2@127.0.0.1:notaport/x": ("not a valid PostgreSQL URL", "hunter2"),
        "postgresql://u@botrunner-no-such-host.invalid/x": ("unknown host", "Traceback"),
        f"{pg_database}?search_path=botrunner_no_such_schema": (
            "search_path names no schema that exists",
            "Traceback",
        ),
    }


@pytest.mark.parametrize("command", ["serve", "chat"])
def test_every_start_up_failure_is_one_line_and_exit_2(pg_database, tmp_path, command):
    for url, (says, never) in start_up_failures(pg_database).items():
        result = cli(
            command, str(REPO / "bots" / "tutor.yaml"), "--no-reload", env={"BOTRUNNER_DB": url}
        )
        assert result.returncode == 2, (url, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (url, result.stderr)
        assert says in lines[0] and never not in result.stderr, (url, lines[0])


@pytest.mark.parametrize("command", ["serve", "chat"])
def test_a_refused_password_is_one_line_that_never_shows_it(command):
    with password_refusing_server() as (port, passwords):
        url = f"postgresql://bob:hunter2@127.0.0.1:{port}/botrunner"
        result = cli(command, str(REPO / "bots" / "tutor.yaml"), "--no-reload", "--db", url)
    assert passwords and set(passwords) == {"hunter2"}  # the server did see it, and said no
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: PostgreSQL at 127.0.0.1:{port} refused the password of user 'bob': fix the "
        f"password in the URL (or PGPASSWORD, ~/.pgpass) of "
        f"postgresql://bob:***@127.0.0.1:{port}/botrunner"
    ]


def test_a_missing_driver_names_the_extra_to_install():
    hide = (
        "import sys; sys.modules['asyncpg'] = None; from botrunner.cli import main; "
        "sys.argv = ['botrunner', 'db', 'migrate', '--db', 'postgresql://u@127.0.0.1/x']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: a postgresql:// store needs the PostgreSQL driver, which is not installed: "
        "pip install 'botrunner[postgres]'"
    )


async def test_the_rate_limit_is_exact_across_separate_pools(pg_url):
    """Two stores on one database stand for two processes: 60 simultaneous turns from one
    user against a limit of 5 per minute admit exactly 5, round after round."""
    stores = [await start_store(pg_url) for _ in range(2)]
    try:
        for round_ in range(3):
            admission = Admission("tutor", "alice", 1_000_000.0 + 3600 * round_, "d", None, 5)

            results = await asyncio.gather(
                *(
                    stores[i % 2].start_turn(
                        ConversationKey("tutor", "alice", f"r{round_}-{i}"), blocks("hi"), admission
                    )
                    for i in range(60)
                )
            )
            assert sum(isinstance(r, StartedTurn) for r in results) == 5
            assert all(
                r.kind == "requests" and r.wait > 0 for r in results if isinstance(r, Refused)
            )
        sessions = await scalar(stores[0], "SELECT count(*) FROM conversations")
        assert sessions == 15  # refused turns stored nothing
    finally:
        for store in stores:
            await store.close()


async def test_a_turn_started_by_one_process_is_closed_by_another(pg_url):
    """A store remembers the messages of the turns it started (closing one then needs no
    read); one that did not start the turn reads them, and judges `ok` the same way."""
    a, b = await start_store(pg_url), await start_store(pg_url)
    try:
        conv = await a.open(KEY)
        call = {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}
        result = {"type": "tool_result", "tool_use_id": "t1", "content": "42"}
        dangling = await a.begin_turn(conv, blocks("q1"))
        await a.add_message(conv, dangling, "assistant", [call])
        assert await b.complete_turn(conv, dangling, "ok", []) == "error"  # no tool_result
        whole = await a.begin_turn(conv, blocks("q2"))
        await a.add_message(conv, whole, "assistant", [call])
        await b.add_message(conv, whole, "user", [result])  # a no longer knows it all
        assert await a.complete_turn(conv, whole, "ok", [("assistant", blocks("a2"), None)]) == "ok"
        assert [(m.turn, m.role, m.status) for m in await b.history(KEY)] == [
            (1, "user", "error"),
            (1, "assistant", "error"),
            (2, "user", "ok"),
            (2, "assistant", "ok"),
            (2, "user", "ok"),
            (2, "assistant", "ok"),
        ]
        with pytest.raises(ValueError, match="already finished"):
            await a.complete_turn(conv, dangling, "ok", [("assistant", blocks("late"), None)])
    finally:
        await a.close()
        await b.close()


async def test_text_postgres_cannot_hold_is_still_stored_exactly(pg_url):
    store = await start_store(pg_url)
    try:
        conv = await store.open(KEY)
        odd = blocks("nul\x00inside and a lone \ud800 surrogate, xylophone")
        turn = await store.begin_turn(conv, odd)
        await store.add_message(conv, turn, "assistant", blocks("ok"), Usage(1, 2))
        assert await store.finish_turn(conv, turn, "ok") == "ok"
        assert (await store.history(KEY))[0].content == odd
        assert await store.search_turns(conv, "xylophone", before=99, limit=3) == [turn]
    finally:
        await store.close()


async def test_search_finds_what_the_sqlite_store_finds(pg_url, tmp_path):
    """The same conversation in both stores; the same questions find the same turns first."""
    topics = [
        "my xylophone is out of tune",
        "the recipe needs two eggs and flour",
        "our flight to Lisbon leaves at noon",
        "the invoice number is 48213",
        "tuning a guitar by ear",
        "baking bread with sourdough",
    ]
    sqlite, pg = SQLiteStore(tmp_path / "s.db"), await start_store(pg_url)
    try:
        convs = []
        for store in (sqlite, pg):
            conv = await store.open(KEY)
            for topic in topics:
                turn = await store.begin_turn(conv, blocks(topic))
                await store.add_message(conv, turn, "assistant", blocks("noted"))
                await store.finish_turn(conv, turn, "ok")
            convs.append(conv)
        for question in [
            "When does the flight leave?",
            "invoice 48213",
            "tuned xylophones",
            "eggs",
        ]:
            found = [
                await s.search_turns(c, question, before=99, limit=2)
                for s, c in zip((sqlite, pg), convs, strict=True)
            ]
            assert found[0] and found[0][0] == found[1][0], (question, found)
        # Scoped to the conversation (and so to its owner): bob's session is not searched.
        bob = await pg.open(ConversationKey("tutor", "bob", "s1"))
        assert await pg.search_turns(bob, "xylophone", before=99, limit=2) == []
    finally:
        await sqlite.close()
        await pg.close()


def test_chat_resumes_a_session_stored_in_postgres(fake_anthropic, pg_url):
    env = {"ANTHROPIC_BASE_URL": fake_anthropic.url, "ANTHROPIC_API_KEY": "test"}
    bot = str(REPO / "bots" / "tutor.yaml")
    fake_anthropic.enqueue(text("Noted: 42."), text("It was 42."))
    first = cli(
        "chat", bot, "--db", pg_url, "--session", "k", "--no-reload", env=env, stdin="remember 42\n"
    )
    assert first.returncode == 0, first.stderr
    second = cli(
        "chat",
        bot,
        "--session",
        "k",
        "--no-reload",
        env={**env, "BOTRUNNER_DB": pg_url},
        stdin="which number?\n",
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout == "It was 42.\n"
    sent = fake_anthropic.requests[-1].messages
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
