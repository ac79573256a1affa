"""Anthropic's streaming events, accumulated into the final message as they arrive."""

from __future__ import annotations

import json
from typing import Any

from botrunner.events import Usage
from botrunner.providers.base import AssistantMessage
from botrunner.providers.errors import StreamCut, StreamError


class Accumulator:
    """Builds the final message from the raw stream events; returns text as it arrives."""

    __slots__ = ("blocks", "parts", "stop_reason", "input_tokens", "output_tokens", "done")

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.parts: dict[int, list[str]] = {}
        self.stop_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.done = False

    def feed(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event["delta"]
            dkind = delta.get("type")
            if dkind == "text_delta":
                piece = delta["text"]
                self.parts[event["index"]].append(piece)
                return piece
            if dkind == "input_json_delta":
                self.parts[event["index"]].append(delta["partial_json"])
            elif dkind == "thinking_delta":
                self.parts[event["index"]].append(delta["thinking"])
            elif dkind == "signature_delta":
                self.blocks[event["index"]]["signature"] = delta["signature"]
            return None
        if kind == "content_block_start":
            block = event["content_block"]
            btype = block.get("type")
            if btype == "text":
                self.blocks[event["index"]] = {"type": "text", "text": ""}
            elif btype == "tool_use":
                self.blocks[event["index"]] = {
                    "type": "tool_use",
                    "id": block["id"],
                    "name": block["name"],
                    "input": {},
                }
            elif btype == "thinking":
                self.blocks[event["index"]] = {"type": "thinking", "thinking": "", "signature": ""}
            else:
                self.blocks[event["index"]] = dict(block)
            self.parts[event["index"]] = []
            return None
        if kind == "content_block_stop":
            block = self.blocks[event["index"]]
            parts = self.parts.pop(event["index"], [])
            btype = block["type"]
            if btype == "text":
                block["text"] = "".join(parts)
            elif btype == "tool_use":
                raw = "".join(parts)
                block["input"] = json.loads(raw) if raw else {}
            elif btype == "thinking":
                block["thinking"] = "".join(parts)
            return None
        if kind == "message_start":
            usage = event["message"].get("usage") or {}
            self.input_tokens = usage.get("input_tokens") or 0
            self.output_tokens = usage.get("output_tokens") or 0
            return None
        if kind == "message_delta":
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            if stop_reason is not None:
                self.stop_reason = stop_reason
            usage = event.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self.output_tokens = usage["output_tokens"]
            if usage.get("input_tokens") is not None:
                self.input_tokens = usage["input_tokens"]
            return None
        if kind == "message_stop":
            self.done = True
        elif kind == "error":
            err = event.get("error") or {}
            raise StreamError(str(err.get("type") or "api_error"), str(err.get("message") or ""))
        return None  # ping, and event types added after this was written

    def finish(self) -> AssistantMessage:
        if not self.done:
            raise StreamCut()
        return AssistantMessage(
            content=[self.blocks[i] for i in sorted(self.blocks)],
            stop_reason=self.stop_reason or "end_turn",
            usage=Usage(self.input_tokens, self.output_tokens),
        )
