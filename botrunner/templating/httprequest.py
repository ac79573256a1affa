"""A tool's HTTP request: its JSON body template, and filling the request (URL, parameters,
headers, body) with the model's input. The URL template is `urltemplate.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jinja2

from botrunner.templating.envrefs import Trusted, rewrite_env
from botrunner.templating.location import Location
from botrunner.templating.sandbox import RenderError, RenderFailed, render_failure
from botrunner.templating.template import Template, TemplateProblem, environment
from botrunner.templating.urltemplate import PathValueRefused, UrlTemplate

__all__ = [
    "BodyTemplate",
    "RenderError",
    "PathValueRefused",
    "RenderedRequest",
    "UrlTemplate",
    "render_request",
]


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
