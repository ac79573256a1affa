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
    """A running summary (in the system prompt, after the rendered prompt) plus, verbatim, the
    completed turns it does not cover yet: at most `max_turns - 1` of them.

    After a turn, once more than `max_turns - 1` turns wait to be folded, the oldest
    `summarize_every` of them (at most `max_turns - 1`, at least 1) are folded into the summary
    with one model call. Between folds neither the summary nor the start of the verbatim turns
    changes, so both are read from the prompt cache; the new message goes with between
    `max_turns - summarize_every` and `max_turns - 1` verbatim turns, like `window`. A message
    sent while a fold is still being written (a second or two after a turn) goes with the last
    `max_turns - 1` turns: the oldest waiting one is then briefly in neither the summary nor
    the messages. A fold reads at most `4 * summarize_every` turns, so the per-turn cost stays
    bounded even if summaries keep failing.
    """

    def recent(self, bot: Bot) -> RecentTurns:
        return RecentTurns(earlier_turns(bot.memory), after_summary=True)

    def from_recent(self, conv: Conversation, bot: Bot, messages: list[dict[str, Any]]) -> Context:
        suffix = f"\n\n{SUMMARY_HEADER}\n{conv.summary}" if conv.summary else ""
        return Context(messages, suffix)

    async def after_turn(
        self, store: ConversationStore, conv: Conversation, bot: Bot, summarize: Summarizer
    ) -> None:
        every = max(bot.memory.summarize_every, 1)
        window = earlier_turns(bot.memory)
        waiting = await store.turn_numbers(conv, window + 1, after=conv.summary_upto)
        if len(waiting) <= window:
            return  # the next message still sends every turn the summary does not cover
        keep = window + 1 - min(every, max(window, 1))  # verbatim turns after the fold
        start: int | None = None  # the first turn kept verbatim (None: fold them all)
        if keep:
            start = (await store.turn_numbers(conv, keep))[0]
        folded = await store.turn_numbers(conv, 4 * every, before=start, after=conv.summary_upto)
        if not folded:
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
