"""A stored conversation as `GET /bots/{name}/chat/{session}` returns it.

By default, what the conversation showed the end user: their messages, the assistant's text,
and each tool call by name and outcome (`ok`, `error`, or `not_run` when the turn ended before
the tool ran). Tool results themselves are for the model only, as in the stream: a tool's
error body may hold a stack trace, paths, SQL or a DSN. A trusted principal may ask for the
full record (`?full=true`): every message with its raw content blocks, tool results included.
"""

from __future__ import annotations

from typing import Any

from botrunner.store.base import StoredMessage


def for_end_user(messages: list[StoredMessage]) -> list[dict[str, Any]]:
    outcomes: dict[str, str] = {}
    for m in messages:
        for block in m.content:
            if block.get("type") == "tool_result":
                outcome = "error" if block.get("is_error") else "ok"
                outcomes[str(block.get("tool_use_id"))] = outcome
    shown = []
    for m in messages:
        if m.role == "user" and _only_tool_results(m.content):
            continue  # shown as the outcome of the calls they answer
        item = _common(m)
        if m.role == "assistant":
            item["tool_calls"] = [
                {
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "outcome": outcomes.get(str(block.get("id")), "not_run"),
                }
                for block in m.content
                if block.get("type") == "tool_use"
            ]
        shown.append(item)
    return shown


def full_record(messages: list[StoredMessage]) -> list[dict[str, Any]]:
    return [{**_common(m), "content": m.content} for m in messages]


def _common(m: StoredMessage) -> dict[str, Any]:
    return {
        "turn": m.turn,
        "role": m.role,
        "status": m.status,
        "created": m.created,
        "text": "".join(b.get("text", "") for b in m.content if b.get("type") == "text"),
    }


def _only_tool_results(content: list[dict[str, Any]]) -> bool:
    return bool(content) and all(b.get("type") == "tool_result" for b in content)
