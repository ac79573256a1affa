"""The typed, frozen form of a test file (`*.tests.yaml`): what the loader returns and the
runner consumes. Built only by `botrunner.testing.loader`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botrunner.bot import Bot
from botrunner.botfile.livebot import TEST_SUFFIXES, is_test_file

__all__ = [
    "TEST_SUFFIXES",
    "BotTest",
    "CannedResponse",
    "Expect",
    "ExpectedCall",
    "ExpectedRequest",
    "TestFile",
    "Turn",
    "cassette_path",
    "is_test_file",
]

CASSETTE_SUFFIX = ".cassette.json"


def cassette_path(test_file: Path) -> Path:
    """`weather.tests.yaml` -> `weather.tests.cassette.json`, beside it."""
    name = test_file.name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return test_file.with_name(name + CASSETTE_SUFFIX)


@dataclass(frozen=True, slots=True)
class CannedResponse:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExpectedRequest:
    method: str | None = None
    url: str | None = None
    url_startswith: str | None = None
    query: Mapping[str, Any] | None = None
    # Header name -> expected value, or None when only its presence is checked.
    headers: Mapping[str, str | None] | None = None
    body: Any = None
    has_body: bool = False


@dataclass(frozen=True, slots=True)
class ExpectedCall:
    name: str
    input: Mapping[str, Any] | None = None
    request: ExpectedRequest | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    matches: tuple[re.Pattern[str], ...] = ()
    tool_calls: tuple[ExpectedCall, ...] = ()
    no_tool_calls: bool = False
    max_output_tokens: int | None = None
    judge: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    user: str
    expect: Expect = field(default_factory=Expect)


@dataclass(frozen=True, slots=True)
class BotTest:
    name: str
    turns: tuple[Turn, ...]
    user: Mapping[str, Any] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    tools: Mapping[str, CannedResponse] = field(default_factory=dict)
    # The time the templates see; None: the recording's (replay) or the real one (live).
    now: dt.datetime | None = None
    line: int = 1


@dataclass(frozen=True, slots=True)
class TestFile:
    __test__ = False  # not a pytest class

    path: Path
    bot: Bot
    tests: tuple[BotTest, ...]

    @property
    def cassette(self) -> Path:
        return cassette_path(self.path)
