"""Model text with U+2028, U+2029 and U+0085 in it: valid raw in JSON, but line readers built on
`str.splitlines` (httpx's `iter_lines`, as requests' is) break lines there. Every JSON body the
server writes escapes them, so every line reads as whole JSON. A real server and httpx."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_anthropic import text
from test_server_harness import ThreadServer, upstream_env, write_bot

BREAKS = "\u2028\u2029\u0085"
REPLY = "one\u2028two\u2029three\u0085four"


@pytest.fixture
def client(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    with (
        ThreadServer(write_bot(tmp_path), tmp_path / "bots.db") as srv,
        httpx.Client(base_url=srv.url, timeout=30) as c,
    ):
        yield c


def lines(client: httpx.Client, url: str, body: dict, **headers: str) -> list[str]:
    with client.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines() if line]


def no_raw_breaks(raw: bytes) -> bool:
    return not any(ch.encode() in raw for ch in BREAKS)


def test_ndjson_lines_stay_whole(client, fake_anthropic):
    fake_anthropic.enqueue(text(REPLY, chunks=["one\u2028", "two\u2029three", "\u0085four"]))
    events = [json.loads(line) for line in lines(client, "/chat/s1", {"message": "hi"})]
    assert "".join(e.get("delta", "") for e in events) == REPLY
    assert events[-1]["done"] is True
    history = client.get("/chat/s1")
    assert no_raw_breaks(history.content)
    assert history.json()["messages"][1]["text"] == REPLY


def test_sse_data_stays_whole(client, fake_anthropic):
    fake_anthropic.enqueue(text(REPLY))
    got = lines(client, "/chat/s2", {"message": "hi"}, accept="text/event-stream")
    data = [json.loads(line[len("data: ") :]) for line in got if line.startswith("data: ")]
    assert len(data) == len([line for line in got if line.startswith("event: ")])
    assert "".join(d.get("delta", "") for d in data) == REPLY


def test_openai_bodies_stay_whole(client, fake_anthropic):
    fake_anthropic.enqueue(text(REPLY), text(REPLY))
    body = {"model": "tutor", "messages": [{"role": "user", "content": "hi"}]}
    got = lines(client, "/v1/chat/completions", {**body, "stream": True})
    assert got[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in got[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == REPLY
    whole = client.post("/v1/chat/completions", json=body)
    assert no_raw_breaks(whole.content)
    assert whole.json()["choices"][0]["message"]["content"] == REPLY
