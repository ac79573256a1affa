"""OpenAI-compatible Chat Completions, so the openai SDK and existing front ends can use a bot.

    POST /v1/chat/completions   {"model": BOT, "messages": [...], "stream": bool, "user": str}
    GET  /v1/models             every loaded bot, as a model

The bot stays in charge: its system prompt, tools, memory policy and limits apply; client
`system`/`developer` messages, `tool` messages and client `tools` are ignored. The last
message must be a user message (text, or text parts). Two ways to keep the conversation:

- Without a session id (how OpenAI clients work): the conversation is exactly the `messages`
  the client sent. Their user and assistant text is the history the bot's memory policy
  applies to; nothing of any stored conversation is read. The turn is still stored (for logs,
  usage and budgets) under a session of its own that no other request ever reads.
- With `X-Session-Id` (or the non-standard body field `session_id`): the server keeps the
  conversation; only the last message is new input, the rest of `messages` is ignored.

`user` names the end user only without auth or for a trusted key; otherwise it is ignored
(the user is the key's principal).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field

from botrunner.events import Done, Error, Event, TextDelta
from botrunner.server import chat
from botrunner.server.bodies import CheckedBody
from botrunner.server.errors import ApiError, error_body
from botrunner.server.jsonbody import JSONBody, dumps
from botrunner.server.streaming import SSE, TurnStream, observed

router = APIRouter(prefix="/v1")
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}
_STATUS = {
    "timeout": 504,
    "rate_limited": 503,
    "overloaded": 503,
    "tool_limit": 502,
    "template_error": 500,
    # The conversation the client sent (or the stored one) no longer fits the model.
    "prompt_too_long": 400,
    "request_too_large": 413,
}
# The bot's own system prompt and tools apply; a client's are not part of the conversation.
_IGNORED_ROLES = frozenset({"system", "developer", "tool", "function"})


class CompletionIn(CheckedBody):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    user: str | None = None
    session_id: str | None = None
    stream_options: dict[str, Any] | None = None


def _text(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(
                    400, "unsupported_content", f"{where}: only text parts are supported."
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise ApiError(400, "invalid_request", f"{where}: content must be a string or text parts.")


def _conversation(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """A client-kept conversation as (earlier messages in wire shape, the new message).

    User and assistant text only (what an OpenAI client sees of a bot; tools run here).
    Consecutive messages of one role are joined, as the Messages API wants roles to
    alternate; assistant messages before the first user message (a greeting) are dropped;
    user messages left unanswered just before the last one are part of the new message."""
    merged: list[tuple[str, str]] = []
    for i, message in enumerate(messages[:-1]):
        role = message.get("role")
        if role not in ("user", "assistant"):
            if isinstance(role, str) and role in _IGNORED_ROLES:
                continue
            raise ApiError(
                400,
                "invalid_request",
                f"messages[{i}]: unknown role {role!r} (use user, assistant or system).",
            )
        text = "" if message.get("content") is None else _text(message, f"messages[{i}]")
        if not text.strip() or (role == "assistant" and not merged):
            continue
        if merged and merged[-1][0] == role:
            merged[-1] = (role, merged[-1][1] + "\n\n" + text)
        else:
            merged.append((role, text))
    new = _text(messages[-1], f"messages[{len(messages) - 1}]")
    if merged and merged[-1][0] == "user":
        new = merged.pop()[1] + "\n\n" + new
    history = [{"role": r, "content": [{"type": "text", "text": t}]} for r, t in merged]
    return history, new


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    live = chat.state(request).live
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "botrunner"}
            for name in sorted(live.bots)
        ],
    }


@router.post("/chat/completions")
async def completions(request: Request, body: CompletionIn):
    bot = chat.find_bot(request, body.model, api="openai")
    last = body.messages[-1]
    if last.get("role") != "user":
        raise ApiError(400, "last_message_not_user", "The last message must be a user message.")
    principal = getattr(request.state, "principal", None)
    named = body.user if principal is None or principal.trusted else None
    user = {"id": named} if named else None
    session = request.headers.get("x-session-id") or body.session_id
    if session:  # the server keeps the conversation: only the last message is new
        message = _text(last, f"messages[{len(body.messages) - 1}]")
        prepared, timer = await chat.begin(request, bot, session, message, user, "openai")
    else:
        history, message = _conversation(body.messages)
        # A session of its own: stored for logs, usage and budgets, never read by another.
        own = "oai-" + uuid.uuid4().hex
        prepared, timer = await chat.begin(
            request, bot, own, message, user, "openai", history=history
        )
    events = observed(prepared, timer)
    meta = {
        "id": "chatcmpl-" + request.state.request_id,
        "created": int(time.time()),
        "model": bot.name,
    }
    rid = request.state.request_id
    if body.stream:
        usage = bool((body.stream_options or {}).get("include_usage"))
        return TurnStream(_chunks(events, meta, usage, rid), media_type=SSE)
    return await _complete(events, meta, rid)


async def _complete(
    events: AsyncGenerator[Event, None], meta: dict[str, Any], request_id: str
) -> JSONBody:
    text: list[str] = []
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, Error):
                status = _STATUS.get(event.code, 502)
                body = error_body(status, event.code, event.message, request_id)
                return JSONBody(body, status)
            elif isinstance(event, Done):
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(text)},
                    "finish_reason": _FINISH.get(event.stop_reason, "stop"),
                    "logprobs": None,
                }
                body = {**meta, "object": "chat.completion", "choices": [choice]}
                body["usage"] = _usage(event)
                return JSONBody(body)
    finally:
        await events.aclose()
    raise ApiError(502, "upstream", "The reply ended without a result.")


async def _chunks(
    events: AsyncGenerator[Event, None], meta: dict[str, Any], include_usage: bool, request_id: str
) -> AsyncGenerator[bytes, None]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**meta, "object": "chat.completion.chunk", "choices": [choice]})

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for event in events:
            if isinstance(event, TextDelta):
                yield chunk({"content": event.text})
            elif isinstance(event, Error):
                status = _STATUS.get(event.code, 502)
                yield _sse(error_body(status, event.code, event.message, request_id))
                return
            elif isinstance(event, Done):
                yield chunk({}, _FINISH.get(event.stop_reason, "stop"))
                if include_usage:
                    yield _sse(
                        {
                            **meta,
                            "object": "chat.completion.chunk",
                            "choices": [],
                            "usage": _usage(event),
                        }
                    )
        yield b"data: [DONE]\n\n"
    finally:
        await events.aclose()


def _usage(done: Done) -> dict[str, Any] | None:
    """OpenAI's usage object; None (no usage) when the model's provider did not report the
    counts: OpenAI's fields are required numbers, and a made-up 0 would be wrong. Its
    prompt_tokens is the whole prompt (cache reads and writes included); the part read from the
    prompt cache is prompt_tokens_details.cached_tokens."""
    u = done.usage
    if u.input_tokens is None or u.output_tokens is None:
        return None
    prompt = u.prompt_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
    }
    if u.cache_read_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": u.cache_read_tokens}
    return usage


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + dumps(data).encode() + b"\n\n"
