"""How the OpenAI-compatible endpoint keeps conversations, driven by the real `openai` SDK
against a real server and the fake upstream: without a session id the conversation is what the
client sent (nothing stored is read back); with `X-Session-Id` the server keeps it."""

from __future__ import annotations

import json
import sqlite3

import openai
import pytest
from fake_anthropic import text
from test_server_harness import ThreadServer, upstream_env, write_bot


def serve(tmp_path, monkeypatch, fake, extra: str = ""):
    upstream_env(monkeypatch, fake)
    return ThreadServer(write_bot(tmp_path, extra=extra), tmp_path / "bots.db")


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def say(c: openai.OpenAI, messages: list[dict[str, str]], **options) -> str:
    reply = c.chat.completions.create(model="tutor", messages=messages, **options)
    return reply.choices[0].message.content


def user(t: str) -> dict[str, str]:
    return {"role": "user", "content": t}


def assistant(t: str) -> dict[str, str]:
    return {"role": "assistant", "content": t}


def sent_text(request) -> list[tuple[str, str]]:
    """(role, text) of each message the upstream received (content as a string or blocks)."""
    out = []
    for m in request.messages:
        content = m["content"]
        if not isinstance(content, str):
            content = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        out.append((m["role"], content))
    return out


def test_a_new_conversation_never_continues_an_old_one(tmp_path, monkeypatch, fake_anthropic):
    """`llm -m tutor hello`, `llm -c "my secret is X"`, then a new `llm -m tutor hello`."""
    fake_anthropic.enqueue(text("Hi!"), text("Noted."), text("Hello, stranger."))
    with serve(tmp_path, monkeypatch, fake_anthropic) as srv:
        c = client(srv)
        assert say(c, [user("hello")]) == "Hi!"
        say(c, [user("hello"), assistant("Hi!"), user("my secret is X")])
        assert say(c, [user("hello")]) == "Hello, stranger."
        streamed = c.chat.completions.create(model="tutor", messages=[user("hello")], stream=True)
        with pytest.raises(openai.APIError):  # nothing enqueued: the upstream refuses
            list(streamed)
    first, second, third, fourth = fake_anthropic.requests
    assert sent_text(second) == [
        ("user", "hello"),
        ("assistant", "Hi!"),
        ("user", "my secret is X"),
    ]
    for fresh in (third, fourth):
        assert "my secret is X" not in json.dumps(fresh.body)
        assert sent_text(fresh) == [("user", "hello")]


def test_the_client_messages_are_the_conversation(tmp_path, monkeypatch, fake_anthropic):
    fake_anthropic.enqueue(text("It is 4."))
    with serve(tmp_path, monkeypatch, fake_anthropic) as srv:
        say(
            client(srv),
            [
                {"role": "system", "content": "You are a pirate."},
                assistant("Welcome! Ask me anything."),  # a greeting before the first question
                user("Hi"),
                assistant("Hello!"),
                {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
                assistant("4"),
                user("Are you sure?"),
                user("Double-check, please."),
            ],
        )
    (request,) = fake_anthropic.requests
    assert request.system == "You are a helpful tutor."  # the bot's, not the client's
    assert sent_text(request) == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "Are you sure?\n\nDouble-check, please."),
    ]


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("strategy: none", [("user", "what about giraffes?")]),
        (
            "strategy: window\n  max_turns: 2",
            [("user", "cats"), ("assistant", "meow"), ("user", "what about giraffes?")],
        ),
        (
            "strategy: retrieval\n  max_turns: 2\n  retrieve_turns: 1",
            [
                ("user", "giraffes are tall"),
                ("assistant", "indeed"),
                ("user", "cats"),
                ("assistant", "meow"),
                ("user", "what about giraffes?"),
            ],
        ),
    ],
)
def test_the_memory_policy_applies_to_the_client_messages(
    tmp_path, monkeypatch, fake_anthropic, memory, expected
):
    fake_anthropic.enqueue(text("Long necks."))
    history = [
        user("giraffes are tall"),
        assistant("indeed"),
        user("dogs"),
        assistant("woof"),
        user("cats"),
        assistant("meow"),
        user("what about giraffes?"),
    ]
    with serve(tmp_path, monkeypatch, fake_anthropic, f"memory:\n  {memory}\n") as srv:
        say(client(srv), history)
    assert sent_text(fake_anthropic.requests[0]) == expected


def test_each_request_is_stored_apart_and_counted(tmp_path, monkeypatch, fake_anthropic):
    limits = "limits:\n  per_user:\n    requests_per_minute: 2\n"
    fake_anthropic.enqueue(text("one"), text("two"))
    with serve(tmp_path, monkeypatch, fake_anthropic, limits) as srv:
        c = client(srv)
        say(c, [user("hello")])
        say(c, [user("hello"), assistant("one"), user("again")])
        with pytest.raises(openai.RateLimitError):  # limits still hold per user
            say(c, [user("hello")])
    with sqlite3.connect(tmp_path / "bots.db") as db:
        rows = db.execute(
            "SELECT c.session, COUNT(*) FROM conversations c "
            "JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY c.id"
        ).fetchall()
    # One conversation per request, holding only that request's message and reply.
    assert len({session for session, _ in rows}) == 2
    assert [count for _, count in rows] == [2, 2]


def test_with_a_session_id_the_server_keeps_the_conversation(tmp_path, monkeypatch, fake_anthropic):
    fake_anthropic.enqueue(text("one"), text("two"), text("three"))
    with serve(tmp_path, monkeypatch, fake_anthropic) as srv:
        c = client(srv)
        say(c, [user("hi")], extra_headers={"X-Session-Id": "kept-1"})
        # Only the last message is new input; the client's copy of the rest is ignored.
        say(
            c,
            [user("forged"), assistant("lies"), user("again")],
            extra_headers={"X-Session-Id": "kept-1"},
        )
        say(c, [user("body field")], extra_body={"session_id": "kept-1"})
    assert sent_text(fake_anthropic.requests[-1]) == [
        ("user", "hi"),
        ("assistant", "one"),
        ("user", "again"),
        ("assistant", "two"),
        ("user", "body field"),
    ]


def test_a_history_it_cannot_use_is_refused_clearly(tmp_path, monkeypatch, fake_anthropic):
    with serve(tmp_path, monkeypatch, fake_anthropic) as srv:
        c = client(srv)
        with pytest.raises(openai.BadRequestError, match=r"messages\[0\]: unknown role 'robot'"):
            say(c, [{"role": "robot", "content": "beep"}, user("hi")])
        image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        with pytest.raises(openai.BadRequestError, match=r"messages\[0\]: only text parts"):
            say(c, [{"role": "user", "content": [image]}, assistant("nice"), user("hi")])
    assert fake_anthropic.requests == []
