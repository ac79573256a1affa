"""When the model API refuses a request, the end user gets a stable code, a plain message and
the request id; what the API said goes to the operator's log, secrets redacted. A real
`botrunner serve` process, the fake upstream, httpx and the `openai` SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fake_anthropic import error
from test_server_harness import ProcessServer, write_bot

API_KEY = "sk-ant-test-0123456789abcdef"
UPSTREAM = "messages.1.content.0: internal schema v7 mismatch at shard eu-3"


def turns(log) -> list[dict]:
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    return [x for x in lines if x.get("event") == "turn"]


@pytest.fixture
def serve(tmp_path, fake_anthropic):
    log = tmp_path / "turns.log"
    args = [str(write_bot(tmp_path)), "--db", str(tmp_path / "bots.db"), "--no-reload"]
    env = {"ANTHROPIC_BASE_URL": fake_anthropic.url, "ANTHROPIC_API_KEY": API_KEY, "CI": "false"}
    with ProcessServer([*args, "--log", str(log)], env) as srv:
        yield srv, log


def test_a_rejected_request_shows_a_code_a_plain_message_and_the_request_id(serve, fake_anthropic):
    srv, log = serve
    fake_anthropic.enqueue(error(400, f"{UPSTREAM} (key {API_KEY})"))
    reply = httpx.post(
        srv.url + "/chat/s1",
        json={"message": "hi"},
        headers={"X-Request-Id": "req-42"},
        timeout=30,
    )
    assert reply.headers["x-request-id"] == "req-42"
    last = json.loads(reply.text.splitlines()[-1])
    assert last == {
        "error": {
            "code": "bad_request",
            "message": "The model API rejected this request, so there is no reply.",
            "request_id": "req-42",
        }
    }
    assert "schema" not in reply.text and API_KEY not in reply.text
    (turn,) = turns(log)  # the operator's log has what upstream said, under the same id
    assert turn["request_id"] == "req-42" and turn["error_code"] == "bad_request"
    assert (
        UPSTREAM in turn["error_detail"]
        and "HTTP 400 invalid_request_error" in turn["error_detail"]
    )
    assert "upstream request-id req_fake_" in turn["error_detail"]
    assert API_KEY not in log.read_text()


def test_a_prompt_too_long_stays_specific(serve, fake_anthropic):
    srv, _ = serve
    fake_anthropic.enqueue(error(400, "prompt is too long: 210344 tokens > 200000 maximum"))
    sdk = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="tutor", messages=[{"role": "user", "content": "hi"}])
    body = raised.value.body
    assert body["code"] == "prompt_too_long"
    assert body["message"] == (
        "This conversation is too long for the model. Start a new conversation, or send a "
        "shorter message."
    )
    assert body["request_id"] == raised.value.response.headers["x-request-id"]
    assert "210344" not in raised.value.response.text


def test_errors_before_the_reply_carry_the_request_id_too(serve):
    srv, _ = serve
    reply = httpx.post(srv.url + "/chat/s1", json={"message": "   "}, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "empty_message"
    assert reply.json()["error"]["request_id"] == reply.headers["x-request-id"]
