"""The fake Messages API speaks the real wire format: checked with the SDK's own types and
with a raw SSE read."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import pytest
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    ToolUseBlock,
)
from fake_anthropic import (
    Auto,
    FakeAnthropic,
    cut_after,
    error,
    stream_error,
    text,
    tool_use,
)

FAKE = Path(__file__).resolve().parents[1] / "fake_anthropic.py"
BODY = {
    "model": "claude-test",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "Hello"}],
}


def client(server: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="k", base_url=server.url, max_retries=0)


def sse(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event name, data) pairs from a raw SSE body."""
    out = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def post(server: FakeAnthropic, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/messages",
        json=body,
        headers={"x-api-key": "k", **(headers or {})},
    )


def test_non_streaming_text_parses_into_sdk_types(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(text("Hello world", input_tokens=7, output_tokens=2))
    message = client(fake_anthropic).messages.create(**BODY)
    assert isinstance(message, Message)
    assert message.role == "assistant"
    assert message.model == "claude-test"
    assert message.content == [TextBlock(type="text", text="Hello world")]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 2)
    assert message.id.startswith("msg_")


def test_non_streaming_tool_use(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(tool_use([("get_weather", {"city": "Paris"}, "toolu_a")], text="Hm."))
    message = client(fake_anthropic).messages.create(**BODY)
    assert message.stop_reason == "tool_use"
    assert message.content[0] == TextBlock(type="text", text="Hm.")
    block = message.content[1]
    assert isinstance(block, ToolUseBlock)
    assert (block.id, block.name, block.input) == ("toolu_a", "get_weather", {"city": "Paris"})


def test_sse_event_sequence(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(text("One two three", output_tokens=3))
    response = post(fake_anthropic, {**BODY, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    events = sse(response)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0
    assert [d["delta"] for n, d in events if n == "content_block_delta"] == [
        {"type": "text_delta", "text": "One"},
        {"type": "text_delta", "text": " two"},
        {"type": "text_delta", "text": " three"},
    ]
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }


def test_tool_use_streams_input_json_in_pieces(fake_anthropic: FakeAnthropic) -> None:
    calls = [("get_weather", {"city": "Paris", "days": 3}), ("get_time", {"tz": "UTC"})]
    fake_anthropic.enqueue(tool_use(calls))
    events = sse(post(fake_anthropic, {**BODY, "stream": True}))
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["content_block"]["name"] for s in starts] == ["get_weather", "get_time"]
    assert all(s["content_block"]["input"] == {} for s in starts)
    assert starts[0]["content_block"]["id"] != starts[1]["content_block"]["id"]
    for index, (_, expected) in enumerate(calls):
        pieces = [
            d["delta"]["partial_json"]
            for n, d in events
            if n == "content_block_delta" and d["index"] == index
        ]
        assert len(pieces) >= 3
        assert json.loads("".join(pieces)) == expected
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_sdk_parses_the_stream_into_typed_events(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(tool_use([("f", {"x": 1})], text="Calling."))
    stream = client(fake_anthropic).messages.create(**BODY, stream=True)
    kinds = [type(event) for event in stream]
    assert kinds[0] is RawMessageStartEvent
    assert kinds[-2:] == [RawMessageDeltaEvent, RawMessageStopEvent]
    assert {RawContentBlockStartEvent, RawContentBlockDeltaEvent, RawContentBlockStopEvent} <= set(
        kinds
    )


def test_error_bodies_and_headers(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(
        error(429, retry_after=7), error(529, retry_after_ms=250), error(500, "boom")
    )
    response = post(fake_anthropic, BODY)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["request_id"] == response.headers["request-id"]

    with pytest.raises(anthropic.APIStatusError) as info:
        client(fake_anthropic).messages.create(**BODY)
    assert info.value.status_code == 529
    assert info.value.type == "overloaded_error"
    assert info.value.response.headers["retry-after-ms"] == "250"

    with pytest.raises(anthropic.InternalServerError) as info:
        client(fake_anthropic).messages.create(**BODY)
    assert info.value.api_message == "boom"


def test_missing_key_is_401(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(text("unused"))
    response = httpx.post(f"{fake_anthropic.url}/v1/messages", json=BODY)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert fake_anthropic.pending == 1  # the script is not consumed


def test_nothing_enqueued_fails_loudly(fake_anthropic: FakeAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client(fake_anthropic).messages.create(**BODY)
    assert "nothing enqueued" in str(info.value.api_message)


def test_requests_are_recorded(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(text("a"), text("b"))
    c = client(fake_anthropic)
    c.messages.create(**BODY, system="Be brief.")
    c.messages.create(**BODY, stream=True).close()
    first, second = fake_anthropic.requests
    assert (first.method, first.path) == ("POST", "/v1/messages")
    assert first.body == {**BODY, "system": "Be brief."}
    assert first.system == "Be brief."
    assert first.messages == BODY["messages"]
    assert first.api_key == "k"
    assert not first.stream and second.stream
    assert first.headers["content-type"] == "application/json"


def test_cut_after_closes_the_connection_mid_stream(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(cut_after(2, "a b c d"))
    seen = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            f"{fake_anthropic.url}/v1/messages",
            json={**BODY, "stream": True},
            headers={"x-api-key": "k"},
        ) as response,
    ):
        for chunk in response.iter_text():
            seen.append(chunk)
    body = "".join(seen)
    assert body.count("event: content_block_delta") == 2
    assert "message_stop" not in body


def test_stream_error_event(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(stream_error(1, "x y z"))
    events = sse(post(fake_anthropic, {**BODY, "stream": True}))
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": events[-1][1]["request_id"],
        },
    )


def test_echo_and_tool_call_modes() -> None:
    with FakeAnthropic(default=Auto(mode="echo", tool_calls=True)) as server:
        c = client(server)
        assert c.messages.create(**BODY).content[0].text == "Hello"
        tools = [
            {
                "name": "get_weather",
                "description": "d",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ]
        ask = {**BODY, "messages": [{"role": "user", "content": "get_weather please"}]}
        reply = c.messages.create(**ask, tools=tools)
        assert reply.stop_reason == "tool_use"
        call = reply.content[0]
        assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
        follow = {
            **BODY,
            "messages": [
                *ask["messages"],
                {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
                    ],
                },
            ],
        }
        assert c.messages.create(**follow, tools=tools).content[0].text == "The tool said: sunny"


async def test_fixture_works_from_async_tests(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(text("async hello"))
    async with anthropic.AsyncAnthropic(
        api_key="k", base_url=fake_anthropic.url, max_retries=0
    ) as c:
        stream = await c.messages.create(**BODY, stream=True)
        texts = [
            e.delta.text
            async for e in stream
            if e.type == "content_block_delta" and e.delta.type == "text_delta"
        ]
    assert "".join(texts) == "async hello"


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("fake_anthropic listening on "), line
    return proc, line.split()[3]


def test_cli_instant_mode() -> None:
    proc, url = _start_cli("--mode", "instant", "--tokens", "4-4")
    try:
        c = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)
        for _ in range(3):
            stream = c.messages.create(**BODY, stream=True)
            deltas = [e for e in stream if e.type == "content_block_delta"]
            assert len(deltas) == 4
        message = c.messages.create(**BODY)
        assert message.usage.output_tokens == 4
    finally:
        proc.terminate()
        proc.wait(5)


def test_cli_paced_mode() -> None:
    proc, url = _start_cli(
        "--mode", "paced", "--ttft-ms", "100", "--tokens", "3", "--token-ms", "5"
    )
    try:
        c = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)
        started = time.monotonic()
        stream = c.messages.create(**BODY, stream=True)
        first = None
        count = 0
        for event in stream:
            if event.type == "content_block_delta":
                count += 1
                first = first or time.monotonic() - started
        assert count == 3
        assert first is not None and first >= 0.09
    finally:
        proc.terminate()
        proc.wait(5)
