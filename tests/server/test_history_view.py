"""What `GET /chat/{session}` shows: the conversation as the end user saw it (tool calls by name
and outcome, never a tool's raw body), the full record only for a trusted key. A real server,
a real tool server and the fake upstream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fake_anthropic import text, tool_use
from test_server_harness import ThreadServer, upstream_env, write_bot

from botrunner.server.auth import load_keys

LEAK = "Traceback (most recent call last): psycopg.OperationalError postgres://app:hunter2@db"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        ok = self.path.startswith("/ok")
        body = b'{"temp": 21}' if ok else LEAK.encode()
        self.send_response(200 if ok else 500)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tool_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def tools(url: str) -> str:
    return "".join(
        f"  - name: {name}\n"
        f"    description: A test tool.\n"
        f"    input_schema: {{type: object}}\n"
        f"    http:\n"
        f"      url: {url}/{path}\n"
        for name, path in (("weather", "ok"), ("orders", "fail"))
    )


KEYS = {
    "BOTRUNNER_API_KEYS": "web=sk-web, backend=sk-backend",
    "BOTRUNNER_TRUSTED_PRINCIPALS": "backend",
}
BACKEND = {"Authorization": "Bearer sk-backend"}


@pytest.mark.parametrize("keys", [None, KEYS], ids=["no keys", "trusted backend"])
def test_history_shows_tool_calls_by_outcome_never_their_bodies(
    tmp_path, monkeypatch, fake_anthropic, tool_url, keys
):
    upstream_env(monkeypatch, fake_anthropic)
    fake_anthropic.enqueue(
        tool_use([("weather", {}, "toolu_w"), ("orders", {}, "toolu_o")], text="Let me look."),
        text("It is 21 degrees; your orders are unavailable."),
        tool_use([("weather", {}, "toolu_w2")]),
        tool_use([("orders", {}, "toolu_late")]),  # over max_tool_rounds: never run
    )
    extra = "limits:\n  max_tool_rounds: 1\ntools:\n" + tools(tool_url)
    ring = load_keys(environ=keys or {})
    # With keys, a trusted backend acts for its end user alice and shows her the history.
    headers, alice = (BACKEND, {"id": "alice"}) if keys else ({}, None)
    query = {"user": "alice"} if keys else {}
    with (
        ThreadServer(write_bot(tmp_path, extra=extra), tmp_path / "bots.db", keys=ring) as srv,
        httpx.Client(base_url=srv.url, headers=headers, timeout=30) as client,
    ):
        for message in ("weather and my orders?", "and now?"):
            stream = client.post("/chat/s1", json={"message": message, "user": alice}).text
            assert "hunter2" not in stream
        shown = client.get("/chat/s1", params=query).json()["messages"]
        assert "hunter2" not in str(shown) and "Traceback" not in str(shown)
        assert [(m["role"], m["text"], m.get("tool_calls")) for m in shown] == [
            ("user", "weather and my orders?", None),
            (
                "assistant",
                "Let me look.",
                [
                    {"id": "toolu_w", "name": "weather", "outcome": "ok"},
                    {"id": "toolu_o", "name": "orders", "outcome": "error"},
                ],
            ),
            ("assistant", "It is 21 degrees; your orders are unavailable.", []),
            ("user", "and now?", None),
            ("assistant", "", [{"id": "toolu_w2", "name": "weather", "outcome": "ok"}]),
            ("assistant", "", [{"id": "toolu_late", "name": "orders", "outcome": "not_run"}]),
        ]
        full = client.get("/chat/s1", params={**query, "full": "true"})
        if keys:  # the trusted key may read the full record, tool bodies included
            messages = full.json()["messages"]
            assert "hunter2" in str(messages)
            roles = [m["role"] for m in messages]
            assert roles == ["user", "assistant", "user", "assistant"] + ["user", "assistant"] * 2
            # An untrusted key may not, even for its own conversation.
            web = {"Authorization": "Bearer sk-web"}
            client.post("/chat/s2", json={"message": "hi"}, headers=web)
            full = client.get("/chat/s2", params={"full": "true"}, headers=web)
        assert full.status_code == 403
        assert full.json()["error"]["code"] == "full_record_not_allowed"
