"""A tool's HTTP request: its URL and JSON body templates, and filling them with the model's input.

In a tool URL the scheme and host are literal; every `{{ }}` output is percent-encoded for the
place it lands (a path segment or the query string). Environment values, which the author
controls, are inserted as they are.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, unquote

import jinja2

from botrunner.templating.envrefs import Trusted, rewrite_env
from botrunner.templating.location import Location
from botrunner.templating.sandbox import RenderError, RenderFailed, render_failure
from botrunner.templating.template import SYNTAX_MARKS, Template, TemplateProblem, environment

__all__ = [
    "BodyTemplate",
    "RenderError",
    "PathValueRefused",
    "RenderedRequest",
    "UrlTemplate",
    "render_request",
]


def _encoding(encode: Callable[[Any], str], keep: type | None = None) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if isinstance(value, Trusted):
            return value
        if value is None or isinstance(value, jinja2.Undefined):
            return ""
        return encode(value if keep is not None and isinstance(value, keep) else str(value))

    return finalize


class PathValueRefused(RenderError):
    """A value the model sent for a path placeholder that could change which path is called."""


class Segments(str):
    """What `{{ input.x | segments }}` gives: a value the author allows to fill several path
    segments (`a/b/c`); each is still encoded on its own and `..` is still refused."""


def _segments(value: Any) -> Segments:
    return Segments("" if value is None else str(value))


def _dot_segments(text: str) -> bool:
    return any(part in (".", "..") for part in re.split(r"[/\\]", text))


def _as_servers_read(text: str) -> tuple[str, str]:
    """What a server may make of a path value: percent-decoded (twice), and that folded with
    NFKC, as servers that normalise Unicode do (the fullwidth "．．／" becomes "../")."""
    decoded = unquote(unquote(text))
    return decoded, unicodedata.normalize("NFKC", decoded)


def _one_segment(text: str) -> str:
    """Encode a path value as one segment. Servers that decode %2F or \\ before resolving dot
    segments would route `..%2F..%2Fadmin` elsewhere, so such values are refused outright."""
    for read in _as_servers_read(text):
        if "/" in read or "\\" in read or _dot_segments(read):
            raise PathValueRefused(
                f"{text!r} cannot fill a path segment: it contains / or \\ or a .. segment"
            )
    return quote(text, safe="")


def _path_value(value: Any) -> Any:
    if isinstance(value, Segments):
        parts = value.split("/")
        for part in parts:
            for read in _as_servers_read(part):
                if "\\" in read or _dot_segments(read):
                    raise PathValueRefused(
                        f"{str(value)!r} cannot fill the path: it has a .. segment or a \\ in it"
                    )
        return "/".join(quote(part, safe="") for part in parts)
    return _one_segment(value)


_path_environment = environment.overlay(finalize=_encoding(_path_value, keep=Segments))
_path_environment.filters = {**_path_environment.filters, "segments": _segments}
_query_environment = environment.overlay(finalize=_encoding(quote_plus))

_CLOSING = {"{{": "}}", "{%": "%}", "{#": "#}"}


def _split_query(source: str) -> int:
    """Index of the first "?" that is literal text (not inside a {{ }} or {% %}), or -1."""
    i, n = 0, len(source)
    while i < n:
        if source.startswith(SYNTAX_MARKS, i):
            end = source.find(_CLOSING[source[i : i + 2]], i + 2)
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
        for mark in SYNTAX_MARKS:
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
                if "'segments'" in exc.message:
                    exc.hint = (
                        "| segments lets a value fill several path segments; it is only for the "
                        "path (before ?). In the query, write {{ input.x }}."
                    )
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
        try:
            value = self._expr(**context)
        except RenderError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as RenderFailed, like Template
            failure = render_failure(exc)
            failure.line = 1  # an expression is one line (Jinja numbers its wrapper's lines)
            raise failure from exc
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
        code, values = rewrite_env(value, env)
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


def _render_value(value: Any, context: dict[str, Any], path: tuple[str | int, ...] = ()) -> Any:
    try:
        if isinstance(value, Template):
            return value.render(context)
        if isinstance(value, _Expr):
            return value(context)
    except RenderFailed as exc:
        exc.path = path
        raise
    if isinstance(value, dict):
        return {k: _render_value(v, context, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context, (*path, i)) for i, v in enumerate(value)]
    return value


class HttpSettings(Protocol):
    """What `render_request` reads from a tool's `http` settings (`botrunner.bot.ToolHttp`)."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> UrlTemplate: ...
    @property
    def params(self) -> Mapping[str, Template]: ...
    @property
    def headers(self) -> Mapping[str, Template]: ...
    @property
    def body(self) -> BodyTemplate | None: ...


@dataclass(frozen=True, slots=True)
class RenderedRequest:
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    json: Any | None


def render_request(http: HttpSettings, input: Mapping[str, Any]) -> RenderedRequest:  # noqa: A002
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
