"""The `retrieval` strategy: the recent window plus the older turns most relevant to the new
message."""

from __future__ import annotations

import re

from botrunner.bot import Bot
from botrunner.memory.base import BaseStrategy, Context, earlier_turns, window_step
from botrunner.memory.summarize import render_transcript
from botrunner.store.base import Conversation, ConversationStore, window_start

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


class RetrievalMemory(BaseStrategy):
    """The recent window (as `window` sends it, dropping old turns `window_step` at a time)
    plus up to `retrieve_turns` older completed turns most relevant to the new message (FTS5
    BM25 over this conversation). The retrieved turns change with every message, so they are
    sent after the part that stays the same: as a transcript at the start of the new user
    message, not as earlier messages (which would change the cached prefix every time)."""

    async def context(
        self, store: ConversationStore, conv: Conversation, bot: Bot, turn: int, message: str
    ) -> Context:
        count = earlier_turns(bot.memory)
        start = window_start(turn, count, window_step(bot.memory)) or None
        recent = await store.turn_numbers(conv, count, before=turn, after=start) if count else []
        older: list[int] = []
        terms = search_terms(message)
        if terms and bot.memory.retrieve_turns > 0:
            older = await store.search_turns(
                conv,
                " ".join(terms),
                before=recent[0] if recent else turn,
                limit=bot.memory.retrieve_turns,
            )
        messages = await store.turns(conv, recent) if recent else []
        preamble = ""
        if older:
            transcript = render_transcript(await store.turns(conv, sorted(older)))
            preamble = f"{RETRIEVED_HEADER}\n{transcript}\n\n{RETRIEVED_FOOTER}"
        return Context(messages, preamble=preamble)


RETRIEVED_HEADER = "Earlier in this conversation (older messages that may be relevant):"
RETRIEVED_FOOTER = "My new message:"
