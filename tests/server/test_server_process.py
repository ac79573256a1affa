"""`botrunner serve` as a real process: durable history across restarts, graceful SIGTERM, one
serving process per SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import httpx
from fake_anthropic import slow, text
from test_server_harness import BOTRUNNER, ProcessServer, wait_until, write_bot

from botrunner.store import ConversationKey, start_store


def serve_env(fake) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "test", "CI": "false"}


def stored(db, session: str) -> list:
    async def read():
        store = await start_store(db)
        try:
            return await store.history(ConversationKey("tutor", "anonymous", session))
        finally:
            await store.close()

    return asyncio.run(read())


def test_history_survives_a_restart(tmp_path, fake_anthropic, store_url):
    path, db = write_bot(tmp_path), store_url
    args = [str(path), "--db", str(db), "--no-reload", "--log", str(tmp_path / "turns.log")]
    fake_anthropic.enqueue(text("Nice to meet you, Ada"), text("You are Ada"))
    with ProcessServer(args, serve_env(fake_anthropic)) as first:
        reply = httpx.post(first.url + "/chat/p", json={"message": "I am Ada"}, timeout=30)
        assert reply.status_code == 200 and '"done":true' in reply.text
        first.terminate()
        assert first.wait() == 0
    with ProcessServer(args, serve_env(fake_anthropic)) as second:
        history = httpx.get(second.url + "/chat/p", timeout=30).json()["messages"]
        assert [m["text"] for m in history] == ["I am Ada", "Nice to meet you, Ada"]
        httpx.post(second.url + "/chat/p", json={"message": "Who am I?"}, timeout=30)
        sent = fake_anthropic.requests[-1].messages
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        second.terminate()
        assert second.wait() == 0
    # One structured JSON line per turn, with ids and tokens but no message text.
    lines = [json.loads(x) for x in (tmp_path / "turns.log").read_text().splitlines()]
    turns = [x for x in lines if x.get("event") == "turn"]
    assert len(turns) == 2 and all(t["session"] == "p" and t["outcome"] == "ok" for t in turns)
    assert "Ada" not in (tmp_path / "turns.log").read_text()


def test_sigterm_lets_the_stream_in_flight_finish(tmp_path, fake_anthropic):
    path, db = write_bot(tmp_path), tmp_path / "bots.db"
    words = "one two three four five six seven eight"
    fake_anthropic.enqueue(slow(text(words), token_delay=0.2))
    args = [str(path), "--db", str(db), "--no-reload", "--grace", "10"]
    with ProcessServer(args, serve_env(fake_anthropic)) as srv:
        lines = []
        headers = {"X-Request-Id": "term-1"}
        with httpx.stream(
            "POST", srv.url + "/chat/t", json={"message": "count"}, headers=headers, timeout=20
        ) as response:
            assert response.headers["x-request-id"] == "term-1"
            stream = response.iter_lines()
            lines.append(json.loads(next(stream)))
            srv.terminate()

            def refused() -> bool:
                try:
                    httpx.get(srv.url + "/livez", timeout=0.5)
                except httpx.TransportError:
                    return True
                return False

            # It stops accepting new connections while the reply is still streaming...
            wait_until(refused, timeout=1.0)
            lines.extend(json.loads(line) for line in stream if line)
        # ...the reply completes, and the process exits cleanly.
        assert "".join(e.get("delta", "") for e in lines) == words
        assert lines[-1]["done"] is True
        assert srv.wait() == 0
    messages = stored(db, "t")
    assert [(m.role, m.status) for m in messages] == [("user", "ok"), ("assistant", "ok")]
    assert messages[-1].content[0]["text"] == words


def test_ctrl_c_stops_the_server(tmp_path, fake_anthropic):
    """SIGINT (Ctrl-C in the terminal) stops an idle server at once, with exit code 0."""
    args = [str(write_bot(tmp_path)), "--db", str(tmp_path / "bots.db"), "--no-reload"]
    with ProcessServer(args, serve_env(fake_anthropic)) as srv:
        assert httpx.get(srv.url + "/livez", timeout=10).status_code == 200
        srv.proc.send_signal(signal.SIGINT)
        assert srv.wait(timeout=10) == 0


def test_a_broken_edit_never_stops_hot_reload(tmp_path, fake_anthropic):
    # The bot file edits of issue 9: each used to kill the watcher (or crash the process).
    path, db = write_bot(tmp_path, system="You are version one."), tmp_path / "bots.db"
    env = {**serve_env(fake_anthropic), "BOTRUNNER_API_KEYS": "ops=sk-ops-1"}
    auth = {"Authorization": "Bearer sk-ops-1"}
    args = [str(path), "--db", str(db)]
    broken = {
        "system: |\n  Lucky number {{ 7**999999 }}\n": "would have more than 4000 digits",
        "system: Pi is {{ " + "3" * 4500 + " }}\n": "has more than 4000 digits",
        "system: hi\nvariables:\n  x: " + "[" * 100 + "]" * 100 + "\n": "nested more than 64",
    }
    with ProcessServer(args, env) as srv, httpx.Client(base_url=srv.url, headers=auth) as client:
        time.sleep(0.3)  # let the watcher register before the first edit

        def ready() -> dict:
            return client.get("/readyz").json()

        old = ready()["bots"][0]["version"]
        head = "name: tutor\nmodel:\n  name: claude-fake-1\n  max_tokens: 256\n"
        for text_, message in broken.items():
            path.write_text(head + text_, encoding="utf-8")
            found = wait_until(lambda m=message: m in json.dumps(ready()["errors"]), timeout=5)
            assert found
            [error] = ready()["errors"]
            assert error["problems"].startswith(f"{path.resolve()}:")
            assert "Traceback" not in "".join(srv.stderr_lines)
            # The last good version keeps answering.
            fake_anthropic.enqueue(text("still one"))
            reply = client.post("/chat/b", json={"message": "hi"}, timeout=30)
            assert reply.status_code == 200 and '"done":true' in reply.text
            assert fake_anthropic.requests[-1].system == "You are version one."
        assert ready()["bots"][0]["version"] == old
        # ...and the fix is picked up.
        path.write_text(head + "system: You are fixed.\n", encoding="utf-8")
        wait_until(lambda: not ready()["errors"], timeout=5)
        assert ready()["bots"][0]["version"] != old
        fake_anthropic.enqueue(text("fixed"))
        client.post("/chat/b", json={"message": "hi"}, timeout=30)
        assert fake_anthropic.requests[-1].system == "You are fixed."
        srv.terminate()
        assert srv.wait() == 0
    logged = [json.loads(line) for line in srv.stderr_lines if line.startswith("{")]
    failed = [entry for entry in logged if entry.get("event") == "reload_failed"]
    assert len(failed) >= 3
    assert "would have more than 4000 digits" in failed[0]["problems"]


def test_a_second_serve_on_one_sqlite_file_is_refused(tmp_path, fake_anthropic):
    path, db = write_bot(tmp_path), tmp_path / "bots.db"
    args = [str(path), "--db", str(db), "--no-reload"]
    with ProcessServer(args, serve_env(fake_anthropic)) as first:
        assert first.proc is not None
        second = subprocess.run(
            [*BOTRUNNER, "serve", *args, "--port", "0"],
            env={**os.environ, **serve_env(fake_anthropic)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"error: {db} is already served by another botrunner serve (process "
            f"{first.proc.pid}); a SQLite file has one serving process. Stop that one, give "
            "this one its own --db, or run several processes on one database with --db "
            "postgresql://USER@HOST:5432/DBNAME"
        ]
        # The first one never noticed.
        fake_anthropic.enqueue(text("still here"))
        reply = httpx.post(first.url + "/chat/p", json={"message": "hi"}, timeout=30)
        assert '"done":true' in reply.text
        first.terminate()
        assert first.wait() == 0
    # Once it has stopped (or died: the lock goes with the process), the file can be served.
    with ProcessServer(args, serve_env(fake_anthropic)) as third:
        assert httpx.get(third.url + "/chat/p", timeout=30).json()["messages"][0]["text"] == "hi"
        assert third.proc is not None
        third.proc.send_signal(signal.SIGKILL)
        third.wait()
    with ProcessServer(args, serve_env(fake_anthropic)) as fourth:
        assert httpx.get(fourth.url + "/livez", timeout=30).status_code == 200
