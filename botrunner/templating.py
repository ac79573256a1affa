"""Jinja2 templates in bot files: compiled once at load, rendered cheaply per message.

Security rules this module enforces:

- Templates only ever come from the author's bot file. Values at render time (the user's
  message, the model's tool input) are data: they are never compiled, so "{{ 7*7 }}" in a
  message stays literal.
- `${NAME}` / `${NAME:-default}` (tool http fields only) are resolved from the environment at
  load time and rewritten into a private context variable *before* compiling
  (`${X}` -> `{{ __env[0] }}`), so a secret containing "{{" is never compiled and a "${X}"
  typed by the model is never expanded.
- In a tool URL the scheme and host are literal; every `{{ }}` output is percent-encoded for
  the place it lands (a path segment or the query string). Environment values, which the
  author controls, are inserted as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

if TYPE_CHECKING:
    from botrunner.bot import Location, ToolHttp

__all__ = [
    "ENV_REF",
    "BodyTemplate",
    "RenderError",
    "RenderedRequest",
    "Template",
    "TemplateProblem",
    "UrlTemplate",
    "environment",
    "render_request",
]

# The one environment for prompts and plain http fields. Lenient at render time: a missing
# `user.name` renders as empty text; undefined *top-level* names are rejected at load instead.
environment = SandboxedEnvironment(
    autoescape=False, keep_trailing_newline=True, undefined=jinja2.Undefined
)

# `${NAME}` or `${NAME:-default}`; anything else starting with "${" is reported by the loader.
ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
ANY_ENV_REF = re.compile(r"\$\{[^}\n]*\}?")
_SYNTAX_MARKS = ("{{", "{%", "{#")


class Trusted(str):
    """Text the author controls (a resolved environment variable): never encoded."""

    __slots__ = ()


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


class RenderError(ValueError):
    """A request that must not be sent, e.g. a header value with a line break in it."""


def resolve_env(name: str, default: str | None, env: Mapping[str, str]) -> str:
    """Shell semantics: `${X:-d}` uses d when X is unset or empty; `${X}` unset is empty."""
    value = env.get(name)
    if value:
        return value
    return default or ""


def _rewrite_env(source: str, env: Mapping[str, str]) -> tuple[str, list[Trusted]]:
    values: list[Trusted] = []

    def replace(match: re.Match[str]) -> str:
        values.append(Trusted(resolve_env(match["name"], match["default"], env)))
        return f"{{{{ __env[{len(values) - 1}] }}}}"

    return ENV_REF.sub(replace, source), values


def _locate(source: str, name: str, lineno: int) -> tuple[int, int]:
    """Best column for a variable name: its first use on `lineno` inside a tag."""
    lines = source.split("\n")
    pattern = re.compile(r"(?<![\w.'\"])" + re.escape(name) + r"\b")
    for index in [lineno - 1, *range(len(lines))]:
        if 0 <= index < len(lines):
            match = pattern.search(lines[index])
            if match:
                return index + 1, match.start()
    return lineno, 0


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


def _syntax_problem(exc: jinja2.TemplateSyntaxError, source: str) -> TemplateProblem:
    line = exc.lineno or 1
    lines = source.split("\n")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    column = len(text) - len(text.lstrip(" "))
    return TemplateProblem(
        f"template syntax error: {exc.message}",
        "Values are written {{ name }} and logic {% if ... %}...{% endif %}; check the braces "
        "and the tags on this line.",
        line,
        column,
    )


class Template:
    """One text from the bot file, compiled once. `render` is on the per-message hot path."""

    __slots__ = ("source", "location", "_compiled", "_env", "_undeclared")

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
            code, self._env = _rewrite_env(source, env)
            if not self._env:
                self._env = None
        self._compiled: jinja2.Template | None = None
        self._undeclared: list[tuple[str, int, int]] = []
        if any(mark in code for mark in _SYNTAX_MARKS):
            try:
                self._compiled, ast = _compile(_environment, code)
            except jinja2.TemplateSyntaxError as exc:
                raise _syntax_problem(exc, source) from None
            self._undeclared = _undeclared(ast, source)
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

    def render(self, context: Mapping[str, Any]) -> str:
        if self._compiled is None:
            return self.source
        if self._env is not None:
            context = {**context, "__env": self._env}
        return self._compiled.render(context)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _finalize_path(value: Any) -> Any:
    if isinstance(value, Trusted):
        return value
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    return quote(str(value), safe="")


def _finalize_query(value: Any) -> Any:
    if isinstance(value, Trusted):
        return value
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    return quote_plus(str(value))


_path_environment = environment.overlay(finalize=_finalize_path)
_query_environment = environment.overlay(finalize=_finalize_query)


def _split_query(source: str) -> int:
    """Index of the first "?" that is literal text (not inside a {{ }} or {% %}), or -1."""
    i, n = 0, len(source)
    while i < n:
        if source.startswith(("{{", "{%", "{#"), i):
            close = {"{{": "}}", "{%": "%}", "{#": "#}"}[source[i : i + 2]]
            end = source.find(close, i + 2)
            if end < 0:
                return -1
            i = end + 2
            continue
        if source[i] == "?":
            return i
        i += 1
    return -1


_URL_START = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)")


class UrlTemplate:
    """A tool URL: literal scheme and host; `{{ }}` outputs percent-encoded for their place."""

    __slots__ = ("source", "location", "_path", "_query", "_undeclared")

    def __init__(
        self, source: str, location: Location | None = None, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.source = source
        self.location = location
        match = _URL_START.match(source)
        if not match or match["scheme"].lower() not in ("http", "https"):
            raise TemplateProblem(
                "a tool URL must start with https:// (or http://)",
                "Write the full address, e.g. https://api.example.com/weather/{{ input.city }}",
                1,
                0,
            )
        authority = match["authority"]
        for mark in _SYNTAX_MARKS:
            at = authority.find(mark)
            if at >= 0:
                raise TemplateProblem(
                    "the host must be literal: the model controls input",
                    "Write the scheme and host out in full (https://api.example.com/...); "
                    "use {{ input.x }} only in the path, the params, the headers or the body.",
                    1,
                    match.start("authority") + at,
                )
        env = env if env is not None else {}
        split = _split_query(source)
        path_source = source if split < 0 else source[:split]
        self._path = Template(path_source, location, env=env, _environment=_path_environment)
        self._query: Template | None = None
        self._undeclared = self._path.undeclared()
        if split >= 0:
            try:
                self._query = Template(
                    source[split + 1 :], location, env=env, _environment=_query_environment
                )
            except TemplateProblem as exc:
                if exc.line == 1 and exc.column is not None:
                    exc.column += split + 1
                raise
            for name, line, col in self._query.undeclared():
                self._undeclared.append((name, line, col + (split + 1 if line == 1 else 0)))

    def undeclared(self) -> list[tuple[str, int, int]]:
        return list(self._undeclared)

    def render(self, input: Mapping[str, Any]) -> str:  # noqa: A002 - the template's own name
        context = {"input": input}
        url = self._path.render(context)
        if self._query is not None:
            url += "?" + self._query.render(context)
        return url

    def __repr__(self) -> str:
        return f"UrlTemplate({self.source!r})"


_SINGLE_EXPR = re.compile(r"\s*\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%).)*)\}\}\s*", re.DOTALL)


class _Expr:
    __slots__ = ("_expr", "_env")

    def __init__(self, expression: str, env: list[Trusted] | None) -> None:
        self._expr = environment.compile_expression(expression, undefined_to_none=True)
        self._env = env

    def __call__(self, context: dict[str, Any]) -> Any:
        if self._env is not None:
            context = {**context, "__env": self._env}
        value = self._expr(**context)
        return str(value) if isinstance(value, Trusted) else value


class BodyTemplate:
    """A JSON request body. A text that is exactly `{{ expr }}` yields the native value (numbers
    stay numbers); other texts render as text; everything else is sent as written."""

    __slots__ = ("source", "location", "_compiled", "_undeclared")

    def __init__(
        self, source: Any, location: Location | None = None, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.source = source
        self.location = location
        self._undeclared: list[tuple[tuple[str | int, ...], str, int, int]] = []
        self._compiled = self._compile(source, (), env if env is not None else {})

    def _compile(self, value: Any, path: tuple[str | int, ...], env: Mapping[str, str]) -> Any:
        if isinstance(value, dict):
            return {k: self._compile(v, (*path, k), env) for k, v in value.items()}
        if isinstance(value, list):
            return [self._compile(v, (*path, i), env) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        try:
            template = Template(value, env=env)
        except TemplateProblem as exc:
            exc.path = path
            raise
        self._undeclared.extend((path, *name) for name in template.undeclared())
        if template.is_static:
            return value
        code, values = _rewrite_env(value, env)
        match = _SINGLE_EXPR.fullmatch(code)
        if match:
            try:
                return _Expr(match["expr"], values or None)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateProblem(f"template syntax error: {exc.message}", path=path) from None
        return template

    def undeclared(self) -> list[tuple[tuple[str | int, ...], str, int, int]]:
        """(path inside the body, name, line, column) for each top-level name read."""
        return list(self._undeclared)

    def render(self, input: Mapping[str, Any]) -> Any:  # noqa: A002
        return _render_value(self._compiled, {"input": input})

    def __repr__(self) -> str:
        return f"BodyTemplate({self.source!r})"


def _render_value(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, _Expr):
        return value(context)
    if isinstance(value, dict):
        return {k: _render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class RenderedRequest:
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    json: Any | None


def render_request(http: ToolHttp, input: Mapping[str, Any]) -> RenderedRequest:  # noqa: A002
    """Fill a tool's http settings with the model's input, ready to send."""
    context = {"input": input}
    headers: dict[str, str] = {}
    for key, template in http.headers.items():
        value = template.render(context)
        if "\r" in value or "\n" in value:
            raise RenderError(
                f'the header "{key}" would contain a line break after filling in the input; '
                "the request was not sent"
            )
        headers[key] = value
    return RenderedRequest(
        method=http.method,
        url=http.url.render(input),
        params={key: template.render(context) for key, template in http.params.items()},
        headers=headers,
        json=http.body.render(input) if http.body is not None else None,
    )
