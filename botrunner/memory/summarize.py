"""The `summarize` strategy: a running summary plus the turns it does not cover yet."""

from __future__ import annotations

from typing import Any

from botrunner.bot import Bot
from botrunner.memory.base import Context, RecentStrategy, Summarizer, earlier_turns
from botrunner.store.base import Conversation, ConversationStore, RecentTurns

SUMMARY_HEADER = "Summary of the earlier conversation:"
SUMMARY_INSTRUCTIONS = (
    "You maintain a running summary of a conversation between a user and an assistant. "
    "You are given the summary so far (if any) and the turns that follow it. Reply with an "
    "updated summary that folds the new turns in: keep names, facts, numbers, decisions, the "
    "user's preferences and open questions; drop small talk. Plain prose, at most 250 words, "
    "and nothing but the summary."
)


class SummarizeMemory(RecentStrategy):
    """A running summary (in the system prompt) plus, verbatim, every completed turn it does
    not cover yet.

    After a turn, once at least `summarize_every` completed turns have fallen out of the
    recent window (the last `max_turns - 1`) since `summary_upto`, they are folded into the
    summary with one model call. So between folds the model sees the window plus the up to
    `summarize_every - 1` turns waiting to be folded: no turn is ever in neither the summary
    nor the messages. Verbatim turns are capped at `max_turns - 1 + summarize_every - 1` (only
    reached if summaries keep failing), and a fold reads at most `4 * summarize_every` turns,
    so the per-turn cost stays bounded either way.
    """

    def recent(self, bot: Bot) -> RecentTurns:
        cap = earlier_turns(bot.memory) + max(bot.memory.summarize_every, 1) - 1
        return RecentTurns(cap, after_summary=True)

    def from_recent(self, conv: Conversation, bot: Bot, messages: list[dict[str, Any]]) -> Context:
        suffix = f"\n\n{SUMMARY_HEADER}\n{conv.summary}" if conv.summary else ""
        return Context(messages, suffix)

    async def after_turn(
        self, store: ConversationStore, conv: Conversation, bot: Bot, summarize: Summarizer
    ) -> None:
        every = max(bot.memory.summarize_every, 1)
        window = earlier_turns(bot.memory)
        start: int | None = None  # first turn of the next message's window (None: none yet)
        if window:
            recent = await store.turn_numbers(conv, window)
            if len(recent) < window:
                return  # nothing has left the window yet
            start = recent[0]
        folded = await store.turn_numbers(conv, 4 * every, before=start, after=conv.summary_upto)
        if len(folded) < every:
            return
        messages = await store.turns(conv, folded)
        prompt = summary_prompt(conv.summary, messages)
        summary = await summarize(SUMMARY_INSTRUCTIONS, prompt)
        await store.set_summary(conv, summary.strip(), folded[-1])


def summary_prompt(summary: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summarizer's input: ONE user message holding the old summary and the turns to fold
    in as plain text (tool calls rendered as text, so no tool definitions are needed)."""
    parts = []
    if summary:
        parts.append(f"Summary so far:\n{summary}")
    parts.append(f"Conversation to fold in:\n{render_transcript(messages)}")
    return [{"role": "user", "content": [{"type": "text", "text": "\n\n".join(parts)}]}]


def render_transcript(messages: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    tools: dict[str, str] = {}
    for message in messages:
        speaker = "User" if message["role"] == "user" else "Assistant"
        for block in message["content"]:
            kind = block.get("type")
            if kind == "text":
                lines.append(f"{speaker}: {block.get('text', '')}")
            elif kind == "tool_use":
                tools[block.get("id", "")] = block.get("name", "")
                lines.append(f"Assistant called tool {block.get('name')} with {block.get('input')}")
            elif kind == "tool_result":
                content = block.get("content")
                if isinstance(content, list):
                    content = " ".join(
                        b.get("text", "") for b in content if b.get("type") == "text"
                    )
                name = tools.get(block.get("tool_use_id", ""), "tool")
                error = " (error)" if block.get("is_error") else ""
                lines.append(f"Tool {name} returned{error}: {content}")
    return "\n".join(lines)
