"""The text report: one line per test, like a test runner, and under a test that did not pass,
each failure with its turn, the assertion, and what was expected against what came."""

from __future__ import annotations

from typing import Any

from botrunner.testing.results import Failure, TestResult

LABELS = {
    "passed": "passed",
    "failed": "FAILED",
    "stale": "STALE",
    "not_recorded": "not recorded",
}
WIDTH = max(len(label) for label in LABELS.values()) + 2


def format_result(result: TestResult) -> str:
    """The test's line, then its failures indented below it."""
    line = f"{LABELS[result.status]:<{WIDTH}}{result.file}: {result.name}"
    if result.status == "not_recorded":
        line += "  (no recording: run botrunner test --record)"
    return line + "\n" + format_failures(result)


def format_failures(result: TestResult) -> str:
    """Each failure: where (turn and message), what, expected, got, and any detail."""
    out = []
    for failure in result.failures:
        out += _failure(failure)
    return "".join(line + "\n" for line in out)


def _failure(failure: Failure) -> list[str]:
    where = ""
    if failure.turn is not None:
        said = f' ("{_short(failure.user)}")' if failure.user is not None else ""
        where = f"turn {failure.turn}{said}: "
    name = "" if failure.assertion in ("stale", "error") else f"{failure.assertion}: "
    lines = [f"    {where}{name}{failure.message}"]
    if failure.expected is not None:
        lines += _field("expected", failure.expected)
    if failure.got is not None:
        lines += _field("got", failure.got)
    if failure.detail:
        label = "grader" if failure.assertion == "judge" else None
        for index, text in enumerate(failure.detail.splitlines()):
            prefix = f"{label}:   " if label and index == 0 else ""
            lines.append(f"        {prefix}{text}")
    return lines


def _field(label: str, value: Any) -> list[str]:
    text = str(value)
    first, *rest = text.splitlines() or [""]
    pad = " " * (len("expected: ") - len(label) - 2)
    return [f"        {label}:{pad} {first}", *(f"        {' ' * 10}{line}" for line in rest)]


def _short(text: str | None, limit: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
