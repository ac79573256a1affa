"""A JSON body with a lone surrogate (`"\\ud800"`, valid JSON, not valid Unicode) is refused with
400 `invalid_message` in the JSON error shape, naming the field, on every endpoint that takes
a body; nothing is stored and the model is not called. A real server and raw bodies."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from fake_anthropic import text
from test_server_harness import ThreadServer, upstream_env, write_bot

CASES = [
    ("/chat/s1", b'{"message": "hi \\ud800 there"}', "message"),
    ("/bots/tutor/chat/s1", b'{"message": "hi", "user": {"name": "\\udfff"}}', "user.name"),
    ("/bots/tutor/chat/s1", b'{"message": "hi", "user": {"\\ud83d": 1}}', "user.\ud83d"),
    (
        "/v1/chat/completions",
        b'{"model": "tutor", "messages": [{"role": "user", "content": "\\ud800"}]}',
        "messages[0].content",
    ),
    (
        "/v1/chat/completions",
        b'{"model": "tutor", "messages": [{"role": "user", "content": "hi"}], "user": "\\ud800"}',
        "user",
    ),
]


@pytest.mark.parametrize(("path", "raw", "field"), CASES)
def test_a_lone_surrogate_is_refused_and_nothing_stored(
    tmp_path, fake_anthropic, monkeypatch, path, raw, field
):
    upstream_env(monkeypatch, fake_anthropic)
    with (
        ThreadServer(write_bot(tmp_path), tmp_path / "bots.db") as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        for accept in ("application/x-ndjson", "text/event-stream"):
            reply = client.post(
                path, content=raw, headers={"content-type": "application/json", "accept": accept}
            )
            assert reply.status_code == 400
            assert reply.headers["content-type"] == "application/json"
            error = reply.json()["error"]
            assert error["code"] == "invalid_message"
            # The field is named (escaped, so the message itself is valid text).
            named = field.encode("utf-8", "backslashreplace").decode()
            assert error["message"].startswith(named + ": the text is not valid Unicode")
        assert client.get("/chat/s1").json()["messages"] == []
    assert fake_anthropic.requests == []
    with sqlite3.connect(tmp_path / "bots.db") as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_a_surrogate_pair_is_a_character_and_accepted(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    fake_anthropic.enqueue(text("Nice emoji"))
    with (
        ThreadServer(write_bot(tmp_path), tmp_path / "bots.db") as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        raw = b'{"message": "look \\ud83d\\ude00"}'
        reply = client.post("/chat/s1", content=raw, headers={"content-type": "application/json"})
        assert reply.status_code == 200 and '"done":true' in reply.text
        assert client.get("/chat/s1").json()["messages"][0]["text"] == "look \U0001f600"
