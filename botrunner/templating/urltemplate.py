"""A tool's URL template: the scheme and host literal, every `{{ }}` output percent-encoded for
the place it lands (a path segment or the query string). Environment values, which the author
controls, are inserted as they are.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import jinja2

from botrunner.templating.envrefs import Trusted
from botrunner.templating.location import Location
from botrunner.templating.sandbox import RenderError
from botrunner.templating.template import SYNTAX_MARKS, Template, TemplateProblem, environment


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
