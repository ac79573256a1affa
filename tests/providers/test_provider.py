"""The providers against their fake APIs: the real SDKs over real HTTP.

The tests that take `upstream` run once per provider (conftest.py): what a provider promises
whatever its API (streaming, retries, deadlines, safe errors). The others are the Anthropic
provider's own (its wire format, its credentials); the OpenAI provider's are in
test_openai_provider.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_anthropic import (
    FakeAnthropic,
    FakeServer,
    cut_after,
    error,
    slow,
    stream_error,
    text,
    tool_use,
)

from botrunner.bot import Bot, Model, Retry
from botrunner.events import TextDelta, Usage
from botrunner.providers import aclose_all, get_provider
from botrunner.providers.anthropic import AnthropicProvider, _Accumulator, _sse_events
from botrunner.providers.base import AssistantMessage, ModelRequest, ProviderError
from botrunner.providers.openai import OpenAIProvider
from botrunner.providers.sdk import SDKProvider

KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "anthropic-config"))
    monkeypatch.delenv("ANTHROPIC_PROFILE", raising=False)


def make_bot(
    url: str | None = None,
    *,
    api_key: str | None = KEY,
    api_key_env: str | None = None,
    max_retries: int = 2,
    timeout: float = 10.0,
    provider: str = "anthropic",
) -> Bot:
    return Bot(
        name="t",
        model=Model(
            name="claude-test",
            max_tokens=256,
            provider=provider,
            base_url=url,
            api_key=api_key,
            api_key_env=api_key_env,
        ),
        system=object(),  # type: ignore[arg-type] - the provider never touches it
        path=Path("t.yaml"),
        version="0" * 12,
        retry=Retry(max_retries=max_retries, timeout_seconds=timeout),
    )


PROVIDERS: dict[str, type[SDKProvider]] = {"anthropic": AnthropicProvider, "openai": OpenAIProvider}


def make_provider(bot: Bot, **backoff: float) -> SDKProvider:
    backoff = {"backoff_base": 0.001, "backoff_max": 0.01, **backoff}
    return PROVIDERS[bot.model.provider](bot, **backoff)


def on(fake: FakeServer, **kwargs) -> SDKProvider:
    """The provider that talks to `fake`, with the bot's settings in `kwargs`."""
    backoff = {k: kwargs.pop(k) for k in ("backoff_base", "backoff_max") if k in kwargs}
    return make_provider(make_bot(fake.url, provider=fake.provider, **kwargs), **backoff)


REQUEST = ModelRequest(
    model="claude-test",
    max_tokens=256,
    system="You are terse.",
    messages=[{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
)


async def run(
    provider: SDKProvider, request: ModelRequest = REQUEST, *, timeout: float = 10.0
) -> tuple[list[str], AssistantMessage]:
    deltas: list[str] = []
    final = None
    try:
        async for item in provider.stream(request, deadline=time.monotonic() + timeout):
            if isinstance(item, TextDelta):
                deltas.append(item.text)
            else:
                assert final is None
                final = item
    finally:
        await provider.aclose()
    assert isinstance(final, AssistantMessage)
    return deltas, final


async def run_error(
    provider: SDKProvider, request: ModelRequest = REQUEST, *, timeout: float = 10.0
) -> tuple[list[str], ProviderError]:
    deltas: list[str] = []
    try:
        async for item in provider.stream(request, deadline=time.monotonic() + timeout):
            if isinstance(item, TextDelta):
                deltas.append(item.text)
    except ProviderError as exc:
        return deltas, exc
    finally:
        await provider.aclose()
    raise AssertionError("expected a ProviderError")


# -- success ---------------------------------------------------------------------------------


async def test_streams_text_and_final_message(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(text("Hello big world", input_tokens=12, output_tokens=3))
    deltas, final = await run(make_provider(make_bot(fake_anthropic.url)))

    assert deltas == ["Hello", " big", " world"]
    assert final.content == [{"type": "text", "text": "Hello big world"}]
    assert final.stop_reason == "end_turn"
    assert final.usage == Usage(input_tokens=12, output_tokens=3)

    (sent,) = fake_anthropic.requests
    assert sent.path == "/v1/messages"
    assert sent.body == {
        "model": "claude-test",
        "max_tokens": 256,
        "system": "You are terse.",
        # A single text block goes as a plain string: the same message, less for the SDK.
        "messages": [{"role": "user", "content": "Hi there"}],
        "stream": True,
    }
    assert sent.api_key == KEY
    assert sent.headers["anthropic-version"]


async def test_sends_tools_and_temperature(fake_anthropic: FakeAnthropic) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    request = ModelRequest(
        model="claude-test",
        max_tokens=100,
        system="",
        messages=[{"role": "user", "content": "hi"}],
        tools=tools,
        temperature=0.2,
    )
    fake_anthropic.enqueue(text("ok"))
    await run(make_provider(make_bot(fake_anthropic.url)), request)
    body = fake_anthropic.requests[0].body
    assert body["tools"] == tools
    assert body["temperature"] == 0.2
    assert "system" not in body  # an empty system prompt is not sent


async def test_parallel_tool_use_blocks(upstream: FakeServer) -> None:
    weather = {"city": "Paris", "units": {"temp": "C", "wind": ["km/h", "m/s"]}}
    upstream.enqueue(
        tool_use(
            [("get_weather", weather, "toolu_1"), ("get_time", {"tz": "Europe/Paris"}, "toolu_2")],
            text="Let me check.",
        )
    )
    deltas, final = await run(on(upstream))

    assert "".join(deltas) == "Let me check."
    assert final.stop_reason == "tool_use"
    assert final.content == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": weather},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {"tz": "Europe/Paris"}},
    ]


async def test_tool_use_with_empty_input(upstream: FakeServer) -> None:
    upstream.enqueue(tool_use([("ping", {}, "toolu_9")]))
    deltas, final = await run(on(upstream))
    assert deltas == []
    assert final.content == [{"type": "tool_use", "id": "toolu_9", "name": "ping", "input": {}}]


async def test_one_client_and_connection_reused(upstream: FakeServer) -> None:
    upstream.enqueue(text("one"), text("two"))
    provider = on(upstream)
    for _ in range(2):
        async for _item in provider.stream(REQUEST, deadline=time.monotonic() + 5):
            pass
    await provider.aclose()
    first, second = upstream.requests
    assert first.peer == second.peer  # same pooled keep-alive connection


# -- retries ---------------------------------------------------------------------------------


async def test_429_then_success(upstream: FakeServer) -> None:
    upstream.enqueue(error(429, retry_after=0), text("Recovered"))
    deltas, final = await run(on(upstream))
    assert deltas == ["Recovered"]
    assert len(upstream.requests) == 2
    assert upstream.requests[0].body == upstream.requests[1].body


async def test_429_honours_retry_after_ms(upstream: FakeServer) -> None:
    upstream.enqueue(error(429, retry_after_ms=150), text("ok"))
    started = time.monotonic()
    await run(on(upstream))
    assert time.monotonic() - started >= 0.15
    assert len(upstream.requests) == 2


async def test_500_then_success(upstream: FakeServer) -> None:
    upstream.enqueue(error(500), text("fine"))
    deltas, _ = await run(on(upstream))
    assert deltas == ["fine"]
    assert len(upstream.requests) == 2


async def test_500_after_max_retries(upstream: FakeServer) -> None:
    upstream.enqueue(*[error(500) for _ in range(5)])
    deltas, exc = await run_error(on(upstream, max_retries=2))
    assert deltas == []
    assert len(upstream.requests) == 3  # the first try and 2 retries
    assert exc.code == "upstream"
    assert exc.message == "The model API had an error (HTTP 500). Gave up after 3 attempts."
    assert upstream.pending == 2


async def test_529_exhausted(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(*[error(529) for _ in range(5)])
    deltas, exc = await run_error(make_provider(make_bot(fake_anthropic.url, max_retries=2)))
    assert deltas == []
    assert len(fake_anthropic.requests) == 3  # the first try and 2 retries
    assert exc.code == "overloaded"
    assert exc.message == "The model API is overloaded (HTTP 529). Gave up after 3 attempts."
    assert fake_anthropic.pending == 2


async def test_no_retries_when_max_retries_is_zero(upstream: FakeServer) -> None:
    upstream.enqueue(error(503), text("unused"))
    _, exc = await run_error(on(upstream, max_retries=0))
    assert exc.code == "upstream"
    assert "HTTP 503" in exc.message
    assert len(upstream.requests) == 1


async def test_x_should_retry_false_is_obeyed(upstream: FakeServer) -> None:
    upstream.enqueue(error(500, should_retry=False), text("unused"))
    _, exc = await run_error(on(upstream))
    assert exc.code == "upstream"
    assert len(upstream.requests) == 1


async def test_retry_after_past_the_deadline_fails_fast(upstream: FakeServer) -> None:
    upstream.enqueue(error(429, retry_after=30), text("unused"))
    started = time.monotonic()
    _, exc = await run_error(on(upstream, timeout=5), timeout=5)
    assert time.monotonic() - started < 1
    assert exc.code == "rate_limited"
    assert exc.message == (
        "The model API is rate limiting requests. It asks to retry in 30 s, past this "
        "turn's 5 s limit. Please try again later."
    )
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_connection_refused_is_retried_then_reported(provider: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bot = make_bot(f"http://127.0.0.1:{port}", max_retries=1, provider=provider)
    _, exc = await run_error(make_provider(bot))
    assert exc.code == "connection"
    assert exc.message.startswith(f"Could not reach the model API at http://127.0.0.1:{port}")
    assert exc.message.endswith(". Gave up after 2 attempts.")


async def test_400_is_not_retried_and_detailed_for_the_log_only(upstream: FakeServer) -> None:
    upstream.enqueue(error(400, f"messages: roles must alternate\n(key {KEY})"), text("unused"))
    _, exc = await run_error(on(upstream))
    assert exc.code == "bad_request"
    assert exc.message == "The model API rejected this request, so there is no reply."
    assert exc.detail == (
        "HTTP 400 invalid_request_error: messages: roles must alternate (key [redacted]). "
        "(upstream request-id req_fake_000001)"
    )
    assert KEY not in exc.detail
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("status", "said", "code"),
    [
        (400, "prompt is too long: 210344 tokens > 200000 maximum", "prompt_too_long"),
        (
            400,
            "input length and `max_tokens` exceed context limit: 198000 + 8192",
            "prompt_too_long",
        ),
        (
            400,
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130513 tokens.",
            "prompt_too_long",
        ),
        (413, "Request exceeds the maximum allowed number of bytes.", "request_too_large"),
        (404, "model: claude-nonexistent", "bad_request"),
    ],
)
async def test_rejections_the_user_can_act_on_stay_specific(
    upstream: FakeServer, status: int, said: str, code: str
) -> None:
    upstream.enqueue(error(status, said))
    _, exc = await run_error(on(upstream))
    assert exc.code == code
    assert said not in exc.message and said in exc.detail


# -- streams that break ----------------------------------------------------------------------


async def test_stream_cut_after_output_is_not_retried(upstream: FakeServer) -> None:
    upstream.enqueue(cut_after(3, "one two three four five six"), text("unused"))
    deltas, exc = await run_error(on(upstream))
    assert deltas == ["one", " two", " three"]
    assert exc.code == "stream_interrupted"
    assert exc.message.startswith("The reply was cut off")
    assert len(upstream.requests) == 1
    assert upstream.pending == 1


async def test_error_event_mid_stream(upstream: FakeServer) -> None:
    upstream.enqueue(stream_error(2, "alpha beta gamma delta"), text("unused"))
    deltas, exc = await run_error(on(upstream))
    assert deltas == ["alpha", " beta"]
    assert exc.code == "stream_interrupted"
    assert exc.message.startswith("The reply was cut off before it finished (the model API ")
    assert len(upstream.requests) == 1


async def test_cut_before_any_text_is_retried(upstream: FakeServer) -> None:
    # A tool_use-only reply cut mid-way: nothing reached the user, so it is safe to retry.
    upstream.enqueue(
        tool_use([("get_weather", {"city": "Paris"}, "toolu_1")]).with_(cut_after=2),
        text("after retry"),
    )
    deltas, final = await run(on(upstream))
    assert deltas == ["after", " retry"]
    assert len(upstream.requests) == 2


# -- deadlines -------------------------------------------------------------------------------


async def test_slow_first_token_hits_the_deadline(upstream: FakeServer) -> None:
    upstream.enqueue(slow(text("too late"), ttft=5))
    started = time.monotonic()
    _, exc = await run_error(on(upstream, timeout=0.3), timeout=0.3)
    assert time.monotonic() - started < 2
    assert exc.code == "timeout"
    assert exc.message == "The model did not answer within the 0.3 s limit."


async def test_slow_headers_hit_the_deadline(upstream: FakeServer) -> None:
    upstream.enqueue(slow(text("too late"), delay=5))
    _, exc = await run_error(on(upstream, timeout=0.3), timeout=0.3)
    assert exc.code == "timeout"


async def test_deadline_mid_stream(upstream: FakeServer) -> None:
    # The first word comes at once, the last after 2.8 s: a 1.5 s deadline falls in between
    # even on a loaded machine.
    upstream.enqueue(slow(text("a b c d e f g h"), token_delay=0.4))
    deltas, exc = await run_error(on(upstream, timeout=1.5), timeout=1.5)
    assert 0 < len(deltas) < 8
    assert exc.code == "timeout"
    assert "cut off" in exc.message


async def test_backoff_never_waits_past_the_deadline(upstream: FakeServer) -> None:
    upstream.enqueue(error(503), text("unused"))
    # The first backoff (30 s, jittered) is far past the 3 s deadline: fail at once, not wait.
    provider = on(upstream, timeout=3, backoff_base=30, backoff_max=30)
    started = time.monotonic()
    _, exc = await run_error(provider, timeout=3)
    assert time.monotonic() - started < 3
    assert exc.code == "upstream"
    assert "No time left to retry" in exc.message
    assert len(upstream.requests) == 1


# -- keys and configuration ------------------------------------------------------------------


def test_missing_key_names_the_variable() -> None:
    provider = make_provider(make_bot("http://127.0.0.1:9", api_key=None))
    with pytest.raises(ProviderError) as info:
        provider.check()
    assert info.value.code == "config"
    assert "ANTHROPIC_API_KEY" in info.value.message
    assert "export ANTHROPIC_API_KEY=" in info.value.message


def test_missing_bot_key_variable_is_named() -> None:
    provider = make_provider(make_bot(None, api_key=None, api_key_env="TUTOR_KEY"))
    with pytest.raises(ProviderError) as info:
        provider.check()
    assert info.value.code == "config"
    assert "TUTOR_KEY" in info.value.message


def test_env_key_or_auth_token_passes_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    make_provider(make_bot(None, api_key=None)).check()
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token")
    make_provider(make_bot(None, api_key=None)).check()


async def test_env_key_and_base_url_are_honoured(
    fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key-123")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.url)
    fake_anthropic.enqueue(text("hi"))
    provider = make_provider(make_bot(None, api_key=None))
    provider.check()
    await run(provider)
    assert fake_anthropic.requests[0].api_key == "env-key-123"


async def test_bot_key_wins_over_env(upstream: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(upstream.key_env, "env-key-123")
    upstream.enqueue(text("hi"))
    await run(on(upstream, api_key="bot-key-456"))
    assert upstream.requests[0].api_key == "bot-key-456"


async def test_401_names_the_variable_and_hides_the_key(
    upstream: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(upstream.key_env, KEY)
    upstream.enqueue(error(401), text("unused"))
    _, exc = await run_error(on(upstream, api_key=None))
    assert exc.code == "auth"
    assert exc.message == (
        f"The model API rejected the API key (HTTP 401): check {upstream.key_env}."
    )
    assert KEY not in exc.message
    assert len(upstream.requests) == 1


async def test_401_for_a_bot_key_names_its_variable(upstream: FakeServer) -> None:
    upstream.api_key = "the-right-key"
    _, exc = await run_error(on(upstream, api_key="wrong-key", api_key_env="TUTOR_KEY"))
    assert exc.code == "auth"
    assert "check TUTOR_KEY" in exc.message
    assert "wrong-key" not in exc.message


# -- the registry ----------------------------------------------------------------------------


async def test_get_provider_caches_per_connection_settings() -> None:
    a = get_provider(make_bot("http://127.0.0.1:1"))
    assert get_provider(make_bot("http://127.0.0.1:1")) is a
    assert get_provider(make_bot("http://127.0.0.1:2")) is not a
    assert get_provider(make_bot("http://127.0.0.1:1", api_key="other")) is not a
    assert isinstance(a, AnthropicProvider)
    await aclose_all()
    assert get_provider(make_bot("http://127.0.0.1:1")) is not a
    await aclose_all()


def test_unknown_provider_is_a_clear_error() -> None:
    with pytest.raises(ProviderError) as info:
        get_provider(make_bot(provider="openai-ish"))
    assert info.value.code == "config"
    assert "'openai-ish'" in info.value.message
    assert "anthropic" in info.value.message


def test_importing_providers_does_not_import_the_sdk() -> None:
    code = (
        "import sys, botrunner.providers, botrunner.providers.base; "
        "bad = [m for m in ('anthropic', 'openai', 'httpx2', 'httpx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the SSE decoder -------------------------------------------------------------------------


class _Body:
    """Stands in for an httpx response: only `aiter_bytes` is read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def aiter_bytes(self):  # noqa: ANN201
        for chunk in self.chunks:
            yield chunk


async def _decode(chunks: list[bytes]) -> list[dict]:
    return [event async for event in _sse_events(_Body(chunks))]  # type: ignore[arg-type]


async def test_sse_decoder_handles_splits_crlf_and_multiline_data() -> None:
    wire = (
        b'event: ping\ndata: {"type": "ping"}\n\n'
        b'event: x\r\ndata: {"type": "a",\r\ndata: "n": 1}\r\n\r\n'
        b": a comment\n\n"
        b'data:{"type":"b"}\n\n'
    )
    expected = [{"type": "ping"}, {"type": "a", "n": 1}, {"type": "b"}]
    assert await _decode([wire]) == expected
    assert await _decode([wire[i : i + 1] for i in range(len(wire))]) == expected


async def test_unknown_event_types_are_ignored(fake_anthropic: FakeAnthropic) -> None:
    # Forward compatibility: new event types must not break the stream.
    acc = _Accumulator()
    assert acc.feed({"type": "something_new", "data": 1}) is None
    fake_anthropic.enqueue(text("fine"))
    deltas, _ = await run(make_provider(make_bot(fake_anthropic.url)))
    assert deltas == ["fine"]


async def test_error_event_before_any_text_is_retried(upstream: FakeServer) -> None:
    broken = tool_use([("f", {"a": 1}, "toolu_1")]).with_(
        stream_error_after=1, error_type="overloaded_error", error_message="Overloaded"
    )
    upstream.enqueue(broken, text("second try"))
    deltas, final = await run(on(upstream))
    assert "".join(deltas) == "second try"
    assert len(upstream.requests) == 2


async def test_stream_without_a_key_is_a_config_error(fake_anthropic: FakeAnthropic) -> None:
    _, exc = await run_error(make_provider(make_bot(fake_anthropic.url, api_key=None)))
    assert exc.code == "config"
    assert "ANTHROPIC_API_KEY" in exc.message
    assert fake_anthropic.requests == []


def test_sdk_tracing_is_off_unless_opentelemetry_is_set_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing to record them, the SDK's spans are switched off (they cost CPU on every
    request); once the SDK's OpenTelemetry variables are set, its own defaults apply."""
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_OPEN_TELEMETRY"):
            monkeypatch.delenv(name)
    quiet = make_provider(make_bot("http://127.0.0.1:9"))._make_client()
    assert quiet.open_telemetry["traces"]["enabled"] is False

    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE", "content")
    traced = make_provider(make_bot("http://127.0.0.1:9"))._make_client()
    assert traced.open_telemetry["traces"]["enabled"] is True
    assert traced.open_telemetry["traces"]["content_mode"] == "content"


async def test_a_burst_leaves_at_most_32_idle_connections(upstream: FakeServer) -> None:
    """Every request checks the socket of each idle pooled connection, so a burst must not
    leave one idle connection per past request behind (the SDK would keep 100): 32 are kept
    for the next requests, the rest are closed."""
    provider = on(upstream)

    async def one() -> None:
        async for _ in provider.stream(REQUEST, deadline=time.monotonic() + 10):
            pass

    try:
        upstream.enqueue(*(text("hi") for _ in range(80)))
        await asyncio.gather(*(one() for _ in range(40)))
        burst = {r.peer for r in upstream.requests}
        assert len(burst) == 40  # 40 requests at once: 40 connections
        await asyncio.gather(*(one() for _ in range(40)))
        again = {r.peer for r in upstream.requests[40:]}
        assert len(again & burst) == 32
    finally:
        await provider.aclose()
