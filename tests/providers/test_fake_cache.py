"""The fake upstream's prompt cache follows the documented rules, checked through the real SDK:
writes only at breakpoints and above the model's minimum length, reads of the longest live
prefix within the 20-position lookback, TTLs, and the requests the API refuses."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from fake_anthropic import FakeAnthropic

EPHEMERAL = {"type": "ephemeral"}


@pytest.fixture
def client(fake_anthropic: FakeAnthropic):
    fake_anthropic.auto.mode = "echo"
    with anthropic.Anthropic(base_url=fake_anthropic.url, api_key="k", max_retries=0) as c:
        yield c


def block(text: str, marked: bool = False, ttl: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "text", "text": text}
    if marked:
        out["cache_control"] = {**EPHEMERAL, "ttl": ttl} if ttl else EPHEMERAL
    return out


def conversation(turns: int, marked: set[int] = frozenset()) -> list[dict[str, Any]]:
    """`turns` messages of one block each, alternating user/assistant, ending with a user
    message; `marked` holds the indexes of the messages with a breakpoint."""
    count = turns if turns % 2 else turns + 1
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": [block(f"m{i}", i in marked)]}
        for i in range(count)
    ]


def ask(client, messages, *, system=None, model="claude-test", tools=None):
    params: dict[str, Any] = {"model": model, "max_tokens": 10, "messages": messages}
    if system is not None:
        params["system"] = system
    if tools:
        params["tools"] = tools
    return client.messages.create(**params).usage


SYSTEM = "A long and stable system prompt. " * 300  # about 2,500 tokens


def test_a_prefix_is_written_at_its_breakpoint_then_read(client):
    system = [block(SYSTEM, marked=True)]
    first = ask(client, conversation(1), system=system)
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens > 2000
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    second = ask(client, conversation(3), system=system)
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    # What follows the last breakpoint is uncached input: two more messages of it.
    assert second.input_tokens > first.input_tokens


def test_nothing_is_cached_below_the_models_minimum(client):
    """2,500 tokens: under Haiku 4.5's 4,096 (from the catalogue), over Opus 5.5's 512."""
    system = [block(SYSTEM, marked=True)]
    for _ in range(2):
        haiku = ask(client, conversation(1), system=system, model="claude-haiku-4-5")
        assert (haiku.cache_creation_input_tokens, haiku.cache_read_input_tokens) == (0, 0)
    opus = ask(client, conversation(1), system=system, model="claude-opus-5-5")
    assert opus.cache_creation_input_tokens > 2000
    # The cache is per model: the same prefix was never written for Sonnet.
    sonnet = ask(client, conversation(1), system=system, model="claude-sonnet-5-5")
    assert sonnet.cache_read_input_tokens == 0


def test_a_read_looks_back_twenty_positions(client):
    system = [block(SYSTEM)]
    ask(client, conversation(5, marked={4}), system=system)  # writes the prefix up to m4
    # 19 positions later (m4 is the 20th counting back from m23): found.
    near = ask(client, conversation(23, marked={22}), system=system)
    assert near.cache_read_input_tokens > 2000
    ask(client, conversation(25, marked={24}), system=system)  # a fresh write at m24
    # 21 positions back from m45 to m24: not found, although the prefix is live.
    far = ask(client, conversation(45, marked={44}), system=system)
    assert far.cache_read_input_tokens == 0
    # A second breakpoint where the earlier request wrote finds it.
    both = ask(client, conversation(47, marked={24, 46}), system=system)
    assert both.cache_read_input_tokens > 2000


def test_a_run_of_tool_blocks_counts_as_one_position(client):
    system = [block(SYSTEM)]
    tools = [{"name": "f", "description": "f", "input_schema": {"type": "object"}}]
    first = ask(client, conversation(1, marked={0}), system=system, tools=tools)
    calls = [{"type": "tool_use", "id": f"t{i}", "name": "f", "input": {}} for i in range(25)]
    results = [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok"} for i in range(25)]
    results[-1] = {**results[-1], "cache_control": EPHEMERAL}
    messages = [
        {"role": "user", "content": [block("m0")]},
        {"role": "assistant", "content": calls},
        {"role": "user", "content": results},
    ]
    # 50 blocks after m0, but 2 positions: the entry written at m0 is found and read.
    usage = ask(client, messages, system=system, tools=tools)
    assert usage.cache_read_input_tokens == first.cache_creation_input_tokens > 2000


def test_entries_expire_and_reads_refresh_them(client, fake_anthropic):
    now = [1000.0]
    fake_anthropic.cache.clock = lambda: now[0]
    system = [block(SYSTEM, marked=True)]
    ask(client, conversation(1), system=system)
    now[0] += 290
    assert ask(client, conversation(1), system=system).cache_read_input_tokens > 0
    now[0] += 290  # 580 s after the write, 290 s after the read that refreshed it
    assert ask(client, conversation(1), system=system).cache_read_input_tokens > 0
    now[0] += 301
    expired = ask(client, conversation(1), system=system)
    assert expired.cache_read_input_tokens == 0 and expired.cache_creation_input_tokens > 0
    hour = [block(SYSTEM + "!", marked=True, ttl="1h")]
    written = ask(client, conversation(1), system=hour)
    assert written.cache_creation.ephemeral_1h_input_tokens == written.cache_creation_input_tokens
    now[0] += 3000
    assert ask(client, conversation(1), system=hour).cache_read_input_tokens > 0


def test_more_than_four_breakpoints_are_refused(client):
    system = [block(f"s{i}", marked=True) for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_cont"):
        ask(client, conversation(1), system=system)


def test_a_longer_ttl_after_a_shorter_one_is_refused(client):
    late = {**block("m0"), "cache_control": {**EPHEMERAL, "ttl": "1h"}}
    with pytest.raises(anthropic.BadRequestError, match="ttl '1h' cannot come after"):
        ask(client, [{"role": "user", "content": [late]}], system=[block(SYSTEM, marked=True)])
