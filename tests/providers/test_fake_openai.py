"""The fake Chat Completions server speaks what the real `openai` SDK expects: its responses
parse into the SDK's own types, its errors into the SDK's exceptions, and it refuses what the
real API refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest
from fake_anthropic import Auto
from fake_openai import FakeOpenAI, cut_after, error, stream_error, text, tool_use

FAKE = Path(__file__).resolve().parents[1] / "fake_openai.py"
HI = [{"role": "user", "content": "Hi"}]


def client(fake: FakeOpenAI, key: str = "k") -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url, api_key=key, max_retries=0, timeout=10)


def test_non_streaming_parses_into_sdk_types(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        text("Hello there", input_tokens=9, output_tokens=2),
        tool_use([("get_weather", {"city": "Oslo"}, "call_1")]),
    )
    c = client(fake_openai)
    reply = c.chat.completions.create(model="m", messages=HI)
    assert reply.choices[0].message.content == "Hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 9
    assert reply.usage.completion_tokens == 2
    reply = c.chat.completions.create(model="m", messages=HI)
    [call] = reply.choices[0].message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "get_weather",
        '{"city":"Oslo"}',
    )
    assert reply.choices[0].finish_reason == "tool_calls"


def test_stream_chunks_parse_and_end_with_usage_then_done(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        tool_use([("get_weather", {"city": "Oslo"}, "call_1")], text="Checking.", output_tokens=7)
    )
    stream = client(fake_openai).chat.completions.create(
        model="m", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Checking."
    fragments = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert fragments[0].id == "call_1" and fragments[0].function.name == "get_weather"
    assert len(fragments) > 2  # the arguments arrive in pieces
    assert "".join(f.function.arguments or "" for f in fragments) == '{"city":"Oslo"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    raw = fake_openai.requests[0]
    assert raw.stream and raw.json["stream_options"] == {"include_usage": True}


def test_no_usage_chunk_unless_asked(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(text("a b"))
    chunks = list(client(fake_openai).chat.completions.create(model="m", messages=HI, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_errors_are_openai_bodies_with_their_headers(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(429, retry_after=7), error(500), error(400, "bad things"))
    c = client(fake_openai)
    with pytest.raises(openai.RateLimitError) as limited:
        c.chat.completions.create(model="m", messages=HI)
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError) as failed:
        c.chat.completions.create(model="m", messages=HI)
    assert failed.value.type == "server_error"
    with pytest.raises(openai.BadRequestError) as bad:
        c.chat.completions.create(model="m", messages=HI)
    assert bad.value.message.endswith("bad things") and bad.value.type == "invalid_request_error"


def test_a_key_is_checked_only_when_set(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(text("local servers take anything"))
    assert client(fake_openai, key="whatever").chat.completions.create(model="m", messages=HI)
    fake_openai.api_key = "sk-right-0000"
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(fake_openai, key="sk-wrong-1234").chat.completions.create(model="m", messages=HI)
    assert wrong.value.code == "invalid_api_key" and "sk-wrong-1234" not in wrong.value.message


@pytest.mark.parametrize(
    ("messages", "extra", "complaint"),
    [
        ([{"role": "tool", "tool_call_id": "x", "content": "r"}], {}, "must be a response"),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "user", "content": "and?"},
            ],
            {},
            "did not have response messages: c1",
        ),
        ([{"role": "robot", "content": "hi"}], {}, "Invalid value: 'robot'"),
        (HI, {"stream_options": {"include_usage": True}}, "only allowed when 'stream'"),
        (HI, {"tools": [{"type": "function", "function": {}}]}, "'name'"),
    ],
)
def test_malformed_requests_are_refused_as_the_api_does(
    fake_openai: FakeOpenAI, messages: list, extra: dict, complaint: str
) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client(fake_openai).chat.completions.create(model="m", messages=messages, **extra)
    assert complaint in bad.value.message
    assert fake_openai.pending == 0


def test_the_recorded_request_shows_the_conversation_as_content_blocks(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.enqueue(text("ok"))
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    client(fake_openai).chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Looking.", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    )
    sent = fake_openai.requests[0]
    assert sent.system == "Be brief."
    assert sent.messages == [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "1"}]},
    ]
    assert sent.tools == [{"name": "f", "description": "", "input_schema": {"type": "object"}}]


def test_a_cut_stream_and_an_error_chunk(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(cut_after(2, "one two three four"), stream_error(1, "alpha beta"))
    c = client(fake_openai)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in c.chat.completions.create(model="m", messages=HI, stream=True):
            seen.extend(ch.delta.content for ch in chunk.choices if ch.delta.content)
    assert seen == ["one", " two"]
    with pytest.raises(openai.APIError) as failed:
        list(c.chat.completions.create(model="m", messages=HI, stream=True))
    assert failed.value.body["type"] == "server_error"


def test_echo_and_tool_call_modes() -> None:
    with FakeOpenAI(default=Auto(mode="echo", tool_calls=True)) as fake:
        c = client(fake)
        reply = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x y"}])
        assert reply.choices[0].message.content == "x y"
        tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
        reply = c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "use the tool"}], tools=tools
        )
        assert reply.choices[0].message.tool_calls[0].function.name == "lookup"


def test_cli_serves_as_a_standalone_upstream() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), "--port", "0", "--mode", "instant", "--tokens", "4-4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fake_openai listening on "), line
        c = openai.OpenAI(base_url=line.split()[3], api_key="k", max_retries=0)
        chunks = list(c.chat.completions.create(model="m", messages=HI, stream=True))
        assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) == 4
    finally:
        proc.terminate()
        proc.wait(5)
