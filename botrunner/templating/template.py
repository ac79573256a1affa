"""`Template`: one Jinja2 text from the bot file, compiled once at load, rendered per message."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from botrunner.templating.envrefs import Trusted, rewrite_env
from botrunner.templating.location import Location
from botrunner.templating.sandbox import (
    MAX_DIGITS,
    RenderError,
    RenderFailed,
    environment,
    render_failure,
)

__all__ = ["SYNTAX_MARKS", "RenderFailed", "Template", "TemplateProblem", "environment"]

# A text without any of these is plain text: it is never compiled.
SYNTAX_MARKS = ("{{", "{%", "{#")


class TemplateProblem(ValueError):
    """A template that cannot be compiled. `line` is 1-based and `column` 0-based, both inside
    the template's own text; `path` locates a text inside a JSON body."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        line: int = 1,
        column: int | None = None,
        path: tuple[str | int, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.line = line
        self.column = column
        self.path = path


def _search(source: str, pattern: re.Pattern[str], lineno: int) -> tuple[int, int] | None:
    """Position of `pattern`'s first match on `lineno`, else anywhere: (line, column)."""
    lines = source.split("\n")
    for index in [lineno - 1, *range(len(lines))]:
        if 0 <= index < len(lines):
            match = pattern.search(lines[index])
            if match:
                return index + 1, match.start()
    return None


def _name_pattern(name: str, after: str = "") -> re.Pattern[str]:
    return re.compile(r"(?<![\w.'\"])" + re.escape(name) + r"\b" + after)


def _locate(source: str, name: str, lineno: int) -> tuple[int, int]:
    """Best column for a variable name: its first use on `lineno` inside a tag."""
    return _search(source, _name_pattern(name), lineno) or (lineno, 0)


def _locate_field(source: str, name: str, field: str, lineno: int) -> tuple[int, int]:
    """Best position of `name.field` or `name['field']`: its first use on `lineno`."""
    quoted = re.escape(field)
    after = rf"\s*(?:\.\s*{quoted}\b|\[\s*['\"]{quoted}['\"]\s*\])"
    return _search(source, _name_pattern(name, after), lineno) or _locate(source, name, lineno)


def _locate_whole(source: str, name: str, lineno: int) -> tuple[int, int]:
    """Best position of `name` used other than as `name.x` / `name[...]`."""
    found = _search(source, _name_pattern(name, r"(?!\s*[.\[])"), lineno)
    return found or _locate(source, name, lineno)


def _undeclared(ast: nodes.Template, source: str) -> list[tuple[str, int, int]]:
    # Cheaper than jinja2.meta.find_undeclared_variables (which runs a second code generator):
    # names read anywhere, minus names the template assigns itself ({% set %}, loops, macros).
    first: dict[str, int] = {}
    assigned: set[str] = set()
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load":
            first.setdefault(node.name, node.lineno)
        else:
            assigned.add(node.name)
    found = []
    for name, lineno in first.items():
        if name in assigned or name == "__env":
            continue
        line, col = _locate(source, name, lineno)
        found.append((name, line, col))
    found.sort(key=lambda item: (item[1], item[2]))
    return found


@lru_cache(maxsize=2048)
def _compile(
    environment: SandboxedEnvironment, code: str
) -> tuple[jinja2.Template, nodes.Template]:
    """Compile once per process: many bots share templates like {{ input.city }}."""
    ast = environment.parse(code)
    return environment.from_string(ast), ast  # type: ignore[arg-type]


def _syntax_problem(exc: jinja2.TemplateSyntaxError, source: str, code: str) -> TemplateProblem:
    line = exc.lineno or 1
    lines = source.split("\n")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    column = len(text) - len(text.lstrip(" "))
    # The offending character's column, when the template was compiled as written (a `${NAME}`
    # rewrite shifts offsets) and the message names the token.
    offset = _error_offset(exc, code, line) if code == source else None
    if offset is not None:
        line = source.count("\n", 0, offset) + 1
        column = offset - (source.rfind("\n", 0, offset) + 1)
    return TemplateProblem(
        f"template syntax error: {exc.message}",
        "Values are written {{ name }} and logic {% if ... %}...{% endif %}; check the braces "
        "and the tags on this line.",
        line,
        column,
    )


_LONG_NUMBER = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")


def _compile_problem(exc: Exception, source: str) -> TemplateProblem:
    """A template Jinja could not compile for a reason other than its syntax."""
    long_number = _LONG_NUMBER.search(source)
    if isinstance(exc, ValueError) and long_number:
        # Jinja's lexer converts number literals with int(), which refuses over 4300 digits.
        start = long_number.start()
        return TemplateProblem(
            f"a number in this template has more than {MAX_DIGITS} digits",
            "Write the number as text (in quotes) or use a shorter one.",
            source.count("\n", 0, start) + 1,
            start - (source.rfind("\n", 0, start) + 1),
        )
    if isinstance(exc, RecursionError):
        return TemplateProblem(
            "the template nests too deeply to compile",
            "Use fewer nested brackets, tags or filters in one expression.",
        )
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    return TemplateProblem(
        f"the template could not be compiled ({type(exc).__name__}: {reason})",
        "Simplify the expressions in this template; if it looks right, report this as a "
        "botrunner bug with the template.",
    )


# Jinja names the token it stopped at in its messages: "unexpected '}'", "got 'x'",
# "unknown tag 'endfo'"; the lexer gives an offset: "unexpected char '!' at 12".
_AT_OFFSET = re.compile(r"unexpected char .* at (\d+)$")
_NAMED = re.compile(r"(?:unexpected|got|unknown tag) '([^']+)'")
_DESCRIBED = {"end of print statement": "}}", "end of statement block": "%}"}


def _error_offset(exc: jinja2.TemplateSyntaxError, code: str, line: int) -> int | None:
    message = exc.message or ""
    at = _AT_OFFSET.search(message)
    if at:
        return min(int(at.group(1)), len(code))
    if message.startswith("unexpected end of template,"):  # inside an unfinished tag
        return len(code.rstrip())
    named = _NAMED.search(message)
    if not named:
        return None
    wanted = _DESCRIBED.get(named.group(1), named.group(1))
    position = 0
    try:
        for lineno, kind, value in environment.lexer.tokeniter(code, None):
            found = code.find(value, position)
            if found < 0:
                return None
            position = found + len(value)
            if lineno == line and kind != "data" and value == wanted:
                return found
    except jinja2.TemplateSyntaxError:  # the lexer itself stopped at the token
        found = code.find(wanted, position)
        return found if found >= 0 else None
    return None


class Template:
    """One text from the bot file, compiled once. `render` is on the per-message hot path."""

    __slots__ = ("source", "location", "_compiled", "_env", "_undeclared", "_ast")

    def __init__(
        self,
        source: str,
        location: Location | None = None,
        *,
        env: Mapping[str, str] | None = None,
        _environment: SandboxedEnvironment = environment,
    ) -> None:
        self.source = source
        self.location = location
        code = source
        self._env: list[Trusted] | None = None
        if env is not None and "${" in source:
            code, self._env = rewrite_env(source, env)
            if not self._env:
                self._env = None
        self._compiled: jinja2.Template | None = None
        self._undeclared: list[tuple[str, int, int]] = []
        self._ast: nodes.Template | None = None
        if any(mark in code for mark in SYNTAX_MARKS):
            try:
                self._compiled, ast = _compile(_environment, code)
            except jinja2.TemplateSyntaxError as exc:
                raise _syntax_problem(exc, source, code) from None
            except Exception as exc:  # noqa: BLE001 - whatever Jinja raises, a problem here
                raise _compile_problem(exc, source) from None
            self._undeclared = _undeclared(ast, source)
            self._ast = ast
            if "__env" in source:
                raise TemplateProblem(
                    'names starting with "__" are reserved', "Rename the variable.", 1, None
                )

    @property
    def is_static(self) -> bool:
        return self._compiled is None

    def undeclared(self) -> list[tuple[str, int, int]]:
        """Top-level names the template reads: (name, line 1-based, column 0-based)."""
        return list(self._undeclared)

    def fields(self, name: str) -> tuple[list[tuple[str, int, int]], list[tuple[int, int]]]:
        """How the template reads the top-level `name`: the fields it reads as `name.x` or
        `name['x']` (field, line 1-based, column 0-based), and where it uses `name` in any
        other way (printed whole, looped over, passed to a filter): (line, column)."""
        if self._ast is None:
            return [], []
        found: list[tuple[str, int, int]] = []
        direct: set[int] = set()
        for node in self._ast.find_all((nodes.Getattr, nodes.Getitem)):
            target = node.node
            if not (isinstance(target, nodes.Name) and target.name == name):
                continue
            if isinstance(node, nodes.Getattr):
                field = node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                field = node.arg.value
            else:
                continue
            direct.add(id(target))
            found.append((field, *_locate_field(self.source, name, field, node.lineno)))
        whole = [
            _locate_whole(self.source, n.name, n.lineno)
            for n in self._ast.find_all(nodes.Name)
            if n.name == name and n.ctx == "load" and id(n) not in direct
        ]
        found.sort(key=lambda item: (item[1], item[2]))
        return found, sorted(whole)

    def render(self, context: Mapping[str, Any]) -> str:
        if self._compiled is None:
            return self.source
        if self._env is not None:
            context = {**context, "__env": self._env}
        try:
            return self._compiled.render(context)
        except RenderError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as RenderFailed, with its line
            raise render_failure(exc) from exc

    def __repr__(self) -> str:
        return f"Template({self.source!r})"
