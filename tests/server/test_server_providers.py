"""`botrunner serve` with bots on both providers: an Anthropic bot and an OpenAI-compatible one
(a local server, no key) side by side on the native and the OpenAI-compatible endpoints, usage
as each upstream reports it, and a hot reload that switches a bot's provider mid-conversation."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from fake_anthropic import FakeAnthropic, text
from fake_openai import FakeOpenAI
from test_server_harness import ThreadServer, bot_yaml, upstream_env, wait_until, write_bot

LOCAL = """\
name: local
model:
  provider: openai
  name: llama3.2
  max_tokens: 256
  base_url: {url}
system: You are a local assistant.
"""


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line]


@pytest.fixture
def both(tmp_path, fake_anthropic, fake_openai, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    bots = tmp_path / "bots"
    bots.mkdir()
    write_bot(bots)  # tutor, on Anthropic
    (bots / "local.yaml").write_text(LOCAL.format(url=fake_openai.url), encoding="utf-8")
    with ThreadServer(bots, tmp_path / "bots.db") as srv:
        yield srv


def test_one_server_serves_both_providers_on_both_endpoints(
    both: ThreadServer, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI
) -> None:
    fake_anthropic.enqueue(
        text("Anthropic here.", input_tokens=11, output_tokens=2), text("Anthropic again.")
    )
    fake_openai.enqueue(
        text("Local here.", input_tokens=20, output_tokens=2).with_(cached_tokens=100),
        text("Local again.", input_tokens=9, output_tokens=2),
    )
    with httpx.Client(base_url=both.url, timeout=30) as client:
        tutor = ndjson(client.post("/bots/tutor/chat/s1", json={"message": "hi tutor"}))
        local = ndjson(client.post("/bots/local/chat/s1", json={"message": "hi local"}))
    assert "".join(e.get("delta", "") for e in tutor) == "Anthropic here."
    assert tutor[-1]["usage"] == {"input_tokens": 11, "output_tokens": 2}
    assert "".join(e.get("delta", "") for e in local) == "Local here."
    assert local[-1] == {
        "done": True,
        "usage": {"input_tokens": 20, "output_tokens": 2, "cache_read_tokens": 100},
        "stop_reason": "end_turn",
    }

    sdk = openai.OpenAI(base_url=both.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    assert sorted(m.id for m in sdk.models.list()) == ["local", "tutor"]
    reply = sdk.chat.completions.create(
        model="tutor",
        messages=[{"role": "user", "content": "again"}],
        extra_headers={"X-Session-Id": "s1"},
    )
    assert reply.choices[0].message.content == "Anthropic again."
    chunks = list(
        sdk.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "again"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Session-Id": "s1"},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Local again."
    )
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 2)

    # Each bot went to its own upstream, with its own system prompt and its own history.
    assert [r.system for r in fake_anthropic.requests] == ["You are a helpful tutor."] * 2
    assert [r.system for r in fake_openai.requests] == ["You are a local assistant."] * 2
    assert fake_openai.requests[-1].messages == [
        {"role": "user", "content": "hi local"},
        {"role": "assistant", "content": "Local here."},
        {"role": "user", "content": "again"},
    ]


def test_an_upstream_without_usage_gives_no_made_up_numbers(
    both: ThreadServer, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(text("No counts.").with_(send_usage=False))
    sdk = openai.OpenAI(base_url=both.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    reply = sdk.chat.completions.create(model="local", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "No counts."
    assert reply.usage is None  # unknown, not 0
    with httpx.Client(base_url=both.url, timeout=30) as client:
        metrics = client.get("/metrics").text
    assert 'botrunner_tokens_total{bot="local"' not in metrics


def test_an_edit_that_switches_the_provider_continues_the_conversation(
    tmp_path, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI, monkeypatch
) -> None:
    upstream_env(monkeypatch, fake_anthropic)
    path = write_bot(tmp_path)
    with (
        ThreadServer(path, tmp_path / "bots.db", reload=True) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        time.sleep(0.3)  # let the watcher register before the edit
        fake_anthropic.enqueue(text("From Claude."))
        assert client.post("/chat/s", json={"message": "first"}).status_code == 200

        old = client.get("/readyz").json()["bots"][0]["version"]
        switched = bot_yaml().replace(
            "model:\n", f"model:\n  provider: openai\n  base_url: {fake_openai.url}\n"
        )
        path.write_text(switched, encoding="utf-8")
        wait_until(lambda: client.get("/readyz").json()["bots"][0]["version"] != old, 2)

        fake_openai.enqueue(text("From the local model."))
        events = ndjson(client.post("/chat/s", json={"message": "second"}))
    assert "".join(e.get("delta", "") for e in events) == "From the local model."
    assert len(fake_anthropic.requests) == 1
    # The turn Claude answered is sent to the new provider in its own wire format.
    assert fake_openai.requests[0].wire_messages == [
        {"role": "system", "content": "You are a helpful tutor."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "From Claude."},
        {"role": "user", "content": "second"},
    ]
