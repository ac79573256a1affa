"""OpenAI-compatible Chat Completions, so the openai SDK and existing front ends can use a bot.

    POST /v1/chat/completions   {"model": BOT, "messages": [...], "stream": bool, "user": str}
    GET  /v1/models             every loaded bot, as a model

The bot stays in charge: its system prompt, tools, memory and limits apply. Only the *last*
message is used, and it must be a user message (text, or text parts); client `system`
messages, earlier messages and client `tools` are ignored, since the conversation is stored
server-side. The session is the `X-Session-Id` header, else the non-standard body field
`session_id`, else derived from the bot and the first user message of `messages` (so a client
that resends the whole history stays in one session; two chats that open with the same words
share one: send `X-Session-Id` to keep them apart). `user` names the end user only without auth
or for a trusted key; otherwise it is ignored (the user is the key's principal).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from botrunner.events import Done, Error, Event, TextDelta
from botrunner.server import chat
from botrunner.server.errors import ApiError, error_body
from botrunner.server.streaming import SSE, TurnStream, observed

router = APIRouter(prefix="/v1")
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
_STATUS = {
    "timeout": 504,
    "rate_limited": 503,
    "overloaded": 503,
    "tool_limit": 502,
    "template_error": 500,
}


class CompletionIn(BaseModel):
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


def _session(request: Request, body: CompletionIn) -> str:
    given = request.headers.get("x-session-id") or body.session_id
    if given:
        return given
    first = next((m for m in body.messages if m.get("role") == "user"), body.messages[-1])
    seed = f"{body.model}\0{_text(first, 'messages')}".encode()
    return "oai-" + hashlib.sha256(seed).hexdigest()[:24]


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
    message = _text(last, f"messages[{len(body.messages) - 1}]")
    principal = getattr(request.state, "principal", None)
    named = body.user if principal is None or principal.trusted else None
    user = {"id": named} if named else None
    prepared, timer = await chat.begin(
        request, bot, _session(request, body), message, user, "openai"
    )
    events = observed(prepared, timer)
    meta = {
        "id": "chatcmpl-" + request.state.request_id,
        "created": int(time.time()),
        "model": bot.name,
    }
    if body.stream:
        usage = bool((body.stream_options or {}).get("include_usage"))
        return TurnStream(_chunks(events, meta, usage), media_type=SSE)
    return await _complete(events, meta)


async def _complete(events: AsyncGenerator[Event, None], meta: dict[str, Any]) -> JSONResponse:
    text: list[str] = []
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, Error):
                status = _STATUS.get(event.code, 502)
                return JSONResponse(error_body(status, event.code, event.message), status)
            elif isinstance(event, Done):
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(text)},
                    "finish_reason": _FINISH.get(event.stop_reason, "stop"),
                    "logprobs": None,
                }
                body = {**meta, "object": "chat.completion", "choices": [choice]}
                body["usage"] = _usage(event)
                return JSONResponse(body)
    finally:
        await events.aclose()
    raise ApiError(502, "upstream", "The reply ended without a result.")


async def _chunks(
    events: AsyncGenerator[Event, None], meta: dict[str, Any], include_usage: bool
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
                yield _sse(error_body(status, event.code, event.message))
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


def _usage(done: Done) -> dict[str, int]:
    u = done.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"
