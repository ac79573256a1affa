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

`max_turns` counts the new message: window, summarize and retrieval send at most
`max_turns - 1` earlier completed turns, so at most `max_turns` user turns reach the model.
They drop old turns several at a time (window and retrieval `window_step`, summarize
`summarize_every`), so the beginning of what is sent stays byte-identical for several
messages and is read from the prompt cache (see `botrunner.providers.caching`).
"""

from __future__ import annotations

from botrunner.memory.base import (
    Context,
    MemoryStrategy,
    RecentStrategy,
    Summarizer,
    earlier_turns,
    window_step,
)
from botrunner.memory.recent import FullMemory, NoMemory, WindowMemory
from botrunner.memory.retrieval import (
    RETRIEVED_FOOTER,
    RETRIEVED_HEADER,
    STOPWORDS,
    RetrievalMemory,
    search_terms,
)
from botrunner.memory.summarize import (
    SUMMARY_HEADER,
    SUMMARY_INSTRUCTIONS,
    SummarizeMemory,
    render_transcript,
    summary_prompt,
)

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


__all__ = [
    "RETRIEVED_FOOTER",
    "RETRIEVED_HEADER",
    "STOPWORDS",
    "STRATEGIES",
    "SUMMARY_HEADER",
    "SUMMARY_INSTRUCTIONS",
    "Context",
    "FullMemory",
    "MemoryStrategy",
    "NoMemory",
    "RecentStrategy",
    "RetrievalMemory",
    "SummarizeMemory",
    "Summarizer",
    "WindowMemory",
    "earlier_turns",
    "get_strategy",
    "window_step",
    "render_transcript",
    "search_terms",
    "summary_prompt",
]
