"""A system prompt that fails only when filled in ends the turn with an error event, on every
transport, and the stream ends cleanly (it used to answer 200 and then cut the connection)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fake_anthropic import text
from test_server_harness import ThreadServer, upstream_env, write_bot

# Passes `validate` (its trial render sets user.name), fails for a user without a name.
SYSTEM = '"You are a tutor. Lessons last {{ 60 // user.name|length }} minutes."'


@pytest.fixture
def server(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    with ThreadServer(write_bot(tmp_path, system=SYSTEM), tmp_path / "bots.db") as srv:
        yield srv


def _expected_error(event: dict) -> None:
    assert event["error"]["code"] == "template_error"
    message = event["error"]["message"]
    assert message.startswith("The bot's system prompt could not be filled in (tutor.yaml:5: ")
    assert "integer division or modulo by zero" in message


def test_ndjson_stream_ends_with_an_error_event(server, fake_anthropic):
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/chat/t1", json={"message": "hi"}) as response,
    ):
        assert response.status_code == 200
        # Read to the end: a cut connection raises httpx.RemoteProtocolError here.
        lines = [json.loads(line) for line in response.iter_lines() if line]
    [event] = lines
    _expected_error(event)
    assert fake_anthropic.requests == []  # the model was never asked
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # The failed turn is closed, and a user with a name is answered.
        history = client.get("/chat/t1").json()["messages"]
        assert [(m["role"], m["status"]) for m in history] == [("user", "error")]
        fake_anthropic.enqueue(text("Hello Ada"))
        ok = client.post("/chat/t1", json={"message": "hi", "user": {"name": "Ada"}})
        assert json.loads(ok.text.splitlines()[-1])["done"] is True
    assert fake_anthropic.requests[-1].system == "You are a tutor. Lessons last 20 minutes."


def test_sse_stream_ends_with_an_error_event(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(
            "/chat/t2", json={"message": "hi"}, headers={"Accept": "text/event-stream"}
        )
    assert response.status_code == 200
    [frame] = [f for f in response.text.split("\n\n") if f]
    kind, data = frame.split("\n")
    assert kind == "event: error"
    _expected_error(json.loads(data[len("data: ") :]))


def test_openai_endpoint_reports_the_template_error(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="tutor", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 500
    _expected_error(info.value.body and {"error": info.value.body})
