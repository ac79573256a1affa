"""Model exchanges as plain JSON: what `botrunner test` records in a cassette and compares on
replay.

A request is kept as the provider receives it (model, parameters, system prompt, messages,
tools), in JSON form, and two requests are the same when their JSON is: anything botrunner would
send differently (an edited prompt, a new tool, another memory window) shows up. `request_diff`
says briefly what changed, for a person deciding whether to re-record.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from botrunner.events import Usage
from botrunner.providers.base import AssistantMessage, ModelRequest, ProviderError

# The order in which a diff reports the parts of a request.
FIELDS = ("model", "max_tokens", "temperature", "system", "tools", "messages")
# A diff longer than this is cut: it is a hint about what changed, not a review.
MAX_DIFF_LINES = 14
# Longer lines are clipped around where they differ.
LINE_CHARS = 110


def request_data(request: ModelRequest) -> dict[str, Any]:
    """The request as JSON values, in `FIELDS` order (`reasoning_effort` after them, when the
    bot sets it: cassettes recorded before it existed stay the same)."""
    data = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "system": request.system,
        "tools": request.tools,
        "messages": request.messages,
    }
    if request.reasoning_effort is not None:
        data["reasoning_effort"] = request.reasoning_effort
    return plain(data)


def reply_data(message: AssistantMessage) -> dict[str, Any]:
    return {
        "content": plain(message.content),
        "stop_reason": message.stop_reason,
        "usage": message.usage.to_dict(),
    }


def reply_message(data: Mapping[str, Any]) -> AssistantMessage:
    usage = data.get("usage") or {}

    def count(key: str) -> int | None:  # None: the model server did not report it
        value = usage.get(key)
        return None if value is None else int(value)

    return AssistantMessage(
        content=list(data.get("content") or []),
        stop_reason=str(data.get("stop_reason") or "end_turn"),
        usage=Usage(count("input_tokens"), count("output_tokens"), count("cache_read_tokens")),
    )


def error_data(exc: ProviderError) -> dict[str, str]:
    data = {"code": exc.code, "message": exc.message}
    if exc.detail:  # what the API said, already without secrets: for the operator
        data["detail"] = exc.detail
    return data


def plain(value: Any) -> Any:
    """`value` as JSON would give it back (mappings -> dicts, tuples -> lists)."""
    return json.loads(json.dumps(value, default=_default, ensure_ascii=False))


def _default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def request_diff(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """What differs between two requests, as short `- recorded` / `+ now` lines per part."""
    lines: list[str] = []
    extra = sorted((set(recorded) | set(current)) - set(FIELDS))
    for field in (*FIELDS, *extra):
        was, now = recorded.get(field), current.get(field)
        if was == now:
            continue
        if field == "system":
            lines += ["system:", *_text_diff(str(was or ""), str(now or ""))]
        elif field == "messages":
            lines += _messages_diff(list(was or []), list(now or []))
        elif field == "tools":
            lines += ["tools:", *_text_diff(_pretty(was), _pretty(now))]
        else:
            lines.append(f"{field}: {json.dumps(was)} -> {json.dumps(now)}")
    if len(lines) > MAX_DIFF_LINES:
        more = len(lines) - MAX_DIFF_LINES + 1
        lines = [*lines[: MAX_DIFF_LINES - 1], f"... ({more} more lines)"]
    return "\n".join(lines)


def _messages_diff(was: list[Any], now: list[Any]) -> list[str]:
    for index, (a, b) in enumerate(zip(was, now, strict=False)):
        if a != b:
            role = b.get("role", "?") if isinstance(b, dict) else "?"
            return [f"messages[{index}] ({role}):", *_text_diff(message_lines(a), message_lines(b))]
    shorter, longer, sign = (now, was, "-") if len(was) > len(now) else (was, now, "+")
    lines = [f"messages: {len(was)} recorded, {len(now)} now"]
    for message in longer[len(shorter) :]:
        lines += [f"  {sign} {line}" for line in message_lines(message).splitlines()]
    return lines


def message_lines(message: Any) -> str:
    """A message as readable lines: its text, and tool calls and results one line each."""
    if not isinstance(message, dict):
        return _pretty(message)
    role, content = message.get("role", "?"), message.get("content")
    if isinstance(content, str):
        return f"{role}: {content}"
    lines = []
    for block in content or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            lines.append(f"{role}: {block.get('text', '')}")
        elif kind == "tool_use":
            lines.append(f"tool call {block.get('name')} {json.dumps(block.get('input'))}")
        elif kind == "tool_result":
            error = " (error)" if block.get("is_error") else ""
            lines.append(f"tool result{error}: {_flat(block.get('content'))}")
        else:
            lines.append(json.dumps(block, ensure_ascii=False))
    return "\n".join(lines)


def _flat(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True)


def _text_diff(was: str, now: str) -> list[str]:
    """Changed lines only (no context), each pair clipped around its first difference."""
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, was.splitlines(), now.splitlines(), autojunk=False)
    a_lines, b_lines = was.splitlines(), now.splitlines()
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed, added = a_lines[i1:i2], b_lines[j1:j2]
        for k, line in enumerate(removed):
            other = added[k] if k < len(added) else ""
            out.append("  - " + _clip(line, _first_difference(line, other)))
        for k, line in enumerate(added):
            other = removed[k] if k < len(removed) else ""
            out.append("  + " + _clip(line, _first_difference(line, other)))
    return out or ["  (differs only in line endings or trailing space)"]


def _first_difference(a: str, b: str) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def _clip(line: str, at: int) -> str:
    if len(line) <= LINE_CHARS:
        return line
    start = max(0, min(at - LINE_CHARS // 3, len(line) - LINE_CHARS))
    text = line[start : start + LINE_CHARS]
    return ("..." if start else "") + text + ("..." if start + LINE_CHARS < len(line) else "")
