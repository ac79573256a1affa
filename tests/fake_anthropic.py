"""A fake Anthropic Messages API server: the real wire format, scripted per test.

Fakes, not mocks: the code under test uses the real `anthropic` SDK over real HTTP, pointed at
this server by `base_url` / `ANTHROPIC_BASE_URL`. Nothing in the SDK is patched.

In a test::

    from tests.fake_anthropic import text, tool_use, error, cut_after

    def test_something(fake_anthropic):
        fake_anthropic.enqueue(error(429, retry_after=0), text("Hello world"))
        ...  # point the code at fake_anthropic.url
        assert len(fake_anthropic.requests) == 2
        assert fake_anthropic.requests[-1].body["messages"][-1]["content"] == "hi"

Each POST /v1/messages takes the next scripted reply from the queue, and answers with JSON or,
when the request says `"stream": true`, with the SSE sequence `message_start`,
`content_block_start`, `ping`, `content_block_delta`..., `content_block_stop`, `message_delta`,
`message_stop`. With nothing enqueued the default is a 400 `invalid_request_error` saying so,
so a test that makes an unexpected call fails loudly; `FakeAnthropic(default="echo")` (or the
automatic modes below) answers on its own instead.

As a standalone upstream for benchmarks (never the bottleneck: plain asyncio streams, a
hand-rolled HTTP/1.1 keep-alive loop, pre-encoded SSE frames, no pydantic, nothing recorded)::

    python tests/fake_anthropic.py --port 8765 --mode instant
    python tests/fake_anthropic.py --port 8765 --mode paced --ttft-ms 250 --tokens 16-64 --token-ms 10-20
    python tests/fake_anthropic.py --port 0 --mode echo --tool-calls   # prints the URL it listens on
    python tests/fake_anthropic.py --port 0 --mode script --script tests/bots_upstream.json

It accepts the key either as `x-api-key` or as `Authorization: Bearer` (the SDK in use sends the
latter); a request with neither gets the real API's 401 `authentication_error`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import random
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Self

try:  # imported as tests.fake_anthropic, or run as a script from its own folder
    from tests.fake_cache import (
        DEFAULT_MIN_CACHEABLE,
        CacheRequestError,
        PromptCache,
        blocks,
        catalogue_minimum,
        prompt_tokens,
    )
except ImportError:  # pragma: no cover - depends on how it is started
    from fake_cache import (  # type: ignore[no-redef]
        DEFAULT_MIN_CACHEABLE,
        CacheRequestError,
        PromptCache,
        blocks,
        catalogue_minimum,
        prompt_tokens,
    )

DEFAULT_MODEL = "claude-fake-1"

_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}

# The error `type` the real API uses for each status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "timeout_error": "Request timed out.",
}


# --------------------------------------------------------------------------------------------
# Scripted replies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextOut:
    text: str
    chunks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolUseOut:
    id: str | None
    name: str
    input: Any
    chunks: tuple[str, ...] | None = None  # the partial_json pieces; None: split automatically


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. Build it with the helpers below (`text`, `tool_use`, `error`, ...)."""

    status: int = 200
    blocks: tuple[TextOut | ToolUseOut, ...] = ()
    stop_reason: str = "end_turn"
    input_tokens: int | None = None  # None: estimated from the request (and the cache)
    output_tokens: int | None = None  # None: one per delta
    # With input_tokens set, the usage reported as is (the cache is still read and written).
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    model: str | None = None  # None: the request's model
    headers: tuple[tuple[str, str], ...] = ()
    error_type: str | None = None
    error_message: str | None = None
    # Close the connection after this many content_block_delta events (a stream cut mid-way).
    cut_after: int | None = None
    # Send an SSE `error` event after this many deltas, then end the stream (no message_stop).
    stream_error_after: int | None = None
    # Seconds before the response headers are sent.
    delay: float = 0.0
    # Seconds between message_start and the first delta (time to first token), and between deltas.
    ttft: float = 0.0
    token_delay: float = 0.0
    # Chat Completions only: prompt tokens read from the cache (counted in prompt_tokens), and
    # whether the usage chunk is sent at all when asked for (some servers never send one).
    cached_tokens: int = 0
    send_usage: bool = True

    def with_(self, **changes: Any) -> Reply:
        return replace(self, **changes)


def split_words(s: str) -> tuple[str, ...]:
    """Split text the way tokens arrive: 'Hello big world' -> ('Hello', ' big', ' world')."""
    parts = re.findall(r"\s*\S+|\s+$", s)
    return tuple(parts) if parts else ((s,) if s else ())


def text(
    s: str,
    *,
    chunks: Iterable[str] | None = None,
    stop_reason: str = "end_turn",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    delay: float = 0.0,
    ttft: float = 0.0,
    token_delay: float = 0.0,
    headers: dict[str, str] | None = None,
    model: str | None = None,
) -> Reply:
    """A text reply, streamed word by word (or in the given `chunks`, which must join to `s`).
    With `input_tokens`, the usage is reported as given (cache fields included)."""
    pieces = tuple(chunks) if chunks is not None else split_words(s)
    if "".join(pieces) != s:
        raise ValueError("chunks must join to the text")
    return Reply(
        blocks=(TextOut(s, pieces),),
        stop_reason=stop_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        cache_write_1h_tokens=cache_write_1h_tokens,
        delay=delay,
        ttft=ttft,
        token_delay=token_delay,
        headers=tuple((headers or {}).items()),
        model=model,
    )


def tool_use(
    calls: Iterable[tuple[str, Any] | tuple[str, Any, str]],
    *,
    text: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    delay: float = 0.0,
    ttft: float = 0.0,
    token_delay: float = 0.0,
) -> Reply:
    """A reply asking for one or more tool calls (several: parallel calls in one message),
    optionally preceded by some text. Each call is `(name, input)` or `(name, input, id)`;
    ids default to `toolu_fake_<n>`. Inputs stream as several `input_json_delta` pieces."""
    blocks: list[TextOut | ToolUseOut] = []
    if text:
        blocks.append(TextOut(text, split_words(text)))
    for call in calls:
        name, input_ = call[0], call[1]
        call_id = call[2] if len(call) > 2 else None  # type: ignore[misc]
        blocks.append(ToolUseOut(call_id, name, input_))
    return Reply(
        blocks=tuple(blocks),
        stop_reason="tool_use",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        delay=delay,
        ttft=ttft,
        token_delay=token_delay,
    )


def error(
    status: int,
    message: str | None = None,
    *,
    type: str | None = None,  # noqa: A002 - the wire name
    retry_after: float | str | None = None,
    retry_after_ms: float | None = None,
    should_retry: bool | None = None,
    headers: dict[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """An error response with the real body shape:
    `{"type":"error","error":{"type":...,"message":...},"request_id":...}`."""
    err_type = type or ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    hdrs = dict(headers or {})
    if retry_after is not None:
        hdrs["retry-after"] = str(retry_after)
    if retry_after_ms is not None:
        hdrs["retry-after-ms"] = str(retry_after_ms)
    if should_retry is not None:
        hdrs["x-should-retry"] = "true" if should_retry else "false"
    return Reply(
        status=status,
        error_type=err_type,
        error_message=message or _ERROR_MESSAGES.get(err_type, "Error"),
        headers=tuple(hdrs.items()),
        delay=delay,
    )


def cut_after(n: int, s: str = "This reply will be cut off before it is complete, sorry.") -> Reply:
    """A text reply whose connection is closed after `n` deltas (no message_stop)."""
    reply = text(s)
    if n >= len(reply.blocks[0].chunks):  # type: ignore[union-attr]
        raise ValueError("cut_after: n must be smaller than the number of chunks")
    return reply.with_(cut_after=n)


def stream_error(
    n: int,
    s: str = "This reply will fail part of the way through.",
    *,
    type: str = "overloaded_error",  # noqa: A002
    message: str | None = None,
) -> Reply:
    """A text reply that sends an SSE `error` event after `n` deltas, like the real API does
    when it becomes overloaded mid-stream."""
    return text(s).with_(
        stream_error_after=n,
        error_type=type,
        error_message=message or _ERROR_MESSAGES.get(type, "Error"),
    )


def slow(reply: Reply, *, delay: float = 0.0, ttft: float = 0.0, token_delay: float = 0.0) -> Reply:
    """The same reply, paced: `delay` before the headers, `ttft` before the first delta,
    `token_delay` between deltas."""
    return reply.with_(delay=delay, ttft=ttft, token_delay=token_delay)


# --------------------------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON (None when there was no body or it was not JSON)
    raw_body: bytes = b""
    # The client's (host, port): requests sharing it came over one pooled connection.
    peer: tuple[Any, ...] = ()

    @property
    def json(self) -> Any:
        return self.body

    @property
    def api_key(self) -> str | None:
        """The key the client sent, as `x-api-key` or `Authorization: Bearer <key>`."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    # `messages`, `system` and `tools` show the request as the model reads it: without the
    # cache_control markers, a message of one plain text block as its text, the system prompt
    # as one string. The markers themselves are in `body` (and counted by `breakpoints`).

    @property
    def messages(self) -> list[dict[str, Any]]:
        raw = self.body.get("messages", []) if isinstance(self.body, dict) else []
        return [_plain_message(m) for m in raw]

    @property
    def system(self) -> Any:
        system = self.body.get("system") if isinstance(self.body, dict) else None
        if isinstance(system, list):
            return "".join(b.get("text", "") for b in system if isinstance(b, dict))
        return system

    @property
    def tools(self) -> list[dict[str, Any]]:
        raw = self.body.get("tools", []) if isinstance(self.body, dict) else []
        return [_unmarked(t) for t in raw]

    @property
    def breakpoints(self) -> list[str]:
        """Where the request's cache_control markers are, in prefix order: `tools[i]`,
        `system[i]`, `messages[i][j]`."""
        return [where for where, _, marker, _ in blocks(self.body) if marker is not None]


def _unmarked(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _plain_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list):
        return message
    blocks = [_unmarked(b) for b in content]
    if len(blocks) == 1 and blocks[0].get("type") == "text" and len(blocks[0]) == 2:
        return {**message, "content": blocks[0]["text"]}
    return {**message, "content": blocks}


# --------------------------------------------------------------------------------------------
# Wire encoding
# --------------------------------------------------------------------------------------------

_dumps_utf8 = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":")).encode
_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps(data: Any) -> str:
    """JSON text that encodes as UTF-8: a surrogate (half of an emoji, say) goes out as its
    escape (`\\ud83d`), as the real APIs send it."""
    out = _dumps_utf8(data)
    if out.isascii() or _SURROGATE.search(out) is None:
        return out
    return _dumps_ascii(data)


def _frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {_dumps(data)}\n\n".encode()


_PING = _frame("ping", {"type": "ping"})
_MESSAGE_STOP = _frame("message_stop", {"type": "message_stop"})


def _split_json(s: str, pieces: int = 3) -> tuple[str, ...]:
    """Split serialized JSON into several partial_json pieces; the first is empty, as the real
    API sends it."""
    if not s:
        return ("",)
    step = max(1, -(-len(s) // pieces))
    return ("", *(s[i : i + step] for i in range(0, len(s), step)))


def _input_usage(
    input_tokens: int, read: int = 0, write: int = 0, write_1h: int = 0
) -> dict[str, Any]:
    """The input half of a `usage` object, in the real API's shape."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
    }


def _estimate_input_tokens(raw_body: bytes) -> int:
    """A request's input tokens from its size (4 bytes a token): for the fakes of APIs whose
    prompts are not counted block by block (the Messages API's are, see fake_cache)."""
    return max(1, len(raw_body) // 4)


def _stream_items(reply: Reply, msg_id: str, model: str, usage: dict[str, Any], ids: Iterator[int]):
    """Yield (kind, bytes) for a streamed reply: kind is 'frame' or 'delta'."""
    start = {
        "type": "message_start",
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        },
    }
    yield "frame", _frame("message_start", start)
    n_deltas = 0
    for index, block in enumerate(reply.blocks):
        if isinstance(block, TextOut):
            yield (
                "frame",
                _frame(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
            )
            if index == 0:
                yield "frame", _PING
            for piece in block.chunks:
                n_deltas += 1
                cached = _CANNED_DELTAS.get(piece) if index == 0 else None
                yield (
                    "delta",
                    cached
                    or _frame(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    ),
                )
        else:
            tool_id = block.id or f"toolu_fake_{next(ids):06d}"
            yield (
                "frame",
                _frame(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": tool_id,
                            "name": block.name,
                            "input": {},
                        },
                    },
                ),
            )
            if index == 0:
                yield "frame", _PING
            pieces = block.chunks or _split_json(_dumps(block.input))
            for piece in pieces:
                n_deltas += 1
                yield (
                    "delta",
                    _frame(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    ),
                )
        yield (
            "frame",
            _frame("content_block_stop", {"type": "content_block_stop", "index": index}),
        )
    output_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, n_deltas)
    yield (
        "frame",
        _frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
    )
    yield "frame", _MESSAGE_STOP


def _message_json(
    reply: Reply, msg_id: str, model: str, usage: dict[str, Any], ids: Iterator[int]
) -> bytes:
    content: list[dict[str, Any]] = []
    n = 0
    for block in reply.blocks:
        if isinstance(block, TextOut):
            content.append({"type": "text", "text": block.text})
            n += len(block.chunks)
        else:
            content.append(
                {
                    "type": "tool_use",
                    "id": block.id or f"toolu_fake_{next(ids):06d}",
                    "name": block.name,
                    "input": block.input,
                }
            )
            n += 3
    output_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, n)
    return _dumps(
        {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": output_tokens},
        }
    ).encode()


def _error_body(err_type: str, message: str, request_id: str) -> bytes:
    return _dumps(
        {
            "type": "error",
            "error": {"type": err_type, "message": message},
            "request_id": request_id,
        }
    ).encode()


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Status')}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# --------------------------------------------------------------------------------------------
# Automatic replies (when nothing is enqueued)
# --------------------------------------------------------------------------------------------

_WORDS = [
    "the",
    "model",
    "answers",
    "with",
    "a",
    "steady",
    "stream",
    "of",
    "plain",
    "words",
    "so",
    "every",
    "token",
    "costs",
    "the",
    "same",
    "and",
    "nothing",
    "here",
    "depends",
    "on",
    "the",
    "request",
    "which",
    "keeps",
    "this",
    "server",
    "cheap",
]

# Pre-encoded delta frames of the canned words (block 0), reused for every automatic reply.
_CANNED_DELTAS = {
    w: _frame(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
    )
    for w in (" " + w for w in _WORDS)
}


@dataclass(slots=True)
class Auto:
    """What the server answers when its queue is empty.

    mode: `error` (a 400 saying nothing was enqueued: tests fail loudly), `echo` (the last user
    message's text back), `instant` (a canned reply of `tokens` words, no delay), `paced` (the
    same with `ttft` before the first token and `token_delay` between tokens; ranges are drawn
    uniformly per request) or `script` (the reply of the first `script` rule whose pattern
    is found in the last message; see `load_script`). With `tool_calls`, a request that offers tools and whose last user
    message mentions "tool" or a tool's name gets a `tool_use` for that tool; a request whose
    last message carries tool results gets a short text reply about them. With `echo_system`,
    every text reply starts with the request's system prompt (benchmarks time hot reload by it).
    """

    mode: str = "error"
    tokens: tuple[int, int] = (16, 64)
    ttft: tuple[float, float] = (0.25, 0.25)
    token_delay: tuple[float, float] = (0.010, 0.020)
    tool_calls: bool = False
    echo_system: bool = False
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    script: list[tuple[re.Pattern[str], Reply]] = field(default_factory=list)


def load_script(path: str) -> list[tuple[re.Pattern[str], Reply]]:
    """Rules for `mode="script"` from a JSON file: a list of objects, each with `when` (a
    regular expression searched in the last message: its text, or the content of its tool
    results) and the reply: `text`, or `tool_use` (a list of [name, input, id]) with an
    optional `text` before the calls, or `error` (an HTTP status). The first match answers,
    whatever the order requests arrive in; a request no rule matches gets a 400."""
    with open(path, encoding="utf-8") as f:
        rules = json.load(f)
    script = []
    for rule in rules:
        if "error" in rule:
            reply = error(int(rule["error"]), rule.get("message"))
        elif "tool_use" in rule:
            reply = tool_use([tuple(call) for call in rule["tool_use"]], text=rule.get("text"))
        else:
            reply = text(rule["text"])
        script.append((re.compile(rule["when"]), reply))
    return script


def _last_user_text(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """The last user message's text, and its tool_result blocks."""
    if not isinstance(body, dict):
        return "", []
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content, []
        texts, results = [], []
        for block in content or []:
            if block.get("type") == "text":
                texts.append(block.get("text", ""))
            elif block.get("type") == "tool_result":
                results.append(block)
        return "".join(texts), results
    return "", []


def _example_input(schema: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(schema, dict):
        return out
    props = schema.get("properties") or {}
    for name in schema.get("required") or list(props)[:1]:
        kind = (props.get(name) or {}).get("type")
        out[name] = {"integer": 1, "number": 1.5, "boolean": True}.get(kind, "Paris")
    return out


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeServer:
    """What every fake upstream shares: the scripted queue, the automatic replies, the recorded
    requests, an HTTP/1.1 keep-alive loop on plain asyncio streams, and the lifecycle.
    `start()` runs it in a background thread with its own event loop (works from sync and async
    tests alike); `serve()` runs it in the current loop (the CLI). Subclasses answer requests in
    their API's wire format (`_respond`)."""

    name = "fake_upstream"
    # Whether the wire format can say that a tool result is an error (Messages API: is_error).
    flags_tool_errors = True

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: str | Auto = "error",
        record: bool = True,
        api_key: str | None = None,
        min_cacheable: int = DEFAULT_MIN_CACHEABLE,
    ) -> None:
        self.host = host
        self.port = port
        self.auto = default if isinstance(default, Auto) else Auto(mode=default)
        self.record = record
        # When set, any other key gets a 401 authentication_error (a missing key always does).
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        # Prompt caching as the API documents it (tests/fake_cache.py); models the catalogue
        # does not know cache from `min_cacheable` tokens.
        self.cache = PromptCache(catalogue_minimum(min_cacheable))
        self._queue: collections.deque[Reply] = collections.deque()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # -- test API -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def enqueue(self, *replies: Reply) -> Self:
        """Script the next answers, in order; each POST /v1/messages takes one."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"enqueue() takes Reply objects (use text(), ...), not {reply!r}")
            self._queue.append(reply)
        return self

    @property
    def pending(self) -> int:
        """How many enqueued replies have not been used yet."""
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()
        self.requests.clear()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(ready))
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError(f"{self.name} failed to start: {failure[0]!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve(self, ready: threading.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        try:
            await self._stopped.wait()
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head[:-4].split(b"\r\n")
                try:
                    method, target, _version = lines[0].decode("latin-1").split(" ", 2)
                except ValueError:
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower().decode("latin-1")] = value.strip().decode(
                        "latin-1"
                    )
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    raw_body = await self._read_chunked(reader)
                else:
                    length = int(headers.get("content-length") or 0)
                    raw_body = await reader.readexactly(length) if length else b""
                keep = await self._respond(method, target, headers, raw_body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def _respond(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        raw_body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False closes the connection."""
        raise NotImplementedError

    # -- automatic replies ----------------------------------------------------------------

    def _auto_reply(self, body: dict[str, Any]) -> Reply | None:
        auto = self.auto
        if auto.mode == "error":
            return None
        user_text, results = _last_user_text(body)
        if auto.mode == "script":
            said = " ".join([user_text, *(str(r.get("content")) for r in results)])
            return next((reply for when, reply in auto.script if when.search(said)), None)
        if auto.tool_calls:
            tools = body.get("tools") or []
            if results:
                summary = " ".join(
                    str(r.get("content"))[:80] if not isinstance(r.get("content"), list) else "ok"
                    for r in results
                )
                return text(f"The tool said: {summary}")
            if tools and user_text:
                lowered = user_text.lower()
                chosen = next((t for t in tools if t.get("name", "").lower() in lowered), None)
                if chosen is None and "tool" in lowered:
                    chosen = tools[0]
                if chosen is not None:
                    return tool_use([(chosen["name"], _example_input(chosen.get("input_schema")))])
        if auto.echo_system:
            system = body.get("system", "")
            if isinstance(system, list):
                system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
            return text(f"{system} {user_text}".strip() or "(nothing to echo)")
        if auto.mode == "echo":
            return text(user_text or "(nothing to echo)")
        rng = auto.rng
        n = rng.randint(*auto.tokens)
        words = [" " + _WORDS[i % len(_WORDS)] for i in range(n)]
        reply = Reply(
            blocks=(TextOut("".join(words), tuple(words)),),
            output_tokens=n,
        )
        if auto.mode == "paced":
            reply = reply.with_(
                ttft=rng.uniform(*auto.ttft), token_delay=rng.uniform(*auto.token_delay)
            )
        return reply


class FakeAnthropic(FakeServer):
    """fake Anthropic Messages API server (see the module's docstring)."""

    name = "fake_anthropic"
    # The bot file's model.provider for this API, and the variables that point its SDK here.
    provider = "anthropic"
    url_env, key_env = "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"

    async def _respond(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        raw_body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False closes the connection."""
        path = target.split("?", 1)[0]
        n = next(self._ids)
        request_id = f"req_fake_{n:06d}"
        if method == "GET" and path in ("/health", "/healthz"):
            body = b'{"ok":true}'
            writer.write(
                _head(
                    200, (("content-type", "application/json"), ("content-length", str(len(body))))
                )
                + body
            )
            await writer.drain()
            return True

        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        if self.record:
            peer = writer.get_extra_info("peername") or ()
            self.requests.append(
                RecordedRequest(method, path, headers, body, raw_body, tuple(peer))
            )

        if method != "POST" or path != "/v1/messages":
            await self._send_error(
                writer, 404, "not_found_error", f"Not found: {method} {path}", request_id, ()
            )
            return True

        key = headers.get("x-api-key")
        if key is None:
            auth = headers.get("authorization", "")
            key = auth[7:] if auth.lower().startswith("bearer ") else None
        if not key:
            await self._send_error(
                writer,
                401,
                "authentication_error",
                "x-api-key header is required",
                request_id,
                (),
            )
            return True
        if self.api_key is not None and key != self.api_key:
            await self._send_error(
                writer, 401, "authentication_error", "invalid x-api-key", request_id, ()
            )
            return True
        if not isinstance(body, dict):
            await self._send_error(
                writer,
                400,
                "invalid_request_error",
                "The request body is not valid JSON.",
                request_id,
                (),
            )
            return True

        cached: dict[str, Any] | None = None
        if b'"cache_control"' in raw_body:
            try:
                cached = self.cache.apply(body, str(body.get("model") or DEFAULT_MODEL))
            except CacheRequestError as exc:
                await self._send_error(
                    writer, 400, "invalid_request_error", str(exc), request_id, ()
                )
                return True

        reply = self._queue.popleft() if self._queue else self._auto_reply(body)
        if reply is None:
            await self._send_error(
                writer,
                400,
                "invalid_request_error",
                "fake_anthropic: nothing enqueued for this request; call "
                "fake_anthropic.enqueue(text(...)) or start it with default='echo'",
                request_id,
                (),
            )
            return True
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            await self._send_error(
                writer,
                reply.status,
                reply.error_type or "api_error",
                reply.error_message or "Error",
                request_id,
                reply.headers,
            )
            return True

        model = reply.model or body.get("model") or DEFAULT_MODEL
        msg_id = f"msg_fake_{n:06d}"
        if reply.input_tokens is not None:
            usage = _input_usage(
                reply.input_tokens,
                reply.cache_read_tokens,
                reply.cache_write_tokens,
                reply.cache_write_1h_tokens,
            )
        elif cached is not None:
            usage = cached
        else:
            usage = _input_usage(prompt_tokens(body))
        if body.get("stream") is True:
            return await self._send_stream(writer, reply, msg_id, model, usage, request_id)
        payload = _message_json(reply, msg_id, model, usage, self._ids)
        hdrs = [
            ("content-type", "application/json"),
            ("request-id", request_id),
            *reply.headers,
        ]
        if reply.cut_after is not None:
            hdrs.append(("content-length", str(len(payload))))
            writer.write(_head(200, hdrs) + payload[: len(payload) // 2])
            await writer.drain()
            return False
        hdrs.append(("content-length", str(len(payload))))
        writer.write(_head(200, hdrs) + payload)
        await writer.drain()
        return True

    async def _send_error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        err_type: str,
        message: str,
        request_id: str,
        extra: Iterable[tuple[str, str]],
    ) -> None:
        payload = _error_body(err_type, message, request_id)
        writer.write(
            _head(
                status,
                (
                    ("content-type", "application/json"),
                    ("content-length", str(len(payload))),
                    ("request-id", request_id),
                    *extra,
                ),
            )
            + payload
        )
        await writer.drain()

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        reply: Reply,
        msg_id: str,
        model: str,
        usage: dict[str, Any],
        request_id: str,
    ) -> bool:
        writer.write(
            _head(
                200,
                (
                    ("content-type", "text/event-stream; charset=utf-8"),
                    ("cache-control", "no-cache"),
                    ("transfer-encoding", "chunked"),
                    ("request-id", request_id),
                    *reply.headers,
                ),
            )
        )
        paced = bool(reply.ttft or reply.token_delay)
        buffer: list[bytes] = []
        deltas = 0
        for kind, data in _stream_items(reply, msg_id, model, usage, self._ids):
            if kind == "delta":
                if paced:
                    wait = reply.ttft if deltas == 0 else reply.token_delay
                    if buffer:
                        writer.write(_chunk(b"".join(buffer)))
                        buffer.clear()
                    await writer.drain()
                    if wait:
                        await asyncio.sleep(wait)
                deltas += 1
                buffer.append(data)
                if reply.cut_after is not None and deltas >= reply.cut_after:
                    writer.write(_chunk(b"".join(buffer)))
                    await writer.drain()
                    writer.close()
                    return False
                if reply.stream_error_after is not None and deltas >= reply.stream_error_after:
                    buffer.append(
                        _frame(
                            "error",
                            {
                                "type": "error",
                                "error": {
                                    "type": reply.error_type or "overloaded_error",
                                    "message": reply.error_message or "Overloaded",
                                },
                                "request_id": request_id,
                            },
                        )
                    )
                    writer.write(_chunk(b"".join(buffer)) + b"0\r\n\r\n")
                    await writer.drain()
                    return True
            else:
                buffer.append(data)
        writer.write(_chunk(b"".join(buffer)) + b"0\r\n\r\n")
        await writer.drain()
        return True


# --------------------------------------------------------------------------------------------
# pytest fixture
# --------------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # the CLI does not need pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_anthropic() -> Iterator[FakeAnthropic]:
        """A running fake Messages API (default: fail loudly when nothing is enqueued)."""
        server = FakeAnthropic().start()
        try:
            yield server
        finally:
            server.stop()


# --------------------------------------------------------------------------------------------
# CLI: a standalone upstream for benchmarks
# --------------------------------------------------------------------------------------------


def _range(s: str, scale: float = 1.0) -> tuple[float, float]:
    lo, _, hi = s.partition("-")
    return float(lo) * scale, float(hi or lo) * scale


def main(argv: list[str] | None = None, server_class: type[FakeServer] | None = None) -> None:
    server_class = server_class or FakeAnthropic
    parser = argparse.ArgumentParser(description=f"A {server_class.__doc__}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--mode", choices=["instant", "paced", "echo", "error", "script"], default="instant"
    )
    parser.add_argument("--script", help="script mode: the JSON rules file (see load_script)")
    parser.add_argument("--ttft-ms", default="250", help="paced: time to first token, e.g. 250")
    parser.add_argument("--tokens", default="16-64", help="tokens per reply, e.g. 16-64")
    parser.add_argument("--token-ms", default="10-20", help="paced: delay per token, e.g. 10-20")
    parser.add_argument(
        "--tool-calls",
        action="store_true",
        help="answer with tool_use when the last user message names a tool (or says 'tool')",
    )
    parser.add_argument(
        "--echo-system",
        action="store_true",
        help="start every text reply with the request's system prompt",
    )
    parser.add_argument("--api-key", default=None, help="accept only this key")
    parser.add_argument(
        "--min-cacheable",
        type=int,
        default=DEFAULT_MIN_CACHEABLE,
        help="the minimum cacheable prompt length of models the catalogue does not know",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    lo, hi = _range(args.tokens)
    auto = Auto(
        mode=args.mode,
        tokens=(int(lo), int(hi)),
        ttft=_range(args.ttft_ms, 0.001),
        token_delay=_range(args.token_ms, 0.001),
        tool_calls=args.tool_calls,
        echo_system=args.echo_system,
        rng=random.Random(args.seed),
        script=load_script(args.script) if args.script else [],
    )
    server = server_class(
        host=args.host,
        port=args.port,
        default=auto,
        record=False,
        api_key=args.api_key,
        min_cacheable=args.min_cacheable,
    )

    class _Ready:
        def set(self) -> None:
            print(f"{server.name} listening on {server.url} mode={args.mode}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(_Ready()))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
