"""Prefill botrunner's store with long conversations, through botrunner's own store API.

    python bench/prefill_store.py DB SPEC_JSON

SPEC_JSON: a list of `[bot, user, session, turns]`. Each turn is one user message and one
assistant reply, stored exactly as the engine stores a completed turn (`begin_turn`,
`add_message`, `finish_turn(..., "ok")`). Sessions are filled concurrently so the store's group
commit batches them. Much faster than driving hundreds of turns over HTTP; the harness checks
the result over HTTP (`GET /bots/{bot}/chat/{session}`) before measuring.
"""

from __future__ import annotations

import asyncio
import json
import sys

from botrunner.events import Usage
from botrunner.store import ConversationKey, open_store

WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


async def fill(store, bot: str, user: str, session: str, turns: int) -> None:
    conv = await store.open(ConversationKey(bot, user, session))
    for i in range(turns):
        q = f"Question {i}: explain gradient descent, step {i}, in two sentences."
        a = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40))
        turn = await store.begin_turn(conv, [{"type": "text", "text": q}])
        await store.add_message(
            conv, turn, "assistant", [{"type": "text", "text": a}], Usage(30 + i % 7, 40)
        )
        await store.finish_turn(conv, turn, "ok")


async def main() -> None:
    db, spec = sys.argv[1], json.loads(sys.argv[2])
    store = open_store(db)
    try:
        await asyncio.gather(*(fill(store, *item) for item in spec))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
