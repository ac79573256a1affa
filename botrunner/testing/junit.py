"""`--junit FILE`: JUnit XML, which GitHub, GitLab and Jenkins show natively. One testsuite
per test file; a failed or stale test is a <failure> (stale ones with type="stale"); a test
without a recording is <skipped>, or a failure under --strict."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import PurePath

from botrunner.testing.results import Failure, TestResult
from botrunner.testing.text import format_failures


def format_junit(results: list[TestResult], seconds: float, *, strict: bool = False) -> str:
    counters = {"tests": "0", "failures": "0", "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", name="botrunner test", time=_secs(seconds), **counters)
    suites: dict[str, ET.Element] = {}
    for result in results:
        suite = suites.get(result.file)
        if suite is None:
            suite = ET.SubElement(root, "testsuite", name=result.file, time="0", **counters)
            suites[result.file] = suite
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_classname(result.file),
            name=result.name,
            file=result.file,
            time=_secs(result.seconds),
        )
        kind = _outcome(result, strict)
        if kind == "failures":
            first = result.failures[0] if result.failures else _NOT_RECORDED
            failure = ET.SubElement(case, "failure", type=first.assertion, message=_message(first))
            failure.text = format_failures(result)
        elif kind == "skipped":
            ET.SubElement(case, "skipped", message=_NOT_RECORDED.message)
        for element in (suite, root):
            _add(element, "tests")
            if kind != "passed":
                _add(element, kind)
        suite.set("time", _secs(float(suite.get("time", "0")) + result.seconds))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_NOT_RECORDED = Failure("not_recorded", "not recorded: run botrunner test --record")


def _add(element: ET.Element, counter: str) -> None:
    element.set(counter, str(int(element.get(counter, "0")) + 1))


def _outcome(result: TestResult, strict: bool) -> str:
    if result.status in ("failed", "stale"):
        return "failures"
    if result.status == "not_recorded":
        return "failures" if strict else "skipped"
    return "passed"


def _message(failure: Failure) -> str:
    turn = f"turn {failure.turn}: " if failure.turn is not None else ""
    return f"{turn}{failure.message}"


def _classname(file: str) -> str:
    path = PurePath(file)
    name = path.name
    for suffix in (".tests.yaml", ".tests.yml"):
        name = name.removesuffix(suffix)
    folders = [p for p in path.parent.parts if p not in (path.anchor, ".", "..")]
    return ".".join([*folders, name])


def _secs(seconds: float) -> str:
    return f"{seconds:.3f}"
