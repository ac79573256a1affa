"""A fake OpenAI Chat Completions server: the real wire format, scripted per test.

The twin of `fake_anthropic` (same scripted replies, same recorded requests, same automatic
modes), speaking `POST /v1/chat/completions` as OpenAI and the servers that copy it (Ollama,
llama.cpp, vLLM) do. The code under test uses the real `openai` SDK over real HTTP, pointed at
this server by `base_url` / `OPENAI_BASE_URL` (`.url`, which ends in `/v1`). Nothing in the SDK
is patched.

    from tests.fake_openai import text, tool_use, error, cut_after

    def test_something(fake_openai):
        fake_openai.enqueue(error(429, retry_after=0), text("Hello world"))
        ...  # point the code at fake_openai.url
        assert fake_openai.requests[-1].wire_messages[-1] == {"role": "user", "content": "hi"}

A streamed answer is the real sequence of `data:` chunks: the role, the text word by word, each
tool call as its id and name then fragments of its JSON `arguments`, the `finish_reason`, the
usage chunk (when the request asks with `stream_options.include_usage`), then `data: [DONE]`.
Errors have OpenAI's body, `{"error": {"message", "type", "param", "code"}}`, and the scripted
headers (`retry-after`); an error inside a stream is a `data: {"error": ...}` chunk. Requests are
checked as the real API checks them (roles, tool messages answering the calls just before,
`stream_options` only with `stream`): a malformed one gets a 400 saying what is wrong.

Recorded requests also show the conversation as the model sees it, in the Messages API's
content-block form (`.system`, `.messages`, `.tools`), so one test can assert the same thing of
both providers; `.body` and `.wire_messages` are what was sent. Chat Completions has no error
flag on tool results (`flags_tool_errors` is False).

Without a key set (`api_key=None`, the default) it answers any request, as a local model server
does; with one, a request without it or with another gets OpenAI's 401.

As a standalone upstream (same options as fake_anthropic)::

    python tests/fake_openai.py --port 0 --mode echo --tool-calls
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # as a script: fake_anthropic beside it

from fake_anthropic import (  # noqa: E402
    _ERROR_MESSAGES,
    DEFAULT_MODEL,
    FakeServer,
    RecordedRequest,
    Reply,
    TextOut,
    _chunk,
    _dumps,
    _estimate_input_tokens,
    _head,
    _split_json,
    cut_after,
    error,
    main,
    slow,
    stream_error,
    text,
    tool_use,
)

__all__ = [
    "FakeOpenAI",
    "OpenAIRequest",
    "cut_after",
    "error",
    "slow",
    "stream_error",
    "text",
    "tool_use",
]

# The `type` and `code` OpenAI's error bodies carry for each status, and its usual message.
_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to sample from this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
# An Anthropic error type scripted with `stream_error(type=...)` -> OpenAI's.
_STREAM_ERROR_TYPES = {
    "overloaded_error": "server_error",
    "rate_limit_error": "rate_limit_exceeded",
}
# The stop reason of a scripted reply -> finish_reason.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}
_ROLES = ("system", "developer", "user", "assistant", "tool")
_ANTHROPIC_WORDS = set(_ERROR_MESSAGES.values())


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


# --------------------------------------------------------------------------------------------
# Recorded requests: the wire, and the conversation in content-block form
# --------------------------------------------------------------------------------------------


class OpenAIRequest(RecordedRequest):
    __slots__ = ()

    @property
    def wire_messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    @property
    def system(self) -> Any:
        texts = [
            _text(m.get("content"))
            for m in self.wire_messages
            if m.get("role") in ("system", "developer")
        ]
        return "\n".join(texts) if texts else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return as_blocks(self.wire_messages)

    @property
    def tools(self) -> list[dict[str, Any]]:
        tools = self.body.get("tools", []) if isinstance(self.body, dict) else []
        return [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters", {}),
            }
            for t in tools
        ]


def as_blocks(wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat Completions messages as the Messages API would carry them: a single text as a plain
    string, tool calls as tool_use blocks, consecutive tool messages as one user message of
    tool_result blocks. System messages are left out (they are `.system`)."""
    out: list[dict[str, Any]] = []
    for message in wire:
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            continue
        if role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": _text(content),
            }
            previous = out[-1] if out else None
            if previous and previous["role"] == "user" and previous.get("_results"):
                previous["content"].append(result)
            else:
                out.append({"role": "user", "content": [result], "_results": True})
            continue
        calls = message.get("tool_calls") or []
        if not calls:
            if isinstance(content, list) and len(content) != 1:
                blocks = [{"type": "text", "text": p.get("text", "")} for p in content]
                out.append({"role": role, "content": blocks})
            else:
                out.append({"role": role, "content": _text(content)})
            continue
        blocks = [{"type": "text", "text": _text(content)}] if _text(content) else []
        for call in calls:
            raw = call["function"].get("arguments", "")
            try:
                arguments = json.loads(raw) if raw else {}
            except ValueError:
                arguments = raw
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": call["function"]["name"],
                    "input": arguments,
                }
            )
        out.append({"role": role, "content": blocks})
    for message in out:
        message.pop("_results", None)
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


# --------------------------------------------------------------------------------------------
# Checking a request as the real API does
# --------------------------------------------------------------------------------------------


def check_request(body: Any) -> None:
    """Raise BadRequest for what the real API refuses."""
    if not isinstance(body, dict):
        raise BadRequest("We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", "messages")
    if "stream_options" in body and body.get("stream") is not True:
        raise BadRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if "max_tokens" in body and "max_completion_tokens" in body:
        raise BadRequest("Use max_tokens or max_completion_tokens, not both.", "max_tokens")
    pending: list[str] = []  # tool calls of the last assistant message not yet answered
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            raise BadRequest(
                f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', "
                "'user', 'tool', and 'developer'.",
                f"{where}.role",
            )
        if role != "tool" and pending:
            raise BadRequest(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}",
                where,
            )
        content = message.get("content")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise BadRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"{where}.role",
                )
            pending.remove(call_id)
            _check_content(content, f"{where}.content")
        elif role == "assistant":
            calls = message.get("tool_calls")
            if calls is None:
                _check_content(content, f"{where}.content")
                continue
            if content is not None:
                _check_content(content, f"{where}.content")
            if not isinstance(calls, list) or not calls:
                raise BadRequest("'tool_calls' must be a non-empty array.", f"{where}.tool_calls")
            for j, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if (
                    call.get("type") != "function"
                    or not isinstance(call.get("id"), str)
                    or not isinstance(function, dict)
                    or not isinstance(function.get("name"), str)
                    or not isinstance(function.get("arguments"), str)
                ):
                    raise BadRequest(
                        "A tool call needs an id, type 'function' and a function with a name "
                        "and arguments (a string).",
                        f"{where}.tool_calls[{j}]",
                    )
                pending.append(call["id"])
        else:
            _check_content(content, f"{where}.content")
    if pending:
        raise BadRequest(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            f"responding to each 'tool_call_id'. Missing: {', '.join(pending)}",
            "messages",
        )
    for k, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise BadRequest("Each tool needs type 'function' and a function.", f"tools[{k}]")
        if not isinstance(function.get("name"), str):
            raise BadRequest("Missing required parameter: 'name'.", f"tools[{k}].function.name")
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise BadRequest("'parameters' must be an object.", f"tools[{k}].function")


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") in ("text", "image_url") for p in content
    ):
        return
    raise BadRequest(f"Invalid type for '{where}': expected a string or an array of parts.", where)


# --------------------------------------------------------------------------------------------
# Wire encoding
# --------------------------------------------------------------------------------------------


def _data(payload: Any) -> bytes:
    return b"data: " + _dumps(payload).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"


def _usage(reply: Reply, prompt: int, completion: int) -> dict[str, Any]:
    prompt += reply.cached_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _stream_items(
    reply: Reply, meta: dict[str, Any], input_tokens: int, include_usage: bool, ids: Iterator[int]
) -> Iterator[tuple[str, bytes]]:
    """Yield (kind, bytes) for a streamed reply: kind is 'frame' or 'delta' (a text piece or a
    piece of a tool call, the units `cut_after` and the pacing count)."""
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({**meta, "choices": [choice], **extra})

    yield "frame", chunk({"role": "assistant", "content": "", "refusal": None})
    n_deltas = 0
    call_index = 0
    for block in reply.blocks:
        if isinstance(block, TextOut):
            for piece in block.chunks:
                n_deltas += 1
                yield "delta", chunk({"content": piece})
            continue
        call_id = block.id or f"call_fake_{next(ids):06d}"
        head = {
            "index": call_index,
            "id": call_id,
            "type": "function",
            "function": {"name": block.name, "arguments": ""},
        }
        n_deltas += 1
        yield "delta", chunk({"tool_calls": [head]})
        pieces = block.chunks or _split_json(_dumps(block.input))
        for piece in pieces:
            if not piece:
                continue
            n_deltas += 1
            fragment = {"index": call_index, "function": {"arguments": piece}}
            yield "delta", chunk({"tool_calls": [fragment]})
        call_index += 1
    yield "frame", chunk({}, _FINISH.get(reply.stop_reason, reply.stop_reason))
    if include_usage and reply.send_usage:
        output = reply.output_tokens if reply.output_tokens is not None else max(1, n_deltas)
        payload = {**meta, "choices": [], "usage": _usage(reply, input_tokens, output)}
        yield "frame", _data(payload)
    yield "frame", _DONE


def _completion_json(
    reply: Reply, meta: dict[str, Any], input_tokens: int, ids: Iterator[int]
) -> bytes:
    texts, calls, n = [], [], 0
    for block in reply.blocks:
        if isinstance(block, TextOut):
            texts.append(block.text)
            n += len(block.chunks)
        else:
            call_id = block.id or f"call_fake_{next(ids):06d}"
            function = {"name": block.name, "arguments": _dumps(block.input)}
            calls.append({"id": call_id, "type": "function", "function": function})
            n += 3
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = calls
    finish = _FINISH.get(reply.stop_reason, reply.stop_reason)
    body = {
        **meta,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if reply.send_usage:
        output = reply.output_tokens if reply.output_tokens is not None else max(1, n)
        body["usage"] = _usage(reply, input_tokens, output)
    return _dumps(body).encode()


_USUAL = object()


def _error_body(status: int, message: str | None, param: Any, code: Any = _USUAL) -> bytes:
    err_type, usual_code, usual_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error")
    )
    error = {
        "message": message or usual_message,
        "type": err_type,
        "param": param,
        "code": usual_code if code is _USUAL else code,
    }
    return _dumps({"error": error}).encode()


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeOpenAI(FakeServer):
    """fake OpenAI Chat Completions server (see the module's docstring)."""

    name = "fake_openai"
    flags_tool_errors = False
    provider = "openai"
    url_env, key_env = "OPENAI_BASE_URL", "OPENAI_API_KEY"

    @property
    def url(self) -> str:
        """The base URL an OpenAI client is given (`.../v1`)."""
        return f"http://{self.host}:{self.port}/v1"

    async def _respond(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        raw_body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        path = target.split("?", 1)[0]
        n = next(self._ids)
        request_id = f"req_fake_{n:06d}"
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        if self.record:
            peer = writer.get_extra_info("peername") or ()
            self.requests.append(OpenAIRequest(method, path, headers, body, raw_body, tuple(peer)))

        async def fail(status: int, message: str, param: Any = None, code: Any = _USUAL) -> bool:
            payload = _error_body(status, message, param, code)
            return await self._send_json(writer, status, payload, request_id)

        if method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": DEFAULT_MODEL, "object": "model"}]}
            return await self._send_json(writer, 200, _dumps(models).encode(), request_id)
        if method != "POST" or path != "/v1/chat/completions":
            return await fail(404, f"Invalid URL ({method} {path})")
        if self.api_key is not None:
            auth = headers.get("authorization", "")
            key = auth[7:] if auth.lower().startswith("bearer ") else None
            if not key:
                return await fail(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    code=None,
                )
            if key != self.api_key:
                return await fail(401, f"Incorrect API key provided: {key[:3]}****{key[-4:]}.")
        try:
            check_request(body)
        except BadRequest as exc:
            return await fail(400, str(exc), exc.param)

        record = OpenAIRequest(method, path, headers, body, raw_body)
        neutral = {"system": record.system or "", "messages": record.messages}
        neutral["tools"] = record.tools
        reply = self._queue.popleft() if self._queue else self._auto_reply(neutral)
        if reply is None:
            return await fail(
                400,
                "fake_openai: nothing enqueued for this request; call "
                "fake_openai.enqueue(text(...)) or start it with default='echo'",
            )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            # error() words its default message as Anthropic does; OpenAI's own wording for
            # that status, where there is one, replaces it.
            message = reply.error_message
            if message in _ANTHROPIC_WORDS and reply.status in _ERRORS:
                message = None
            payload = _error_body(reply.status, message, None)
            return await self._send_json(writer, reply.status, payload, request_id, reply.headers)
        meta = {
            "id": f"chatcmpl-fake-{n:06d}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model or body["model"],
            "system_fingerprint": None,
        }
        input_tokens = (
            reply.input_tokens
            if reply.input_tokens is not None
            else _estimate_input_tokens(raw_body)
        )
        if body.get("stream") is True:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            items = _stream_items(reply, meta, input_tokens, include_usage, self._ids)
            return await self._send_stream(writer, reply, items, request_id)
        payload = _completion_json(reply, meta, input_tokens, self._ids)
        if reply.cut_after is not None:
            hdrs = [("content-type", "application/json"), ("content-length", str(len(payload)))]
            writer.write(_head(200, hdrs) + payload[: len(payload) // 2])
            await writer.drain()
            return False
        return await self._send_json(writer, 200, payload, request_id, reply.headers)

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        request_id: str,
        extra: Iterable[tuple[str, str]] = (),
    ) -> bool:
        hdrs = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload))),
            ("x-request-id", request_id),
            *extra,
        ]
        writer.write(_head(status, hdrs) + payload)
        await writer.drain()
        return True

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        reply: Reply,
        items: Iterator[tuple[str, bytes]],
        request_id: str,
    ) -> bool:
        writer.write(
            _head(
                200,
                (
                    ("content-type", "text/event-stream; charset=utf-8"),
                    ("cache-control", "no-cache"),
                    ("transfer-encoding", "chunked"),
                    ("x-request-id", request_id),
                    *reply.headers,
                ),
            )
        )
        paced = bool(reply.ttft or reply.token_delay)
        buffer: list[bytes] = []
        deltas = 0
        for kind, data in items:
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
                    err_type = reply.error_type or "server_error"
                    error = {
                        "message": reply.error_message or "The server had an error.",
                        "type": _STREAM_ERROR_TYPES.get(err_type, err_type),
                        "param": None,
                        "code": None,
                    }
                    buffer.append(_data({"error": error}))
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
    def fake_openai() -> Iterator[FakeOpenAI]:
        """A running fake Chat Completions API (default: fail loudly when nothing is enqueued)."""
        server = FakeOpenAI().start()
        try:
            yield server
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(None, FakeOpenAI))
