"""Reading a test file (`*.tests.yaml`) the way bot files are read: YAML with positions, the
schema pass of `schemas/tests.schema.json` (with "did you mean"), then the rules the schema
cannot say (the bot file exists and is valid, names are unique and name what the bot has,
regular expressions compile), every problem at its file:line:col.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botrunner.bot import Bot
from botrunner.botfile.filecheck import FileCheck, PathT, closest
from botrunner.botfile.loader import check_file, read_yaml
from botrunner.botfile.problems import Problem
from botrunner.botfile.schema import TESTS_SCHEMA_NAME
from botrunner.botfile.schemacheck import check_schema
from botrunner.testing.testfile import (
    BotTest,
    CannedResponse,
    Expect,
    ExpectedCall,
    ExpectedRequest,
    TestFile,
    Turn,
    is_test_file,
)

EMPTY_HINT = "A test file needs bot: and tests:. See docs/testing.md."


class TestFileError(Exception):
    """A test file that cannot be run; `.problems` holds every problem found."""

    __test__ = False  # not a pytest class

    def __init__(self, path: str | os.PathLike[str], problems: list[Problem]) -> None:
        self.path, self.problems = str(path), problems
        super().__init__(f"{self.path}: {len(problems)} problem(s)")


def load_test_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> TestFile:
    test_file, problems = check_test_file(path, env=env)
    if test_file is None:
        raise TestFileError(path, problems)
    return test_file


def check_test_file(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> tuple[TestFile | None, list[Problem]]:
    """Check a test file. Returns the `TestFile` (None if there is any error) and all problems."""
    env = os.environ if env is None else env
    _, src, problems = read_yaml(path, empty_hint=EMPTY_HINT)
    if src is None:
        return None, problems
    check = FileCheck(src, env)
    check_schema(check, TESTS_SCHEMA_NAME)
    bot = _check_bot(check, Path(path))
    rules = _Rules(check, bot)
    tests = rules.tests()
    key = lambda p: (p.line, p.column)  # noqa: E731
    problems = (
        src.problems + sorted(check.schema_problems, key=key) + sorted(check.problems, key=key)
    )
    if bot is None or any(p.is_error for p in problems):
        return None, problems
    return TestFile(Path(path), bot, tuple(tests)), problems


def _check_bot(check: FileCheck, path: Path) -> Bot | None:
    name = check.get(("bot",))
    if not check.ok(("bot",)) or not isinstance(name, str):
        return None
    pos = check.src.node_pos(("bot",))
    bot_path = path.parent / name
    if not bot_path.is_file():
        check.error(
            pos,
            f'the bot file "{name}" does not exist (looked for {bot_path})',
            "Give the bot file's path relative to this test file, e.g. weather.yaml.",
        )
        return None
    if is_test_file(bot_path):
        check.error(pos, f'"{name}" is a test file, not a bot file', "Name the bot's own file.")
        return None
    bot, problems = check_file(bot_path, env=check.env)
    if bot is None:
        errors = sum(p.is_error for p in problems)
        check.error(
            pos,
            f"the bot file {bot_path} has {errors} error{'s' if errors != 1 else ''}",
            f"Run botrunner validate {bot_path} and fix them first.",
        )
    return bot


class _Rules:
    """The checks after the schema pass, building the typed tests as they go."""

    def __init__(self, check: FileCheck, bot: Bot | None) -> None:
        self.check, self.bot = check, bot

    def tests(self) -> list[BotTest]:
        check = self.check
        items = check.get(("tests",))
        if not isinstance(items, list):
            return []
        file_now = self.now(("now",))
        seen: dict[str, int] = {}
        tests = []
        for index, item in enumerate(items):
            path = ("tests", index)
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str):
                line = check.src.node_pos((*path, "name"))[0]
                if name in seen:
                    check.error(
                        check.src.node_pos((*path, "name")),
                        f'a test named "{name}" is already on line {seen[name]}',
                        "Give each test its own name: reports and -k use it.",
                    )
                seen.setdefault(name, line)
            test = self.test(path, item, file_now)
            if test is not None:
                tests.append(test)
        return tests

    def test(self, path: PathT, item: Any, file_now: dt.datetime | None) -> BotTest | None:
        if not isinstance(item, dict):
            return None
        self.known(path, "vars", self.bot.variables if self.bot else None, "variable")
        self.known(path, "tools", self.tool_names(), "tool")
        tools = {
            name: self.canned((*path, "tools", name), value)
            for name, value in (item.get("tools") or {}).items()
            if isinstance(value, dict) and not name.startswith("x-")
        }
        turns = [
            self.turn((*path, "turns", i), turn) for i, turn in enumerate(item.get("turns") or [])
        ]
        if not self.check.ok(path):
            return None
        return BotTest(
            name=item["name"],
            turns=tuple(turns),
            user=dict(item.get("user") or {}),
            vars=dict(item.get("vars") or {}),
            tools=tools,
            now=self.now((*path, "now")) or file_now,
            line=self.check.src.node_pos(path)[0],
        )

    def tool_names(self) -> list[str] | None:
        return [tool.name for tool in self.bot.tools] if self.bot else None

    def known(self, path: PathT, key: str, names: Any, what: str) -> None:
        """Every key of the mapping at `path.key` must be one of `names` (None: unknown)."""
        given = self.check.get((*path, key))
        if names is None or not isinstance(given, dict):
            return
        for name in given:
            if name in names or name.startswith("x-") or not self.check.ok((*path, key, name)):
                continue
            close = closest(name, list(names))
            if close:
                hint = f'Did you mean "{close}"?'
            elif names:
                hint = f"The bot's {what}s: {', '.join(names)}."
            else:
                hint = f"The bot file declares no {what}s."
            self.check.error(
                self.check.src.key_pos((*path, key, name)), f'the bot has no {what} "{name}"', hint
            )

    def canned(self, path: PathT, value: dict[str, Any]) -> CannedResponse:
        headers = {str(k): str(v) for k, v in (value.get("headers") or {}).items()}
        if "json" in value and "body" in value:
            self.check.error(
                self.check.src.key_pos((*path, "body")),
                "a canned response has either json: or body:, not both",
                "Keep json: for a JSON body, or body: for plain text.",
            )
        if "json" in value:
            body = json.dumps(value["json"], ensure_ascii=False).encode()
            kind = "application/json"
        else:
            body, kind = str(value.get("body", "")).encode(), "text/plain; charset=utf-8"
        if not any(name.lower() == "content-type" for name in headers):
            headers["content-type"] = kind
        return CannedResponse(int(value.get("status", 200)), body, headers)

    def turn(self, path: PathT, value: Any) -> Turn:
        if not isinstance(value, dict):
            return Turn("")
        expect = value.get("expect") or {}
        epath = (*path, "expect")
        calls = expect.get("tool_calls") or []
        return Turn(
            user=str(value.get("user", "")),
            expect=Expect(
                contains=_texts(expect.get("contains")),
                not_contains=_texts(expect.get("not_contains")),
                matches=self.patterns((*epath, "matches"), expect.get("matches")),
                tool_calls=tuple(
                    self.call((*epath, "tool_calls", i), call) for i, call in enumerate(calls)
                ),
                no_tool_calls=expect.get("no_tool_calls") is True,
                max_output_tokens=expect.get("max_output_tokens"),
                judge=expect.get("judge"),
                error=expect.get("error"),
            ),
        )

    def patterns(self, path: PathT, value: Any) -> tuple[re.Pattern[str], ...]:
        if not self.check.ok(path):
            return ()
        found = []
        listed = isinstance(value, list)
        for index, text in enumerate(_texts(value)):
            where = (*path, index) if listed else path
            try:
                found.append(re.compile(text))
            except re.error as exc:
                pos = self.check.offset_pos(where, text, exc.pos or 0)
                self.check.error(
                    pos,
                    f"this regular expression does not compile: {exc.msg}",
                    "Check the brackets and escape special characters with \\ "
                    "(in double quotes, write \\\\).",
                )
        return tuple(found)

    def call(self, path: PathT, value: Any) -> ExpectedCall:
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return ExpectedCall("")
        names = self.tool_names()
        if names is not None and value["name"] not in names and self.check.ok((*path, "name")):
            close = closest(value["name"], names)
            self.check.error(
                self.check.src.node_pos((*path, "name")),
                f'the bot has no tool "{value["name"]}"',
                f'Did you mean "{close}"?' if close else f"The bot's tools: {', '.join(names)}.",
            )
        request = value.get("request")
        return ExpectedCall(
            value["name"],
            value.get("input"),
            _request(request) if isinstance(request, dict) else None,
        )

    def now(self, path: PathT) -> dt.datetime | None:
        text = self.check.get(path)
        if not isinstance(text, str) or not self.check.ok(path):
            return None
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            self.check.error(
                self.check.src.node_pos(path),
                f'"{text}" is not a date and time botrunner can read',
                'Write it as ISO 8601, e.g. "2025-06-02T09:30:00+02:00".',
            )
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def _request(value: dict[str, Any]) -> ExpectedRequest:
    headers = value.get("headers")
    if isinstance(headers, list):
        headers = {str(name): None for name in headers}
    elif isinstance(headers, dict):
        headers = {str(name): str(v) for name, v in headers.items()}
    return ExpectedRequest(
        method=value.get("method"),
        url=value.get("url"),
        url_startswith=value.get("url_startswith"),
        query=value.get("query"),
        headers=headers,
        body=value.get("body"),
        has_body="body" in value,
    )
