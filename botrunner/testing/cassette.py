"""Cassettes: a test file's recorded model exchanges, in readable JSON beside it
(`weather.tests.yaml` -> `weather.tests.cassette.json`).

One entry per test, by name: the time its templates saw (`now`) and its exchanges in order (the
request botrunner sent, and the model's reply or error). Nothing else is kept: no headers, no
keys; values of the bot's secrets and of the API key variables are redacted before writing,
should one ever reach a message.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from botrunner.botfile.problems import Problem
from botrunner.tools import redact

FORMAT = 1
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY")


class CassetteError(Exception):
    """A cassette that cannot be read; `problem` says where and how to fix it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def read_cassette(path: Path) -> dict[str, dict[str, Any]] | None:
    """Test name -> its entry, or None when there is no cassette. Raises CassetteError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, 1, 1, f"cannot read the cassette: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _error(
            path, exc.lineno, exc.colno, f"the cassette is not valid JSON: {exc.msg}"
        ) from None
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, dict) or data.get("format") != FORMAT:
        raise _error(path, 1, 1, f"this is not a botrunner cassette (format {FORMAT})")
    for name, entry in tests.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("exchanges"), list):
            raise _error(path, 1, 1, f'the entry of the test "{name}" has no exchanges list')
        for number, exchange in enumerate(entry["exchanges"], 1):
            if not _exchange_ok(exchange):
                raise _error(
                    path,
                    1,
                    1,
                    f'exchange {number} of the test "{name}" is not a request with a reply '
                    "or an error",
                )
    return tests


def _exchange_ok(exchange: Any) -> bool:
    if not isinstance(exchange, dict) or not isinstance(exchange.get("request"), dict):
        return False
    reply, error = exchange.get("reply"), exchange.get("error")
    if isinstance(error, dict):
        return True
    return isinstance(reply, dict) and isinstance(reply.get("content"), list)


def write_cassette(
    path: Path,
    bot_file: str,
    entries: Mapping[str, Mapping[str, Any]],
    secrets: Iterable[str] = (),
) -> None:
    """Write the cassette atomically (a reader sees the old file or the new one)."""
    hidden = frozenset(s for s in secrets if s) | {
        value for name in KEY_VARIABLES if (value := os.environ.get(name))
    }
    data = {
        "format": FORMAT,
        "recorded_with": f"botrunner {_version()}",
        "bot": bot_file,
        "tests": _redacted(dict(entries), hidden),
    }
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _redacted(value: Any, secrets: frozenset[str]) -> Any:
    if not secrets:
        return value
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, secrets) for v in value]
    return redact(value, secrets) if isinstance(value, str) else value


def _version() -> str:
    try:
        return version("botrunner")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "dev"


def _error(path: Path, line: int, column: int, message: str) -> CassetteError:
    hint = f"Record it again: botrunner test {cassette_source(path)} --record"
    return CassetteError(Problem(str(path), line, column, "error", message, hint))


def cassette_source(path: Path) -> str:
    """The test file a cassette belongs to (for hints)."""
    name = path.name.removesuffix(".cassette.json")
    return str(path.with_name(name + ".yaml"))
