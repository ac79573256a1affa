"""The OpenAI provider's own behaviour, against the fake Chat Completions API with the real
`openai` SDK: the wire format it sends, keys and local servers, usage. What every provider
promises (retries, deadlines, safe errors) is tested for both in test_provider.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, text, tool_use

from botrunner.bot import Bot, Model, Retry
from botrunner.engine.engine import Engine
from botrunner.events import Done, TextDelta, Usage
from botrunner.providers import aclose_all, get_provider
from botrunner.providers.base import AssistantMessage, ModelRequest, ProviderError
from botrunner.providers.errors import StreamCut, StreamError
from botrunner.providers.openai import OpenAIProvider
from botrunner.providers.openai_stream import Accumulator
from botrunner.providers.sse import DONE, SSEDecoder
from botrunner.store import ConversationKey, open_store

KEY = "sk-proj-test-0123456789abcdef"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def make_bot(
    url: str | None,
    *,
    api_key: str | None = None,
    api_key_env: str | None = None,
    reasoning_effort: str | None = None,
) -> Bot:
    return Bot(
        name="t",
        model=Model(
            name="llama3.2",
            max_tokens=256,
            provider="openai",
            reasoning_effort=reasoning_effort,
            base_url=url,
            api_key=api_key,
            api_key_env=api_key_env,
        ),
        system=object(),  # type: ignore[arg-type] - the provider never touches it
        path=Path("t.yaml"),
        version="0" * 12,
        retry=Retry(max_retries=1, timeout_seconds=10),
    )


def request(messages: list[dict], **kwargs) -> ModelRequest:
    return ModelRequest(
        model="llama3.2", max_tokens=256, system="You are terse.", messages=messages, **kwargs
    )


HI = request([{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}])


async def run(
    provider: OpenAIProvider, req: ModelRequest = HI
) -> tuple[list[str], AssistantMessage]:
    deltas, final = [], None
    try:
        async for item in provider.stream(req, deadline=time.monotonic() + 10):
            if isinstance(item, TextDelta):
                deltas.append(item.text)
            else:
                final = item
    finally:
        await provider.aclose()
    assert isinstance(final, AssistantMessage)
    return deltas, final


# -- the wire --------------------------------------------------------------------------------


async def test_streams_text_from_a_local_server_without_a_key(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(text("Hello big world", input_tokens=12, output_tokens=3))
    provider = OpenAIProvider(make_bot(fake_openai.url))
    provider.check()  # no key anywhere: fine for a server that is not OpenAI's
    deltas, final = await run(provider)

    assert deltas == ["Hello", " big", " world"]
    assert final.content == [{"type": "text", "text": "Hello big world"}]
    assert final.stop_reason == "end_turn"
    assert final.usage == Usage(input_tokens=12, output_tokens=3, cache_read_tokens=0)
    (sent,) = fake_openai.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi there"},
        ],
        "max_tokens": 256,  # what local servers know (Ollama knows no other)
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "authorization" not in sent.headers  # no made-up key is sent


async def test_a_whole_tool_exchange_is_sent_as_chat_completions_messages(
    fake_openai: FakeOpenAI,
) -> None:
    history = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Paris?"}, {"type": "text", "text": "And Rome?"}],
        },
        {
            "role": "assistant",
            "content": [
                # From an Anthropic model before the bot switched provider: not sent.
                {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": "{city: Rome"},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": "Invalid input for tool get_weather.",
                    "is_error": True,
                },
            ],
        },
    ]
    fake_openai.enqueue(text("Sunny in Paris."))
    req = request(history, tools=[WEATHER], temperature=1.4, reasoning_effort="low")
    await run(OpenAIProvider(make_bot(fake_openai.url, reasoning_effort="low")), req)

    body = fake_openai.requests[0].body
    assert body["messages"][1:] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Paris?"}, {"type": "text", "text": "And Rome?"}],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    # Arguments that were not JSON go back exactly as the model sent them.
                    "function": {"name": "get_weather", "arguments": "{city: Rome"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {
            "role": "tool",
            "tool_call_id": "call_2",
            "content": "Invalid input for tool get_weather.",
        },
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert body["temperature"] == 1.4
    assert body["reasoning_effort"] == "low"


async def test_tool_call_fragments_are_assembled(fake_openai: FakeOpenAI) -> None:
    weather = {"city": "Paris", "units": {"temp": "C", "wind": ["km/h", "m/s"]}}
    fake_openai.enqueue(
        tool_use(
            [("get_weather", weather, "call_a"), ("get_time", {"tz": "Europe/Paris"}, "call_b")],
            text="Let me check.",
        )
    )
    deltas, final = await run(OpenAIProvider(make_bot(fake_openai.url)))
    assert "".join(deltas) == "Let me check."
    assert final.stop_reason == "tool_use"
    assert final.content == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": weather},
        {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {"tz": "Europe/Paris"}},
    ]


def test_openai_itself_gets_max_completion_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenAI's current models refuse max_tokens; any other server gets max_tokens.
    assert "max_completion_tokens" in OpenAIProvider(make_bot(None)).params(HI)
    assert "max_completion_tokens" in OpenAIProvider(make_bot("https://api.openai.com/v1")).params(
        HI
    )
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    assert OpenAIProvider(make_bot(None)).params(HI)["max_tokens"] == 256


# -- usage -----------------------------------------------------------------------------------


async def test_cached_prompt_tokens_are_counted_apart(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(text("ok", input_tokens=40, output_tokens=2).with_(cached_tokens=1000))
    _, final = await run(OpenAIProvider(make_bot(fake_openai.url)))
    # prompt_tokens was 1040, 1000 of them from the cache.
    assert final.usage == Usage(input_tokens=40, output_tokens=2, cache_read_tokens=1000)
    assert final.usage.known == 1042


async def test_a_server_that_sends_no_usage_leaves_the_counts_unknown(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    bot_file = tmp_path / "bot.yaml"
    bot_file.write_text(
        textwrap.dedent(
            f"""\
            name: local
            model:
              provider: openai
              name: llama3.2
              base_url: {fake_openai.url}
            system: You are terse.
            limits:
              per_user: {{tokens_per_day: 1000}}
            """
        )
    )
    from botrunner.botfile.loader import load_bot

    bot = load_bot(bot_file)
    fake_openai.enqueue(text("no usage here").with_(send_usage=False))
    store = open_store(tmp_path / "db")
    engine = Engine(store)
    try:
        events = [e async for e in engine.turn(bot, ConversationKey("local", "u", "s"), "hi")]
        assert isinstance(events[-1], Done)
        assert events[-1].usage == Usage(None, None, None)
        assert events[-1].usage.to_dict() == {"input_tokens": None, "output_tokens": None}
        # Nothing is guessed: the budget counts what was reported, here nothing.
        assert await store.tokens_used("local", "u", time.strftime("%Y-%m-%d", time.gmtime())) == 0
    finally:
        await engine.aclose()
        await store.close()


# -- keys ------------------------------------------------------------------------------------


def test_openai_itself_without_a_key_names_the_variable() -> None:
    with pytest.raises(ProviderError) as info:
        OpenAIProvider(make_bot(None)).check()
    assert info.value.code == "config"
    assert "No API key: set OPENAI_API_KEY, e.g. `export OPENAI_API_KEY=sk-...`" in (
        info.value.message
    )


def test_a_bot_key_variable_that_is_not_set_is_named() -> None:
    provider = OpenAIProvider(make_bot("http://localhost:11434/v1", api_key_env="LLM_KEY"))
    with pytest.raises(ProviderError) as info:
        provider.check()
    assert "LLM_KEY" in info.value.message and info.value.code == "config"


async def test_the_environment_key_and_base_url_are_used(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai.api_key = KEY
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)
    fake_openai.enqueue(text("hi"))
    provider = OpenAIProvider(make_bot(None))
    provider.check()
    await run(provider)
    assert fake_openai.requests[0].api_key == KEY


async def test_a_local_server_that_is_not_running_is_named() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(make_bot(f"http://127.0.0.1:{port}/v1"), backoff_base=0.001)
    with pytest.raises(ProviderError) as info:
        await run(provider)
    assert info.value.message == (
        f"Could not reach the model API at http://127.0.0.1:{port} (is the model server "
        "running?). Gave up after 2 attempts."
    )


# -- the registry and the optional SDK -------------------------------------------------------


async def test_the_registry_builds_it() -> None:
    assert isinstance(get_provider(make_bot("http://localhost:11434/v1")), OpenAIProvider)
    await aclose_all()


def test_without_the_sdk_the_error_says_what_to_install() -> None:
    code = textwrap.dedent(
        """\
        import sys
        sys.modules["openai"] = None  # as if it were not installed
        from pathlib import Path
        from botrunner.bot import Bot, Model
        from botrunner.providers import ProviderError, get_provider
        bot = Bot("t", Model("m", 10, provider="openai"), object(), Path("t"), "0")
        try:
            get_provider(bot)
        except ProviderError as exc:
            print(exc.code, exc.message)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "config The openai provider (model.provider) needs the openai package, which is not "
        "installed: pip install 'botrunner[openai]'."
    )


# -- the stream decoder, chunk by chunk (servers differ) ------------------------------------


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"choices": [choice], **extra}


def test_decoder_reads_data_lines_and_done() -> None:
    wire = b'data: {"choices":[]}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n'
    decoder = SSEDecoder()
    events = [e for i in range(len(wire)) for e in decoder.feed(wire[i : i + 1])]
    assert events[0] == {"choices": []} and events[1] is DONE and len(events) == 2


def test_tool_calls_after_stop_are_still_tool_use_and_get_ids() -> None:
    acc = Accumulator()
    acc.feed(chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}))
    acc.feed(chunk(finish="stop"))  # some servers say stop after tool calls
    acc.feed(DONE)
    message = acc.finish()
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert call["name"] == "f" and call["input"] == {} and call["id"].startswith("call_")


def test_refusals_are_text_and_reasoning_is_not_shown() -> None:
    acc = Accumulator()
    assert acc.feed(chunk({"reasoning_content": "Let me think..."})) is None
    assert acc.feed(chunk({"refusal": "I can't help with that."})) == "I can't help with that."
    acc.feed(chunk(finish="content_filter"))
    message = acc.finish()  # no [DONE]: a server that said why it stopped has finished
    assert message.content == [{"type": "text", "text": "I can't help with that."}]
    assert message.stop_reason == "refusal"


def test_a_stream_that_just_ends_is_cut() -> None:
    acc = Accumulator()
    acc.feed(chunk({"content": "Half a"}))
    with pytest.raises(StreamCut):
        acc.finish()


def test_usage_on_the_last_content_chunk_is_read() -> None:
    acc = Accumulator()
    usage = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
    acc.feed(chunk({"content": "Hi"}, "stop", usage=usage))  # llama.cpp's way
    assert acc.finish().usage == Usage(7, 1, None)


def test_an_error_chunk_raises() -> None:
    acc = Accumulator()
    with pytest.raises(StreamError) as info:
        acc.feed({"error": {"message": "model overloaded", "type": "server_error"}})
    assert info.value.err_type == "server_error"
