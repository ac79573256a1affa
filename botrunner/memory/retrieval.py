"""The `retrieval` strategy: the recent window plus the older turns most relevant to the new
message."""

from __future__ import annotations

import re

from botrunner.bot import Bot
from botrunner.memory.base import BaseStrategy, Context, earlier_turns
from botrunner.store.base import Conversation, ConversationStore

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
