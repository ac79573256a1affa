"""`FileCheck`: one check of one bot file, shared by the schema pass and the semantic rules.

It holds the parsed source and what has been found so far, and answers the questions every
rule asks: where is this path in the file, what value is there, did the schema already reject it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from botrunner.bot import EnvRef, Location
from botrunner.botfile.problems import Problem
from botrunner.botfile.yamlsrc import Path as PathT
from botrunner.botfile.yamlsrc import Source

__all__ = ["FileCheck", "PathT", "closest", "display", "texts"]


def display(path: PathT) -> str:
    """A path as the author would write it: `tools[0].http.url`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "the top level"


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` is most likely a misspelling of, for a "did you mean" hint."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def texts(
    value: Any, path: PathT, notes_are_data: Callable[[PathT], bool]
) -> Iterator[tuple[PathT, str]]:
    """Every text in `value` with its path. Keys starting with x- are the author's notes and
    are skipped, except in the mappings `notes_are_data` names (the author's own data)."""
    if isinstance(value, dict):
        keep_notes = notes_are_data(path)
        for key, item in value.items():
            if keep_notes or not key.startswith("x-"):
                yield from texts(item, (*path, key), notes_are_data)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from texts(item, (*path, index), notes_are_data)
    elif isinstance(value, str):
        yield path, value


class FileCheck:
    """The state of one check; the passes add to `problems`, `failed` and `env_refs`."""

    def __init__(self, src: Source, env: Mapping[str, str]) -> None:
        self.src = src
        self.env = env
        self.schema_problems: list[Problem] = []
        self.problems: list[Problem] = []  # semantic ones
        self.failed: list[PathT] = []  # where the schema found something wrong
        self.env_refs: list[EnvRef] = []

    def error(self, pos: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(self.src.problem(pos, message, hint))

    def warn(self, pos: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(self.src.problem(pos, message, hint, "warning"))

    def location(self, path: PathT) -> Location:
        line, column = self.src.text_pos(path, 1, 0)
        return Location(self.src.file, line, column)

    def offset_pos(self, path: PathT, text: str, offset: int) -> tuple[int, int]:
        """File position of character `offset` of the text at `path`."""
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1)
        return self.src.text_pos(path, line, col)

    def ok(self, path: PathT) -> bool:
        """True when the schema found nothing wrong at, above or below `path`."""
        for bad in self.failed:
            n = min(len(bad), len(path))
            if bad[:n] == path[:n]:
                return False
        return True

    def get(self, path: PathT) -> Any:
        value: Any = self.src.data
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return None
        return value
