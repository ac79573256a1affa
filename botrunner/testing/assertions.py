"""A turn's assertions (`expect:`) checked against what the turn did. Every failure says what
was expected and what the turn gave instead (`judge` is graded separately, by `judge`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botrunner.events import Error, Usage
from botrunner.testing.results import Failure
from botrunner.testing.testfile import ExpectedCall, ExpectedRequest, Turn
from botrunner.testing.tools import CapturedCall, SentRequest

# How much of a reply a failure quotes.
QUOTE_CHARS = 300


@dataclass(slots=True)
class TurnOutcome:
    """What one turn did: the reply's text, its tool calls, its error (if it failed), tokens."""

    text: str = ""
    calls: list[CapturedCall] = field(default_factory=list)
    error: Error | None = None
    usage: Usage = field(default_factory=Usage)


def check_turn(number: int, turn: Turn, outcome: TurnOutcome) -> list[Failure]:
    expect, text = turn.expect, outcome.text
    failures: list[Failure] = []

    def fail(assertion: str, message: str, expected: Any = None, got: Any = None) -> None:
        failures.append(Failure(assertion, message, number, turn.user, expected, got))

    failures += uncanned(number, turn, outcome)
    error = outcome.error
    if expect.error is not None:
        if error is None:
            fail("error", f"the turn should fail with {expect.error}", expect.error, quote(text))
        elif error.code != expect.error:
            fail("error", "the turn failed with another error", expect.error, _error(error))
        return failures
    if error is not None:
        fail("error", "the turn failed instead of answering", "a reply", _error(error))
        return failures
    for needle in expect.contains:
        if needle not in text:
            fail("contains", f'the reply does not contain "{needle}"', needle, quote(text))
    for needle in expect.not_contains:
        if needle in text:
            fail("not_contains", f'the reply contains "{needle}"', needle, quote(text))
    for pattern in expect.matches:
        if not pattern.search(text):
            fail(
                "matches",
                f"the reply does not match /{pattern.pattern}/",
                pattern.pattern,
                quote(text),
            )
    if expect.no_tool_calls and outcome.calls:
        names = ", ".join(c.tool for c in outcome.calls)
        fail(
            "no_tool_calls",
            f"the model called {names}",
            "no tool calls",
            _calls_text(outcome.calls),
        )
    if expect.tool_calls:
        failures += [
            Failure(f.assertion, f.message, number, turn.user, f.expected, f.got)
            for f in check_calls(expect.tool_calls, outcome.calls)
        ]
    limit = expect.max_output_tokens
    if limit is not None and outcome.usage.output_tokens > limit:
        fail(
            "max_output_tokens",
            f"the reply used {outcome.usage.output_tokens} output tokens",
            f"at most {limit}",
            outcome.usage.output_tokens,
        )
    return failures


def uncanned(number: int, turn: Turn, outcome: TurnOutcome) -> list[Failure]:
    """A tool called without a canned response: the test must say so (its call failed, and
    a replay goes stale on the changed tool result)."""
    return [
        Failure(
            "tools",
            f"the model called {call.tool}, which has no canned response in this test "
            f"(add one under tools: {call.tool}:)",
            number,
            turn.user,
            got=_call_text(call),
        )
        for call in outcome.calls
        if not call.canned
    ]


def check_calls(expected: tuple[ExpectedCall, ...], calls: list[CapturedCall]) -> list[Failure]:
    """Each expected call must match a later call than the one before it; other calls may come
    in between. A name that is called but never matches is reported with its first call."""
    position = 0
    for want in expected:
        candidates = [(i, c) for i, c in enumerate(calls) if i >= position and c.tool == want.name]
        matched = next((i for i, c in candidates if not _mismatch(want, c)), None)
        if matched is not None:
            position = matched + 1
            continue
        wanted = _want_text(want)
        if not candidates:
            message = f"no call of {want.name}" + (" after the calls before it" if position else "")
            return [Failure("tool_calls", message, expected=wanted, got=_calls_text(calls))]
        what, expected_part, got_part = _mismatch(want, candidates[0][1]) or ("", None, None)
        return [Failure("tool_calls", f"{want.name}: {what}", expected=expected_part, got=got_part)]
    return []


def _mismatch(want: ExpectedCall, call: CapturedCall) -> tuple[str, Any, Any] | None:
    """(what differs, expected, got), or None when `call` is what `want` asks for."""
    if want.input is not None and not subset(want.input, call.input):
        return "the input differs", _json(want.input), _json(call.input)
    if want.request is not None:
        if call.request is None:
            return "no HTTP request was sent (the input was refused)", "a request", None
        return _request_mismatch(want.request, call.request)
    return None


def _request_mismatch(want: ExpectedRequest, sent: SentRequest) -> tuple[str, Any, Any] | None:
    if want.method is not None and want.method.upper() != sent.method:
        return "the request's method differs", want.method, sent.method
    if want.url is not None and want.url != sent.url:
        return "the request's URL differs", want.url, sent.url
    if want.url_startswith is not None and not sent.url.startswith(want.url_startswith):
        return "the request's URL starts differently", want.url_startswith, sent.url
    if want.query is not None:
        got = dict(sent.query)
        for name, value in want.query.items():
            if got.get(name) != _param(value):
                return f'the query parameter "{name}" differs', _param(value), got.get(name)
    if want.headers is not None:
        for name, value in want.headers.items():
            have = sent.headers.get(name.lower())
            if have is None:
                return f'the request has no "{name}" header', name, ", ".join(sorted(sent.headers))
            if value is not None and have != value:
                return f'the "{name}" header differs', value, have
    if want.has_body:
        text = sent.body.decode("utf-8", "replace") or "(no body)"
        if isinstance(want.body, dict | list):
            try:
                body = json.loads(text)
            except ValueError:
                return "the request's body is not JSON", _json(want.body), text
            if not subset(want.body, body):
                return "the request's body differs", _json(want.body), text
        elif str(want.body) != text:
            return "the request's body differs", str(want.body), text
    return None


def subset(want: Any, got: Any) -> bool:
    """`got` has everything `want` has: mappings may hold more keys, lists match item by item."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(
            k in got and subset(v, got[k]) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(want) == len(got)
            and all(subset(a, b) for a, b in zip(want, got, strict=True))
        )
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    return bool(want == got)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def quote(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _error(error: Error) -> str:
    return f"{error.code}: {error.message}"


def _want_text(want: ExpectedCall) -> str:
    return want.name + (f" {_json(want.input)}" if want.input is not None else "")


def _call_text(call: CapturedCall) -> str:
    text = f"{call.tool} {_json(call.input)}"
    return text + (f" -> {call.request.method} {call.request.url}" if call.request else "")


def _calls_text(calls: list[CapturedCall]) -> str:
    return "; ".join(_call_text(c) for c in calls) or "no tool calls"
