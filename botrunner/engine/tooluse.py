"""The tool calls of one model reply: run under the bot's caps, each answered by a result.

The model's inputs are untrusted: `ToolRunner` validates them against the tool's schema and
fills its request templates; this module only decides which calls run, how many at once, and
turns each outcome into the `tool_result` block the next request carries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from botrunner.bot import Bot
from botrunner.tools import ToolOutcome, ToolRunner

# How many calls of one reply run at once: one conversation must not take every connection of
# the tool client that all bots and users share.
TOOL_CONCURRENCY = 4


async def run_calls(bot: Bot, tools: ToolRunner, calls: list[dict[str, Any]]) -> list[ToolOutcome]:
    """One reply's calls, in order: at most `max_tool_calls_per_reply` are made,
    TOOL_CONCURRENCY at a time; the rest get an error result (every tool_use needs its
    tool_result)."""
    cap = bot.limits.max_tool_calls_per_reply
    gate = asyncio.Semaphore(TOOL_CONCURRENCY)

    async def run(call: dict[str, Any]) -> ToolOutcome:
        async with gate:
            tool = bot.tool(call["name"])
            if tool is None:
                return ToolOutcome(f"There is no tool called {call['name']!r}.", is_error=True)
            return await tools.run(tool, call.get("input"), bot.secrets)

    made = await asyncio.gather(*(run(call) for call in calls[:cap]))
    skipped = ToolOutcome(
        f"Not run: a reply may make at most {cap} tool calls (limits.max_tool_calls_per_reply)."
        f" The first {cap} were made; call the others again after reading their results.",
        is_error=True,
    )
    return [*made, *(skipped for _ in calls[cap:])]


def tool_result(tool_use_id: str, outcome: ToolOutcome) -> dict[str, Any]:
    """The `tool_result` content block that answers the call `tool_use_id`."""
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": outcome.content,
    }
    if outcome.is_error:
        block["is_error"] = True
    return block
