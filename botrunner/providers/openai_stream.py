"""Chat Completions stream chunks, accumulated into the final message in the stored
(content-block) form as they arrive.

A chunk carries `choices[0].delta` with text (`content`, or `refusal`) and tool-call fragments
(`tool_calls[i]`: the id and name first, then pieces of the JSON `arguments`), then a
`finish_reason`; with `stream_options.include_usage`, a last chunk with no choices carries
`usage` (some servers put it on other chunks too); `data: [DONE]` ends the stream. Reasoning text some servers stream beside the reply
(`reasoning_content`, `reasoning`) is neither shown nor kept.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from botrunner.events import Usage
from botrunner.providers.base import AssistantMessage
from botrunner.providers.errors import StreamCut, StreamError
from botrunner.providers.sse import DONE

# finish_reason -> the stop reason botrunner (and the Messages API) uses.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class _Call:
    __slots__ = ("id", "name", "parts")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.parts: list[str] = []


class Accumulator:
    """Builds the final message from the decoded chunks; returns text as it arrives."""

    __slots__ = ("parts", "calls", "finish_reason", "usage", "done")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, event: dict[str, Any]) -> str | None:
        if event is DONE:
            self.done = True
            return None
        if event.get("usage"):  # the last chunk, or (some servers) every chunk
            self.usage = event["usage"]
        choices = event.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or {}
            piece = delta.get("content") or delta.get("refusal")
            if delta.get("tool_calls"):
                self._calls(delta["tool_calls"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            if piece:
                self.parts.append(piece)
                return piece
            return None
        if event.get("error"):  # an error sent inside the stream
            error = event["error"]
            if not isinstance(error, dict):
                error = {"message": str(error)}
            raise StreamError(str(error.get("type") or "server_error"), str(error.get("message")))
        return None

    def _calls(self, fragments: list[dict[str, Any]]) -> None:
        for position, fragment in enumerate(fragments):
            index = fragment.get("index", position)
            call = self.calls.get(index)
            if call is None:
                call = self.calls[index] = _Call()
            if fragment.get("id"):
                call.id = fragment["id"]
            function = fragment.get("function") or {}
            if function.get("name") and not call.name:
                call.name = function["name"]
            if function.get("arguments"):
                call.parts.append(function["arguments"])

    def finish(self) -> AssistantMessage:
        # A server may end without [DONE]; one that said why it stopped has finished.
        if not self.done and self.finish_reason is None:
            raise StreamCut()
        content: list[dict[str, Any]] = []
        if self.parts:
            content.append({"type": "text", "text": "".join(self.parts)})
        for index in sorted(self.calls):
            call = self.calls[index]
            content.append(
                {
                    "type": "tool_use",
                    # A server that sends no id still needs one to pair the result with.
                    "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
                    "name": call.name,
                    "input": _input("".join(call.parts)),
                }
            )
        if self.calls and self.finish_reason in (None, "stop", "tool_calls", "function_call"):
            # Some servers say "stop" after tool calls; the calls are what counts.
            stop_reason = "tool_use"
        else:
            reason = self.finish_reason or "stop"
            stop_reason = STOP_REASONS.get(reason, reason)
        return AssistantMessage(content=content, stop_reason=stop_reason, usage=_usage(self.usage))


def _input(raw: str) -> Any:
    """The arguments as an object; text that is not a JSON object is kept as it came, and the
    tool's input check tells the model what is wrong with it."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def _usage(usage: dict[str, Any] | None) -> Usage:
    """Prompt tokens read from the cache are counted apart (as `Usage` says); a server that sent
    no usage leaves every count unknown."""
    if not usage:
        return Usage()
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if isinstance(prompt, int) and isinstance(cached, int):
        prompt -= cached
    return Usage(
        prompt if isinstance(prompt, int) else None,
        usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None,
        cached if isinstance(cached, int) else None,
    )
