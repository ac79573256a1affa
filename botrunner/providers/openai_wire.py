"""The stored conversation (Messages-API content blocks, the same whichever provider wrote it)
translated to Chat Completions messages, at the OpenAI provider's edge.

    {"role": "user", "content": [text...]}              -> {"role": "user", "content": "..."}
    {"role": "assistant", "content": [text, tool_use]}  -> {"role": "assistant", "content": "...",
                                                            "tool_calls": [{"type": "function"}]}
    {"role": "user", "content": [tool_result, ...]}     -> one {"role": "tool"} message each

Chat Completions has no error flag on a tool result: botrunner's error results say what went
wrong in their text, which is what the model reads. Thinking blocks (from an Anthropic model,
before the bot switched provider) are not sent: no other API can check their signatures.
"""

from __future__ import annotations

import json
from typing import Any


def wire_messages(system: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        role, content = message["role"], message["content"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "assistant":
            out.append(_assistant(content))
        else:
            _user(content, out)
    return out


def wire_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tools in the Messages API form (`Tool.to_api()`) as Chat Completions functions."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool["input_schema"],
            },
        }
        for tool in tools
    ]


def _assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    texts = [b["text"] for b in blocks if b.get("type") == "text"]
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": arguments(b.get("input"))},
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant"}
    if texts or not calls:  # content may be left out only when there are tool calls
        message["content"] = "".join(texts)
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[dict[str, Any]], out: list[dict[str, Any]]) -> None:
    # Tool results first: each answers a call of the assistant message just before, and
    # Chat Completions wants them straight after it.
    parts = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block["tool_use_id"],
                    "content": _result_text(block.get("content")),
                }
            )
        elif kind == "text":
            parts.append(block["text"])
    if len(parts) == 1:
        out.append({"role": "user", "content": parts[0]})
    elif parts:
        out.append({"role": "user", "content": [{"type": "text", "text": t} for t in parts]})


def arguments(value: Any) -> str:
    """A tool call's input as the JSON text Chat Completions carries. Input that was not valid
    JSON when the model sent it is kept as that text, so it goes back exactly as it came."""
    if isinstance(value, str):
        return value
    return json.dumps({} if value is None else value, ensure_ascii=False)


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)
