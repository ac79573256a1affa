"""`botrunner serve` as a real process: durable history across restarts, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
from fake_anthropic import slow, text
from test_server_harness import ProcessServer, wait_until, write_bot

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
