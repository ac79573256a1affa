"""Problems found in a bot file, and the three ways `botrunner validate` prints them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a bot file, located like a compiler error (1-based line and column)."""

    file: str
    line: int
    column: int
    severity: Severity
    message: str
    hint: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        return format_text([self]).rstrip("\n")


def format_text(problems: Iterable[Problem]) -> str:
    """`FILE:LINE:COL: error: MESSAGE`, then the hint indented on its own line."""
    out: list[str] = []
    for p in problems:
        out.append(f"{p.file}:{p.line}:{p.column}: {p.severity}: {p.message}\n")
        if p.hint:
            out.append(f"    hint: {p.hint}\n")
    return "".join(out)


def format_json(problems: Iterable[Problem]) -> str:
    return json.dumps([p.to_dict() for p in problems], indent=2, ensure_ascii=False) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(problems: Iterable[Problem]) -> str:
    """GitHub Actions workflow commands: each problem becomes an annotation on the file."""
    out: list[str] = []
    for p in problems:
        body = p.message if not p.hint else f"{p.message}\nhint: {p.hint}"
        out.append(
            f"::{p.severity} file={_escape_property(p.file)},line={p.line},col={p.column}"
            f"::{_escape_data(body)}\n"
        )
    return "".join(out)


FORMATTERS = {"text": format_text, "json": format_json, "github": format_github}
