"""`botrunner serve` over real HTTP: streaming, history, users, errors, auth, probes, metrics."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_anthropic import slow, stream_error, text
from test_server_harness import ThreadServer, upstream_env, write_bot

from botrunner.server.auth import load_keys


@pytest.fixture
def server(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    with ThreadServer(write_bot(tmp_path), tmp_path / "bots.db") as srv:
        yield srv


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_ndjson_stream(server, fake_anthropic):
    fake_anthropic.enqueue(text("Hello there, student", input_tokens=11, output_tokens=3))
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/chat/s1", json={"message": "hi"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [e["delta"] for e in lines[:-1]] == ["Hello", " there,", " student"]
    assert lines[-1] == {
        "done": True,
        "usage": {"input_tokens": 11, "output_tokens": 3},
        "stop_reason": "end_turn",
    }
    assert fake_anthropic.requests[-1].system == "You are a helpful tutor."


def test_sse_stream_and_long_form(server, fake_anthropic):
    fake_anthropic.enqueue(text("Hi you"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(
            "/bots/tutor/chat/s2",
            json={"message": "hello"},
            headers={"Accept": "text/event-stream"},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    events = [(f.split("\n")[0], json.loads(f.split("\n")[1][len("data: ") :])) for f in frames]
    assert events[0] == ("event: delta", {"delta": "Hi"})
    assert events[1] == ("event: delta", {"delta": " you"})
    assert events[-1][0] == "event: done" and events[-1][1]["done"] is True


def test_history_get_and_delete(server, fake_anthropic):
    fake_anthropic.enqueue(text("First answer"), text("Second answer"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/chat/s3", json={"message": "one"})
        client.post("/chat/s3", json={"message": "two"})
        history = client.get("/chat/s3").json()
        assert [(m["role"], m["text"]) for m in history["messages"]] == [
            ("user", "one"),
            ("assistant", "First answer"),
            ("user", "two"),
            ("assistant", "Second answer"),
        ]
        assert history["user"] == "anonymous"
        # The second turn sent the first one to the model.
        sent = fake_anthropic.requests[-1].messages
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert client.delete("/chat/s3").json() == {"deleted": True}
        assert client.get("/bots/tutor/chat/s3").json()["messages"] == []


def test_same_session_two_users_isolated(server, fake_anthropic):
    fake_anthropic.enqueue(text("Hello Alice"), text("Hello Bob"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/chat/shared", json={"message": "I am Alice", "user": {"id": "alice"}})
        client.post("/chat/shared", json={"message": "I am Bob", "user": {"id": "bob"}})
        bob = client.get("/chat/shared", params={"user": "bob"}).json()["messages"]
        alice = client.get("/chat/shared", params={"user": "alice"}).json()["messages"]
        nobody = client.get("/chat/shared").json()["messages"]
    assert [m["text"] for m in alice] == ["I am Alice", "Hello Alice"]
    assert [m["text"] for m in bob] == ["I am Bob", "Hello Bob"]
    assert nobody == []
    # Bob's turn did not carry Alice's conversation.
    assert len(fake_anthropic.requests[-1].messages) == 1


def test_errors_before_streaming_are_plain_http(server, fake_anthropic):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        empty = client.post("/chat/s4", json={"message": "   "})
        assert empty.status_code == 400
        assert empty.json()["error"]["code"] == "empty_message"
        long = client.post("/chat/s4", json={"message": "x" * 5000})
        assert long.status_code == 413
        assert long.json()["error"]["code"] == "message_too_long"
        wrong = client.post("/chat/s4", json={"text": "hi"})
        assert wrong.status_code == 422
        assert wrong.json()["error"]["code"] == "invalid_request"
        unknown = client.post("/bots/nope/chat/s4", json={"message": "hi"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_bot"
        huge = client.post(
            "/chat/s4",
            content=json.dumps({"message": "y" * 70_000}),
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "body_too_large"
        assert client.post("/chat/bad id!", json={"message": "hi"}).status_code == 400
        assert client.get("/chat/s4").json()["messages"] == []
    assert fake_anthropic.requests == []


def test_request_id_echoed_and_generated(server, fake_anthropic):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        given = client.get("/livez", headers={"X-Request-Id": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        made = client.get("/livez", headers={"X-Request-Id": "not a safe id!"})
        assert len(made.headers["x-request-id"]) == 32


def test_missing_provider_key_is_503_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HOME", str(tmp_path))  # no SDK profile on disk
    with (
        ThreadServer(write_bot(tmp_path), tmp_path / "bots.db") as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        response = client.post("/chat/s", json={"message": "hi"})
        bots = client.get("/bots").json()["bots"]
    assert response.status_code == 503
    assert "ANTHROPIC_API_KEY" in response.json()["error"]["message"]
    assert "ANTHROPIC_API_KEY" in bots[0]["problem"]["message"]


def test_auth_required_with_keys(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text(
        '# web app\n{"principal": "web", "key": "sk-web"}\n'
        '{"principal": "backend", "key": "sk-be", "trusted": true}\n'
    )
    keys = load_keys(keys_file, environ={})
    fake_anthropic.enqueue(text("Hi web"), text("Hi carol"))
    with (
        ThreadServer(write_bot(tmp_path), tmp_path / "bots.db", keys=keys) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200
        missing = client.post("/chat/s", json={"message": "hi"})
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        bad = client.get("/chat/s", headers={"Authorization": "Bearer sk-nope"})
        assert bad.status_code == 401
        assert client.get("/metrics").status_code == 401
        web = {"Authorization": "Bearer sk-web"}
        be = {"Authorization": "Bearer sk-be"}
        assert client.post("/chat/s", json={"message": "hi"}, headers=web).status_code == 200
        # An untrusted key can't act for someone else...
        other = client.post("/chat/s", json={"message": "hi", "user": {"id": "carol"}}, headers=web)
        assert other.status_code == 403
        # ...a trusted backend can, and its users are its own.
        ok = client.post("/chat/s", json={"message": "hi", "user": {"id": "carol"}}, headers=be)
        assert ok.status_code == 200
        carol = client.get("/chat/s", params={"user": "carol"}, headers=be).json()
        assert carol["user"] == "backend:carol"
        assert [m["text"] for m in carol["messages"]] == ["hi", "Hi carol"]
        mine = client.get("/chat/s", headers=web).json()
        assert [m["text"] for m in mine["messages"]] == ["hi", "Hi web"]


def test_readyz_metrics_bots_and_page(server, fake_anthropic):
    fake_anthropic.enqueue(slow(text("Done now", input_tokens=7, output_tokens=2), ttft=0.05))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/chat/m", json={"message": "hi"})
        ready = client.get("/readyz").json()
        assert ready["bots"][0]["name"] == "tutor" and len(ready["bots"][0]["version"]) == 12
        assert ready["errors"] == []
        metrics = client.get("/metrics").text
        assert 'botrunner_requests_total{api="native",bot="tutor",status="200"} 1.0' in metrics
        assert 'botrunner_tokens_total{bot="tutor",direction="input"} 7.0' in metrics
        assert 'botrunner_time_to_first_token_seconds_count{bot="tutor"} 1.0' in metrics
        assert client.get("/bots").json()["bots"][0]["problem"] is None
        page = client.get("/")
        assert page.status_code == 200 and "<title>botrunner</title>" in page.text
        assert client.get("/static/app.js").status_code == 200


def test_short_form_needs_exactly_one_bot(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    write_bot(tmp_path, "alpha")
    write_bot(tmp_path, "beta")
    fake_anthropic.enqueue(text("beta here"))
    with (
        ThreadServer(tmp_path, tmp_path / "bots.db") as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        short = client.post("/chat/s", json={"message": "hi"})
        assert short.status_code == 404
        assert short.json()["error"]["code"] == "bot_required"
        long = client.post("/bots/beta/chat/s", json={"message": "hi"})
        assert ndjson(long)[-1]["done"] is True


def test_upstream_failure_mid_stream_is_an_error_line(server, fake_anthropic):
    fake_anthropic.enqueue(stream_error(2), text("Recovered"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        failed = ndjson(client.post("/chat/f", json={"message": "hi"}))
        assert [e["delta"] for e in failed if "delta" in e] == ["This", " reply"]
        assert failed[-1]["error"]["code"] and failed[-1]["error"]["message"]
        assert not any("done" in e for e in failed)
        # The conversation stays consistent: the next turn works and omits the failed one.
        assert ndjson(client.post("/chat/f", json={"message": "again"}))[-1]["done"] is True
        assert len(fake_anthropic.requests[-1].messages) == 1
        statuses = [m["status"] for m in client.get("/chat/f").json()["messages"]]
        assert statuses[0] == "error" and statuses[-1] == "ok"
