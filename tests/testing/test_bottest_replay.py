"""What a cassette holds and how replay uses it: every model request of a test (summaries and
grades included), the time the templates saw, recorded API errors; and the short diff."""

from __future__ import annotations

import json

from bottest_kit import go_offline, go_online, run_test_command, scripted
from fake_anthropic import error, text

from botrunner.providers.tape import request_diff

SUMMARIZING_BOT = """\
name: diary
model: {name: claude-test-1, max_tokens: 100}
system: "You keep a diary. Today is {{ today }}."
memory: {strategy: summarize, max_turns: 2, summarize_every: 1}
retry: {max_retries: 0}
"""

DIARY_TESTS = """\
bot: diary.yaml
tests:
  - name: folds old turns into a summary
    turns:
      - user: I went swimming.
      - user: I read a book.
      - user: I cooked dinner.
      - user: What did I do first?
        expect: {contains: [swimming]}
"""

RULES = [
    (r"Conversation to fold in", text("The user went swimming, then read a book.")),
    (r"What did I do first", text("You went swimming first.")),
    (r"I (went|read|cooked)", text("Noted.")),
]


def test_summaries_are_recorded_and_replayed_with_the_turns(tmp_path, monkeypatch):
    (tmp_path / "diary.yaml").write_text(SUMMARIZING_BOT, encoding="utf-8")
    path = tmp_path / "diary.tests.yaml"
    path.write_text(DIARY_TESTS, encoding="utf-8")
    upstream = scripted(RULES)
    try:
        go_online(monkeypatch, upstream.url)
        recorded = run_test_command(str(path), "--record")
    finally:
        upstream.stop()
    assert recorded.returncode == 0, recorded.stdout
    entry = json.loads(path.with_name("diary.tests.cassette.json").read_text())["tests"]
    exchanges = entry["folds old turns into a summary"]["exchanges"]
    systems = [e["request"]["system"] for e in exchanges]
    assert any(s.startswith("You maintain a running summary") for s in systems)
    # The last turn's request carries the summary the model wrote.
    (last,) = [
        e["request"]
        for e in exchanges
        if e["request"]["messages"][-1]["content"][0]["text"] == "What did I do first?"
    ]
    assert "The user went swimming, then read a book." in last["system"]
    # Without `now:` the recording keeps the time its templates saw, and replay uses it.
    when = entry["folds old turns into a summary"]["now"]
    assert f"Today is {when[:10]}." in systems[0]

    go_offline(monkeypatch)
    replayed = run_test_command(str(path))
    assert replayed.returncode == 0, replayed.stdout
    assert "1 test: 1 passed" in replayed.stdout


def test_an_api_error_is_recorded_and_replayed(tmp_path, monkeypatch):
    (tmp_path / "diary.yaml").write_text(SUMMARIZING_BOT, encoding="utf-8")
    path = tmp_path / "diary.tests.yaml"
    path.write_text(
        "bot: diary.yaml\ntests:\n  - name: overloaded\n    turns:\n"
        "      - user: I went swimming.\n        expect: {error: overloaded}\n",
        encoding="utf-8",
    )
    upstream = scripted([(r"swimming", error(529))])
    try:
        go_online(monkeypatch, upstream.url)
        recorded = run_test_command(str(path), "--record")
    finally:
        upstream.stop()
    assert recorded.returncode == 0, recorded.stdout
    (exchange,) = json.loads(path.with_name("diary.tests.cassette.json").read_text())["tests"][
        "overloaded"
    ]["exchanges"]
    assert exchange["error"]["code"] == "overloaded" and "reply" not in exchange
    go_offline(monkeypatch)
    assert run_test_command(str(path)).returncode == 0


def _request(**changes):
    base = {
        "model": "m",
        "max_tokens": 10,
        "temperature": None,
        "system": "line one\nline two",
        "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    return {**base, **changes}


def test_the_diff_shows_only_what_changed():
    assert request_diff(_request(), _request(system="line one\nline 2")) == (
        "system:\n  - line two\n  + line 2"
    )
    tools = [{"name": "t", "description": "e", "input_schema": {"type": "object"}}]
    assert request_diff(_request(), _request(tools=tools)) == (
        'tools:\n  -   "description": "d",\n  +   "description": "e",'
    )
    more = _request()["messages"] + [
        {"role": "assistant", "content": [{"type": "tool_use", "name": "t", "input": {"a": 1}}]}
    ]
    assert request_diff(_request(), _request(messages=more)) == (
        'messages: 1 recorded, 2 now\n  + tool call t {"a": 1}'
    )


def test_a_long_changed_line_is_clipped_around_the_change():
    before = "word " * 60 + "concise " + "word " * 60
    diff = request_diff(_request(system=before), _request(system=before.replace("concise", "kind")))
    removed, added = diff.splitlines()[1:]
    assert "concise" in removed and "kind" in added
    assert removed.startswith("  - ...") and removed.endswith("...")
    assert len(removed) < 130


def test_a_long_diff_is_cut():
    many = "\n".join(f"line {i}" for i in range(40))
    diff = request_diff(_request(system=many), _request(system=many.replace("line", "row")))
    assert len(diff.splitlines()) == 14
    assert diff.splitlines()[-1].startswith("... (")
