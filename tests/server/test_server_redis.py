"""`serve --limits redis://`: a Redis that goes away mid-run answers 503 (nothing sent upstream,
nothing stored) and recovers by itself; /readyz reports the store and the limits backend; a
bad URL or a Redis that is down at start-up is one line and exit code 2."""

from __future__ import annotations

import json
import socket
import time

import httpx
from fake_anthropic import text
from limits_backends import RedisProcess
from test_server_harness import BOTRUNNER, REPO, ThreadServer, upstream_env, write_bot


def limited_bot(tmp_path):
    per_user = "    requests_per_minute: 100\n    tokens_per_day: 100000\n"
    return write_bot(tmp_path, extra=f"limits:\n  per_user:\n{per_user}")


def chat(client: httpx.Client, session: str, message: str = "hi") -> httpx.Response:
    return client.post(f"/chat/{session}", json={"message": message})


def test_redis_down_mid_run_gives_503_then_recovers(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    path = limited_bot(tmp_path)
    with (
        RedisProcess() as redis,
        ThreadServer(path, tmp_path / "bots.db", limits=redis.url) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        fake_anthropic.enqueue(text("Before", input_tokens=5, output_tokens=5))
        assert chat(client, "before").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["store"] == {"status": "ok"}
        assert ready.json()["limits"] == {"backend": "redis", "status": "ok"}

        redis.stop()
        refused = chat(client, "during", "lost?")
        assert refused.status_code == 503
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        error = refused.json()["error"]
        assert error["code"] == "limits_unavailable" and "not sent" in error["message"]
        assert len(fake_anthropic.requests) == 1  # nothing went upstream
        assert client.get("/chat/during").json()["messages"] == []  # nothing stored
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["limits"] == {"backend": "redis", "status": "unavailable"}
        assert ready.json()["store"] == {"status": "ok"}

        redis.start()  # the same port, empty: botrunner reconnects on its own
        fake_anthropic.enqueue(text("After"))
        after = chat(client, "after")
        assert after.status_code == 200 and '"done":true' in after.text
        assert client.get("/readyz").status_code == 200


def test_a_reply_in_flight_when_redis_goes_away_still_finishes(
    tmp_path, fake_anthropic, monkeypatch
):
    """Its tokens can't be counted (logged), but the user gets the whole reply, stored."""
    upstream_env(monkeypatch, fake_anthropic)
    path = limited_bot(tmp_path)
    with (
        RedisProcess() as redis,
        ThreadServer(path, tmp_path / "bots.db", limits=redis.url) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        fake_anthropic.enqueue(text("Slow but complete", token_delay=0.3))
        with client.stream("POST", "/chat/s", json={"message": "hi"}) as reply:
            assert reply.status_code == 200
            lines = reply.iter_lines()
            first = json.loads(next(lines))
            redis.stop()
            rest = [json.loads(line) for line in lines]
        assert first == {"delta": "Slow"} and rest[-1]["done"] is True
        messages = client.get("/chat/s").json()["messages"]
        assert [(m["role"], m["status"]) for m in messages] == [("user", "ok"), ("assistant", "ok")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path, *args: str) -> tuple[int, str]:
    import subprocess

    path = write_bot(tmp_path)
    proc = subprocess.run(
        [*BOTRUNNER, "serve", str(path), "--db", str(tmp_path / "b.db"), "--port", "0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr


def test_redis_down_at_startup_is_one_line_and_exit_2(tmp_path):
    port = _free_port()
    start = time.monotonic()
    code, err = _serve(tmp_path, "--limits", f"redis://:hunter2@127.0.0.1:{port}/0")
    assert code == 2 and time.monotonic() - start < 30
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: --limits redis://:***@127.0.0.1:{port}/0: can't reach it")
    assert "Start it or fix the URL." in lines[0] and "hunter2" not in err


def test_bad_limits_urls_are_one_line_and_exit_2(tmp_path, monkeypatch):
    code, err = _serve(tmp_path, "--limits", "redis://127.0.0.1:6379/0?socket_timeout=soon")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: --limits: redis://127.0.0.1:6379/0: ")
    monkeypatch.setenv("BOTRUNNER_LIMITS", "memcached://127.0.0.1:11211")
    code, err = _serve(tmp_path)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        "error: --limits: unknown limits backend memcached:// (known: redis://, rediss://; "
        "or leave it out)"
    )
