"""Memory strategies over every real store (SQLite, PostgreSQL): the exact messages each one sends over a long
conversation (tool rounds, failed and stopped turns), validity for the Messages API, retrieval
by a rare word, the summarize cycle; and, on SQLite (whose statements and VM steps can be
counted), per-turn work that does not grow with the history."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from botrunner.bot import Bot, Memory, Model
from botrunner.events import Usage
from botrunner.memory import (
    STRATEGIES,
    SUMMARY_HEADER,
    SUMMARY_INSTRUCTIONS,
    Context,
    get_strategy,
    render_transcript,
    search_terms,
    summary_prompt,
)
from botrunner.store import ConversationKey, SQLiteStore, start_store

Msg = dict[str, Any]

# In the 30-turn conversation: tool rounds, failures, a stopped turn with a dangling tool_use.
TOOL_TURNS = {5, 10, 15, 20, 25, 30}
FAILED_TURNS = {7, 19, 28}
STOPPED_TURNS = {12}
TOPICS = {4: "my xylophone is out of tune", 15: "the marimba needs new mallets"}


def make_bot(strategy: str, **memory: Any) -> Bot:
    return Bot(
        name="tutor",
        model=Model("claude-test", 256),
        system="You are a tutor.",  # type: ignore[arg-type]  # stand-in for a Template
        path=Path("tutor.yaml"),
        version="test",
        memory=Memory(strategy=strategy, **memory),  # type: ignore[arg-type]
    )


def text(value: str) -> list[Msg]:
    return [{"type": "text", "text": value}]


def turn_messages(n: int) -> list[Msg]:
    """The wire messages of a completed turn n, as the engine would store them."""
    question = TOPICS.get(n, f"ordinary question {n}")
    messages: list[Msg] = [{"role": "user", "content": text(question)}]
    if n in TOOL_TURNS:
        call = {"type": "tool_use", "id": f"call{n}", "name": "lookup", "input": {"n": n}}
        messages.append({"role": "assistant", "content": [*text(f"checking {n}"), call]})
        result = {"type": "tool_result", "tool_use_id": f"call{n}", "content": f"result {n}"}
        messages.append({"role": "user", "content": [result]})
    messages.append({"role": "assistant", "content": text(f"answer {n}")})
    return messages


async def store_turn(store, conv, n: int) -> None:
    messages = turn_messages(n)
    turn = await store.begin_turn(conv, messages[0]["content"])
    assert turn == n
    if n in FAILED_TURNS:
        await store.add_message(conv, n, "assistant", text(f"xylophone half reply {n}"))
        await store.finish_turn(conv, n, "error")
        return
    if n in STOPPED_TURNS:
        call = {"type": "tool_use", "id": "dangling", "name": "lookup", "input": {}}
        await store.add_message(conv, n, "assistant", [call])
        await store.finish_turn(conv, n, "stopped")
        return
    for message in messages[1:]:
        await store.add_message(conv, n, message["role"], message["content"], Usage(5, 5))
    await store.finish_turn(conv, n, "ok")


def expected(*turns: int) -> list[Msg]:
    return [m for n in turns for m in turn_messages(n)]


def ok_turns(first: int, last: int) -> list[int]:
    return [n for n in range(first, last + 1) if n not in FAILED_TURNS and n not in STOPPED_TURNS]


def assert_valid(messages: list[Msg]) -> None:
    """What the Messages API requires of the history before the new user message."""
    if not messages:
        return
    assert messages[0]["role"] == "user"
    assert messages[-1]["role"] == "assistant"
    for i, message in enumerate(messages):
        assert message["role"] == ("user" if i % 2 == 0 else "assistant")
        calls = {b["id"] for b in message["content"] if b["type"] == "tool_use"}
        if calls:
            following = messages[i + 1]["content"]
            assert {b["tool_use_id"] for b in following if b["type"] == "tool_result"} == calls


def user_turns(messages: list[Msg]) -> int:
    return sum(1 for m in messages if m["role"] == "user" and m["content"][0]["type"] == "text")


@pytest.fixture
async def store(store_url: str):
    s = await start_store(store_url)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "memory.db")
    yield s
    await s.close()


CURRENT = 31
CURRENT_TEXT = "Do you remember the xylophone?"


@pytest.fixture
async def long_conv(store):
    """30 stored turns, then the current turn 31 pending (as when the engine asks)."""
    conv = await store.open(ConversationKey("tutor", "alice", "long"))
    for n in range(1, 31):
        await store_turn(store, conv, n)
    assert await store.begin_turn(conv, text(CURRENT_TEXT)) == CURRENT
    return conv


async def context(store, conv, bot: Bot, message: str = CURRENT_TEXT) -> Context:
    ctx = await get_strategy(bot.memory.strategy).context(store, conv, bot, CURRENT, message)
    assert_valid(ctx.messages)
    return ctx


def test_registry():
    assert set(STRATEGIES) == {"none", "full", "window", "summarize", "retrieval"}
    with pytest.raises(ValueError, match="unknown memory strategy 'vector'"):
        get_strategy("vector")


async def test_none_sends_nothing(store, long_conv):
    assert await context(store, long_conv, make_bot("none")) == Context([])


async def test_full_sends_every_completed_turn(store, long_conv):
    ctx = await context(store, long_conv, make_bot("full"))
    assert ctx == Context(expected(*ok_turns(1, 30)))
    assert user_turns(ctx.messages) == 26  # 30 minus 3 failed and 1 stopped


async def test_window_sends_max_turns_user_turns(store, long_conv):
    ctx = await context(store, long_conv, make_bot("window", max_turns=5))
    # 4 earlier completed turns (28 failed, so the window reaches back to 26) + the new one = 5.
    assert ctx == Context(expected(26, 27, 29, 30))
    assert user_turns(ctx.messages) + 1 == 5
    one = await context(store, long_conv, make_bot("window", max_turns=1))
    assert one == Context([])


async def test_window_on_a_short_conversation(store):
    conv = await store.open(ConversationKey("tutor", "alice", "short"))
    bot = make_bot("window", max_turns=10)
    turn = await store.begin_turn(conv, text("first ever"))
    assert await get_strategy("window").context(store, conv, bot, turn, "first ever") == Context([])


async def test_retrieval_adds_the_old_turn_with_the_rare_word(store, long_conv):
    bot = make_bot("retrieval", max_turns=3, retrieve_turns=2)
    ctx = await context(store, long_conv, bot)
    # Turn 4 mentions the xylophone; failed turn 7 does too but is never sent.
    assert ctx == Context(expected(4, 29, 30))

    both = await context(store, long_conv, bot, 'xylophone and MARIMBA, "please" OR NOT')
    assert both == Context(expected(4, 15, 29, 30))  # in turn order, ahead of the window

    for nothing in ["", "?!", "what is it?", 'AND OR "*"']:
        assert await context(store, long_conv, bot, nothing) == Context(expected(29, 30))


async def test_retrieval_does_not_repeat_window_turns(store, long_conv):
    bot = make_bot("retrieval", max_turns=4, retrieve_turns=3)
    ctx = await context(store, long_conv, bot, "ordinary question 27 answer")
    numbers = [
        int(m["content"][0]["text"].split()[-1])
        for m in ctx.messages
        if m["role"] == "user" and m["content"][0]["type"] == "text"
    ]
    assert numbers[-3:] == [27, 29, 30]
    assert len(numbers) == len(set(numbers)) == 6
    assert numbers == sorted(numbers)


def test_search_terms_are_safe_words():
    assert search_terms('What is "NEAR(x)" OR col:foo* -bar ^baz?') == [
        "near",
        "x",
        "col",
        "foo",
        "bar",
        "baz",
    ]
    assert search_terms("the the and of") == []
    assert search_terms("Ünïcode naïve café") == ["ünïcode", "naïve", "café"]


async def test_summarize_cycle(store):
    """max_turns=4 (3 earlier turns), summarize_every=5: the first fold happens after turn 8
    (turns 1-5 have left the window 6-8), the second after turn 13 (turns 6-10)."""
    bot = make_bot("summarize", max_turns=4, summarize_every=5)
    strategy = get_strategy("summarize")
    conv = await store.open(ConversationKey("tutor", "alice", "sum"))
    calls: list[tuple[str, list[Msg]]] = []
    seen: dict[int, Context] = {}

    async def summarize(instructions: str, messages: list[Msg]) -> str:
        calls.append((instructions, messages))
        return f"  S{len(calls)}  "

    for n in range(1, 15):
        assert await store.begin_turn(conv, text(f"q{n}")) == n
        ctx = await strategy.context(store, conv, bot, n, f"q{n}")
        assert_valid(ctx.messages)
        seen[n] = ctx
        await store.add_message(conv, n, "assistant", text(f"a{n}"))
        await store.finish_turn(conv, n, "ok")
        await strategy.after_turn(store, conv, bot, summarize)

    def plain(*turns: int) -> list[Msg]:
        return [
            m
            for t in turns
            for m in (
                {"role": "user", "content": text(f"q{t}")},
                {"role": "assistant", "content": text(f"a{t}")},
            )
        ]

    # Before the first summary nothing is dropped: turns waiting to be folded are still sent.
    assert seen[8] == Context(plain(1, 2, 3, 4, 5, 6, 7))
    assert seen[9] == Context(plain(6, 7, 8), f"\n\n{SUMMARY_HEADER}\nS1")
    assert seen[13] == Context(plain(6, 7, 8, 9, 10, 11, 12), f"\n\n{SUMMARY_HEADER}\nS1")
    assert seen[14] == Context(plain(11, 12, 13), f"\n\n{SUMMARY_HEADER}\nS2")
    assert user_turns(seen[14].messages) + 1 == 4

    assert len(calls) == 2
    first = "Conversation to fold in:\n" + "\n".join(
        f"User: q{t}\nAssistant: a{t}" for t in range(1, 6)
    )
    assert calls[0] == (SUMMARY_INSTRUCTIONS, [{"role": "user", "content": text(first)}])
    second = "Summary so far:\nS1\n\nConversation to fold in:\n" + "\n".join(
        f"User: q{t}\nAssistant: a{t}" for t in range(6, 11)
    )
    assert calls[1] == (SUMMARY_INSTRUCTIONS, [{"role": "user", "content": text(second)}])
    again = await store.find(conv.key)
    assert (again.summary, again.summary_upto) == ("S2", 10)


async def test_summarize_over_the_long_conversation(store, long_conv):
    bot = make_bot("summarize", max_turns=4, summarize_every=5)
    strategy = get_strategy("summarize")
    folded: list[list[Msg]] = []

    async def summarize(instructions: str, messages: list[Msg]) -> str:
        folded.append(messages)
        return "They talked about a xylophone."

    # No summary yet: the window plus the turns waiting to be folded, capped at 3 + 4 turns.
    ctx = await context(store, long_conv, bot)
    assert ctx == Context(expected(23, 24, 25, 26, 27, 29, 30))
    await strategy.after_turn(store, long_conv, bot, summarize)
    # The window for the next turn is 27, 29, 30; the fold reads at most 4 * 5 turns before it.
    window_start = 27
    folded_turns = ok_turns(1, window_start - 1)[-20:]
    assert folded == [summary_prompt("", expected(*folded_turns))]
    assert long_conv.summary_upto == folded_turns[-1] == 26
    ctx = await context(store, long_conv, bot)
    assert ctx == Context(
        expected(27, 29, 30), f"\n\n{SUMMARY_HEADER}\nThey talked about a xylophone."
    )


def test_render_transcript_with_tools():
    rendered = render_transcript(turn_messages(5))
    assert rendered == (
        "User: ordinary question 5\n"
        "Assistant: checking 5\n"
        "Assistant called tool lookup with {'n': 5}\n"
        "Tool lookup returned: result 5\n"
        "Assistant: answer 5"
    )


# --- per-turn work is bounded ----------------------------------------------------------------


async def bulk_conversation(store: SQLiteStore, session: str, turns: int):
    """`turns` completed turns (2 messages each) through the store API; turn 2 mentions the
    xylophone. Concurrent calls keep it fast (group commit) and FIFO keeps the order."""
    conv = await store.open(ConversationKey("tutor", "bench", session))

    def question(n: int) -> str:
        return "my xylophone is out of tune" if n == 2 else f"ordinary question {n}"

    numbers = await asyncio.gather(
        *(store.begin_turn(conv, text(question(n))) for n in range(1, turns + 1))
    )
    assert numbers == list(range(1, turns + 1))
    await asyncio.gather(
        *(store.add_message(conv, n, "assistant", text(f"answer {n}")) for n in numbers)
    )
    await asyncio.gather(*(store.finish_turn(conv, n, "ok") for n in numbers))
    current = await store.begin_turn(conv, text(CURRENT_TEXT))
    return conv, current


async def measure(store: SQLiteStore, strategy: str, conv, current: int) -> tuple[int, int, int]:
    """(SQL statements, VM instructions, messages sent) for one context() call. Statements
    SQLite runs internally (FTS5 on its shadow tables; traced with a leading "--") are not
    ours: they are collected separately in `fts_reads`."""
    statements = steps = 0
    fts_reads.clear()

    def trace(sql: str) -> None:
        nonlocal statements
        if sql.startswith("--"):
            fts_reads.append(sql)
        else:
            statements += 1

    def progress() -> int:
        nonlocal steps
        steps += 1
        return 0

    def install(c: sqlite3.Connection) -> None:
        c.set_trace_callback(trace)
        c.set_progress_handler(progress, 1)

    def remove(c: sqlite3.Connection) -> None:
        c.set_trace_callback(None)
        c.set_progress_handler(None, 1)

    bot = make_bot(strategy, max_turns=4, retrieve_turns=2, summarize_every=5)
    await store.call(install)
    ctx = await get_strategy(strategy).context(store, conv, bot, current, CURRENT_TEXT)
    await store.call(remove)
    # The install/remove jobs themselves are traced identically in both runs.
    return statements, steps, len(ctx.messages)


fts_reads: list[str] = []


@pytest.mark.parametrize("strategy", ["none", "window", "summarize"])
async def test_per_turn_work_does_not_grow_with_history(sqlite_store, strategy):
    store = sqlite_store
    small = await bulk_conversation(store, "small", 10)  # 20 messages
    large = await bulk_conversation(store, "large", 500)  # 1,000 messages
    small_cost = await measure(store, strategy, *small)
    large_cost = await measure(store, strategy, *large)
    assert small_cost == large_cost  # same statements, same VM instructions, same output


async def test_retrieval_work_does_not_grow_with_history(sqlite_store):
    store = sqlite_store
    """Our statements and the messages read are identical; inside FTS5 the intersection with
    the conversation's own token reads a longer doclist for a longer conversation, which is a
    B-tree index walk (a few page reads), not a read of the transcript."""
    small = await bulk_conversation(store, "small", 10)
    large = await bulk_conversation(store, "large", 500)
    s_statements, s_steps, s_sent = await measure(store, "retrieval", *small)
    s_fts = len(fts_reads)
    l_statements, l_steps, l_sent = await measure(store, "retrieval", *large)
    l_fts = len(fts_reads)
    assert (s_statements, s_sent) == (l_statements, l_sent) == (s_statements, 8)
    assert l_fts <= s_fts + 3
    assert l_steps <= s_steps * 1.1


async def test_the_work_counter_does_see_growth(sqlite_store):
    store = sqlite_store
    """Sanity check of the measurement: `full` reads the whole history, and it shows."""
    small = await bulk_conversation(store, "small", 10)
    large = await bulk_conversation(store, "large", 500)
    (s_statements, s_steps, s_sent), (l_statements, l_steps, l_sent) = (
        await measure(store, "full", *small),
        await measure(store, "full", *large),
    )
    assert s_statements == l_statements
    assert l_steps > 10 * s_steps and l_sent == 1000 and s_sent == 20


@pytest.mark.parametrize("strategy", ["none", "full", "window", "summarize"])
async def test_the_read_done_while_starting_a_turn_gives_the_same_context(store, strategy):
    """The engine takes these strategies' one read from `start_turn` (no second round trip to
    the store); what it sends must be exactly what `context` would have read."""
    conv = await store.open(ConversationKey("tutor", "alice", "same"))
    for n in range(1, 31):
        await store_turn(store, conv, n)
    await store.set_summary(conv, "They talked about instruments.", 12)
    bot = make_bot(strategy, max_turns=4, summarize_every=5)
    memory = get_strategy(strategy)
    started = await store.start_turn(conv.key, text(CURRENT_TEXT), None, memory.recent(bot))
    await started.durable
    assert started.turn == 31
    expected = await memory.context(store, started.conv, bot, started.turn, CURRENT_TEXT)
    assert memory.from_recent(started.conv, bot, started.recent) == expected
    if strategy in ("full", "window", "summarize"):
        assert expected.messages  # the comparison is not between two empty lists
    if strategy == "summarize":
        assert "instruments" in expected.system_suffix
