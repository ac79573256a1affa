"""Every assertion of a turn (`expect:`), passing and failing, replayed from one recording: a
failure names the test and the turn, and shows what was expected against what came."""

from __future__ import annotations

import json

import pytest
from bottest_kit import SHOP_RULES, go_offline, go_online, run_test_command, scripted, write_shop
from fake_anthropic import text

LONG = "Please tell me everything about every single mug you sell, in detail."

TESTS = """\
bot: shop.yaml
now: "2025-06-02T09:30:00+00:00"
tests:
  - name: greets
    user: {name: Ada}
    turns:
      - user: Hello there
        expect:
          contains: [Acme, How can I help]
          not_contains: [Initech]
          matches: "(?i)^hello"
          no_tool_calls: true
          max_output_tokens: 50
          judge: The reply is polite.
  - name: stock
    tools:
      stock: {json: {units: 7}}
    turns:
      - user: How many red mugs do you have?
        expect:
          tool_calls:
            - name: stock
              input: {sku: red-mug}
              request:
                method: GET
                url: https://stock.example/v1/stock/red-mug?warehouse=main
                url_startswith: https://stock.example/v1/stock/
                query: {warehouse: main}
                headers: {Accept: application/json}
          contains: ["7"]
  - name: french
    turns:
      - user: Hello there
        expect:
          judge: The reply is in French.
  - name: too long
    turns:
      - user: LONG
        expect: {error: message_too_long}
  - name: too fast
    turns:
      - user: Hello there
      - user: Hello there
      - user: Hello there
      - user: Hello there
        expect: {error: rate_limited}
""".replace("LONG", LONG)


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    upstream = scripted(SHOP_RULES)
    try:
        path = write_shop(tmp_path, tests=TESTS)
        go_online(monkeypatch, upstream.url)
        result = run_test_command(str(path), "--record", "--format", "json")
    finally:
        upstream.stop()
    go_offline(monkeypatch)
    # Recording reports every test, as a replay would: the French one fails (the grader says so).
    statuses = {t["name"]: t["status"] for t in json.loads(result.stdout)["tests"]}
    assert statuses == {
        "greets": "passed",
        "stock": "passed",
        "french": "failed",
        "too long": "passed",
        "too fast": "passed",
    }, result.stdout
    return path


def replay(path, tests: str, name: str):
    path.write_text(tests, encoding="utf-8")
    data = run_test_command(str(path), "-k", name, "--format", "json")
    (result,) = json.loads(data.stdout)["tests"]
    text_run = run_test_command(str(path), "-k", name)
    return result, text_run


def test_every_assertion_passes_on_replay(recorded):
    result = run_test_command(str(recorded), "-k", "greets", "-k", "stock", "-k", "too")
    assert result.returncode == 0, result.stdout
    assert "4 tests: 4 passed" in result.stdout


# (test, what the test file says, what it says instead, assertion, message, expected, got)
FAILURES = [
    ("greets", "contains: [Acme, How can I help]", "contains: [Acme, Initech]", "contains",
     'the reply does not contain "Initech"', "Initech", "Hello from Acme! How can I help you today?"),
    ("greets", "not_contains: [Initech]", "not_contains: [Initech, Acme]", "not_contains",
     'the reply contains "Acme"', "Acme", "Hello from Acme! How can I help you today?"),
    ("greets", 'matches: "(?i)^hello"', 'matches: "\\\\d{3}"', "matches",
     "the reply does not match /\\d{3}/", "\\d{3}", "Hello from Acme! How can I help you today?"),
    ("greets", "max_output_tokens: 50", "max_output_tokens: 2", "max_output_tokens",
     "the reply used 9 output tokens", "at most 2", 9),
    ("greets", "no_tool_calls: true", "tool_calls: [{name: stock}]", "tool_calls",
     "no call of stock", "stock", "no tool calls"),
    ("greets", "no_tool_calls: true", "error: rate_limited", "error",
     "the turn should fail with rate_limited", "rate_limited",
     "Hello from Acme! How can I help you today?"),
    ("stock", 'contains: ["7"]', "no_tool_calls: true", "no_tool_calls",
     "the model called stock", "no tool calls",
     'stock {"sku": "red-mug"} -> GET https://stock.example/v1/stock/red-mug?warehouse=main'),
    ("stock", "input: {sku: red-mug}", "input: {sku: blue-mug}", "tool_calls",
     "stock: the input differs", '{"sku": "blue-mug"}', '{"sku": "red-mug"}'),
    ("stock", "method: GET", "method: POST", "tool_calls",
     "stock: the request's method differs", "POST", "GET"),
    ("stock", "url: https://stock.example/v1/stock/red-mug?warehouse=main",
     "url: https://stock.example/v1/stock/red-mug", "tool_calls", "stock: the request's URL differs",
     "https://stock.example/v1/stock/red-mug",
     "https://stock.example/v1/stock/red-mug?warehouse=main"),
    ("stock", "url_startswith: https://stock.example/v1/stock/",
     "url_startswith: https://stock.example/v2/", "tool_calls",
     "stock: the request's URL starts differently", "https://stock.example/v2/",
     "https://stock.example/v1/stock/red-mug?warehouse=main"),
    ("stock", "query: {warehouse: main}", "query: {warehouse: north}", "tool_calls",
     'stock: the query parameter "warehouse" differs', "north", "main"),
    ("stock", "headers: {Accept: application/json}", "headers: [X-Trace]", "tool_calls",
     'stock: the request has no "X-Trace" header', "X-Trace",
     "accept, accept-encoding, authorization, connection, host, user-agent"),
    ("stock", "headers: {Accept: application/json}", "headers: {Accept: text/html}", "tool_calls",
     'stock: the "Accept" header differs', "text/html", "application/json"),
    ("stock", "query: {warehouse: main}", "body: {size: large}", "tool_calls",
     "stock: the request's body is not JSON", '{"size": "large"}', "(no body)"),
    ("too long", "expect: {error: message_too_long}", "expect: {contains: [mug]}", "error",
     "the turn failed instead of answering", "a reply", "message_too_long: The message is 69"),
    ("too long", "expect: {error: message_too_long}", "expect: {error: rate_limited}", "error",
     "the turn failed with another error", "rate_limited", "message_too_long: The message is 69"),
    ("too fast", "expect: {error: rate_limited}", "expect: {contains: [Hello]}", "error",
     "the turn failed instead of answering", "a reply", "rate_limited: You're sending"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "before", "after", "assertion", "message", "expected", "got"),
    FAILURES,
    ids=[f"{f[3]}: {f[4]}" for f in FAILURES],
)
def test_a_failing_assertion_shows_the_test_the_turn_expected_and_got(
    recorded, name, before, after, assertion, message, expected, got
):
    assert before in TESTS
    result, text_run = replay(recorded, TESTS.replace(before, after, 1), name)
    assert text_run.returncode == 1
    assert result["status"] == "failed"
    (failure,) = result["failures"]
    turn = 4 if name == "too fast" else 1
    assert failure["assertion"] == assertion
    assert failure["message"] == message
    assert failure["turn"] == turn
    if isinstance(got, str) and got.endswith(("69", "sending")):
        assert failure["got"].startswith(got)
    else:
        assert failure.get("got") == got
    assert failure["expected"] == expected
    # The text report: the test's line, then the turn with what the user said, the
    # assertion, and expected against got.
    lines = text_run.stdout.splitlines()
    assert lines[0].startswith("FAILED") and lines[0].endswith(f": {name}")
    said = LONG[:57] + "..." if name == "too long" else TESTS.split("- user: ")[1].split("\n")[0]
    if name == "stock":
        said = "How many red mugs do you have?"
    label = "" if assertion == "error" else f"{assertion}: "
    assert lines[1] == f'    turn {turn} ("{said}"): {label}{message}'
    assert lines[2] == f"        expected: {expected}"
    if got is not None:
        assert lines[3].startswith(f"        got:      {str(got)[:20]}")


def test_a_failing_judge_shows_the_rubric_the_reply_and_the_graders_reason(recorded):
    result, text_run = replay(recorded, TESTS, "french")
    assert text_run.returncode == 1
    (failure,) = result["failures"]
    assert failure["assertion"] == "judge"
    assert failure["message"] == "the grader says the reply does not meet the rubric"
    assert failure["expected"] == "The reply is in French."
    assert failure["got"] == "Hello from Acme! How can I help you today?"
    assert failure["detail"] == "The reply is in English."
    assert result["judgements"] == [
        {"turn": 1, "rubric": "The reply is in French.", "passed": False,
         "reason": "The reply is in English."}
    ]  # fmt: skip
    assert "        grader:   The reply is in English." in text_run.stdout


def test_a_passing_judge_keeps_its_reason_in_the_json_report(recorded):
    result, _ = replay(recorded, TESTS, "greets")
    assert result["status"] == "passed"
    assert result["judgements"][0]["reason"] == "It greets the customer warmly."


def test_a_changed_rubric_is_stale_not_a_reused_grade(recorded):
    result, text_run = replay(
        recorded, TESTS.replace("The reply is polite.", "The reply is rude."), "greets"
    )
    assert result["status"] == "stale"
    assert result["failures"][0]["message"] == (
        "the judge's grading request differs from the recording; rerun with --record"
    )
    assert "- Rubric: The reply is polite." in text_run.stdout  # only the changed line
    assert "+ Rubric: The reply is rude." in text_run.stdout
    assert "<conversation>" not in text_run.stdout


def test_a_grader_that_answers_neither_pass_nor_fail_fails_the_test(tmp_path, monkeypatch):
    rules = [(r"Rubric:", text("Hmm, hard to say.")), *SHOP_RULES]
    upstream = scripted(rules)
    try:
        path = write_shop(tmp_path, tests=TESTS)
        go_online(monkeypatch, upstream.url)
        result = run_test_command(str(path), "--live", "-k", "greets", "--format", "json")
    finally:
        upstream.stop()
    (test,) = json.loads(result.stdout)["tests"]
    assert test["status"] == "failed"
    assert test["failures"][0]["message"] == "the grader's answer is neither PASS nor FAIL"
    assert test["failures"][0]["detail"] == "Hmm, hard to say."
