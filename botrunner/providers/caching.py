"""Prompt caching for the Messages API: where the cache breakpoints of a request go.

The API caches a request's prefix in the order tools, system, messages; a `cache_control`
breakpoint on a block writes the prefix ending at that block to the cache, and a later request
whose prefix is byte-identical up to there reads it back at a tenth of the input price (a
write costs 1.25 times the input price, 2 times with the 1-hour TTL). At most four
breakpoints are allowed per request. botrunner places them on the parts that repeat:

1. the last block of the newest message: the whole request is written, so the next request
   (the next round of tool calls, or the user's next message) reads all of it back;
2. the last block of the message before it: where the previous request of the conversation
   wrote. A read looks back at most 20 blocks from a breakpoint, so without this one a long
   newest message (or memory that adds text to it, as `retrieval` does) could hide the
   previous write; with it the read is exact;
3. the rendered system prompt, in a block of its own (a running summary follows in a second
   block, so updating the summary does not lose the cached system prompt);
4. the last tool definition, so the tools stay cached when the system prompt changes.

A prefix shorter than the model's minimum cacheable length (see `catalogue`) is simply not
cached, without an error; a breakpoint there costs nothing. What invalidates a cached prefix is
any change before its breakpoint: another model, a changed tool, a changed system prompt, a
different earlier message. So the engine keeps the rendered system prompt byte-identical
across the turns of a conversation, and memory drops old turns several at a time.
"""

from __future__ import annotations

from typing import Any

MAX_BREAKPOINTS = 4

# Blocks that may carry cache_control (not thinking blocks, not empty text).
_MARKABLE = frozenset(("text", "tool_use", "tool_result", "image", "document", "search_result"))


def cache_control(ttl: str) -> dict[str, str]:
    """The marker for a breakpoint; 5 minutes is the API's default TTL."""
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def system_blocks(prompt: str, extra: str, ttl: str) -> list[dict[str, Any]]:
    """The system prompt as blocks: the rendered prompt (marked) and then `extra` (the part
    memory adds, such as a summary), which changes more often."""
    blocks: list[dict[str, Any]] = []
    if prompt:
        blocks.append({"type": "text", "text": prompt, "cache_control": cache_control(ttl)})
    if extra:
        blocks.append({"type": "text", "text": extra})
    return blocks


def mark_tools(tools: list[dict[str, Any]], ttl: str) -> list[dict[str, Any]]:
    """The tools with a breakpoint on the last definition (a copy; the caller's are kept)."""
    if not tools:
        return tools
    return [*tools[:-1], {**tools[-1], "cache_control": cache_control(ttl)}]


def mark_messages(messages: list[dict[str, Any]], ttl: str) -> list[dict[str, Any]]:
    """The messages with breakpoints on the last markable block of the last two messages.
    Marked messages and blocks are copies: stored messages are never changed."""
    marked = list(messages)
    for index in range(max(len(marked) - 2, 0), len(marked)):
        marked[index] = _mark_message(marked[index], ttl)
    return marked


def _mark_message(message: dict[str, Any], ttl: str) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, str):
        if not content:
            return message
        block = {"type": "text", "text": content, "cache_control": cache_control(ttl)}
        return {**message, "content": [block]}
    for i in range(len(content) - 1, -1, -1):
        block = content[i]
        if block.get("type") in _MARKABLE and (block.get("type") != "text" or block.get("text")):
            blocks = list(content)
            blocks[i] = {**block, "cache_control": cache_control(ttl)}
            return {**message, "content": blocks}
    return message


def count_breakpoints(params: dict[str, Any]) -> int:
    """How many blocks of a request carry cache_control (for tests and checks)."""
    found = 0
    for tool in params.get("tools") or ():
        found += "cache_control" in tool
    system = params.get("system")
    if isinstance(system, list):
        found += sum("cache_control" in block for block in system)
    for message in params.get("messages") or ():
        if isinstance(message.get("content"), list):
            found += sum("cache_control" in block for block in message["content"])
    return found
