"""Memory policies: which earlier turns are sent to the model with a new message.

The full transcript is always stored; a strategy only decides what is sent. Strategies send
whole *completed* turns only (user, assistant[, user(tool_result), assistant]...), oldest first,
so their output is always a valid start of a Messages API request: it begins with a user
message, roles alternate, it ends with an assistant message (the engine appends the new user
message), and a tool_use is never separated from its tool_result. Failed, stopped and pending
turns are never sent (the store only returns completed turns, and refuses to mark a malformed
turn completed).

Every read is bounded by what is sent: the store answers "the last N completed turns" and
"these turns" from indexes, so a turn costs the same with 10 or 10,000 stored messages.

`max_turns` counts the new message: window, summarize and retrieval send the last
`max_turns - 1` earlier completed turns, so `max_turns` user turns reach the model.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botrunner.bot import Bot, Memory
from botrunner.store.base import Conversation, ConversationStore

Summarizer = Callable[[str, list[dict[str, Any]]], Awaitable[str]]

SUMMARY_HEADER = "Summary of the earlier conversation:"
SUMMARY_INSTRUCTIONS = (
    "You maintain a running summary of a conversation between a user and an assistant. "
    "You are given the summary so far (if any) and the turns that follow it. Reply with an "
    "updated summary that folds the new turns in: keep names, facts, numbers, decisions, the "
    "user's preferences and open questions; drop small talk. Plain prose, at most 250 words, "
    "and nothing but the summary."
)


@dataclass(frozen=True)
class Context:
    # Past turns to send, wire shape, oldest first.
    messages: list[dict[str, Any]]
    # Appended as is to the rendered system prompt (starts with a blank line when non-empty).
    system_suffix: str = ""


class MemoryStrategy(Protocol):
    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        """What to send before the current message. `turn` is the current (pending, already
        stored) turn; only earlier turns are returned."""

    async def after_turn(
        self, store: ConversationStore, conv: Conversation, bot: Bot, summarize: Summarizer
    ) -> None:
        """Housekeeping after a turn completed (only `summarize` does any)."""


def earlier_turns(memory: Memory) -> int:
    """How many earlier completed turns go verbatim with a new message."""
    return max(memory.max_turns - 1, 0)


class _Base:
    async def after_turn(
        self, store: ConversationStore, conv: Conversation, bot: Bot, summarize: Summarizer
    ) -> None:
        return None


class NoMemory(_Base):
    """Every message stands alone."""

    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        return Context([])


class FullMemory(_Base):
    """Every completed turn (grows with the conversation, by definition)."""

    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        return Context(await store.recent_turns(conv, None, before=turn))


class WindowMemory(_Base):
    """The last `max_turns - 1` completed turns: one indexed read."""

    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        count = earlier_turns(bot.memory)
        if count == 0:
            return Context([])
        return Context(await store.recent_turns(conv, count, before=turn))


class SummarizeMemory(_Base):
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

    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        cap = earlier_turns(bot.memory) + max(bot.memory.summarize_every, 1) - 1
        messages = (
            await store.recent_turns(conv, cap, before=turn, after=conv.summary_upto)
            if cap > 0
            else []
        )
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


_WORD = re.compile(r"[^\W_]+")
# Words too common to say anything about relevance.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "tell",
        "please",
        "know",
        "think",
        "want",
        "like",
        "get",
        "got",
        "let",
        "say",
        "said",
        "thanks",
        "thank",
        "hi",
        "hello",
        "hey",
        "ok",
        "okay",
        "yes",
    ]
)


def search_terms(message: str, limit: int = 16) -> list[str]:
    """The distinctive words of a message, for a full-text query: letters and digits only (no
    operator or quote survives), lowercased, stopwords dropped, de-duplicated."""
    terms: list[str] = []
    for word in _WORD.findall(message.lower()):
        if word in STOPWORDS or word in terms:
            continue
        terms.append(word)
        if len(terms) >= limit:
            break
    return terms


class RetrievalMemory(_Base):
    """The recent window plus up to `retrieve_turns` older completed turns most relevant to the
    new message (FTS5 BM25 over this conversation), sent first, in turn order."""

    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        count = earlier_turns(bot.memory)
        recent = await store.turn_numbers(conv, count, before=turn) if count else []
        older: list[int] = []
        terms = search_terms(message)
        if terms and bot.memory.retrieve_turns > 0:
            older = await store.search_turns(
                conv,
                " ".join(terms),
                before=recent[0] if recent else turn,
                limit=bot.memory.retrieve_turns,
            )
        numbers = sorted(older) + recent
        return Context(await store.turns(conv, numbers) if numbers else [])


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


STRATEGIES: dict[str, MemoryStrategy] = {
    "none": NoMemory(),
    "full": FullMemory(),
    "window": WindowMemory(),
    "summarize": SummarizeMemory(),
    "retrieval": RetrievalMemory(),
}


def get_strategy(name: str) -> MemoryStrategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown memory strategy {name!r} (known: {known})") from None
