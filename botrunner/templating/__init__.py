"""Jinja2 templates in bot files: compiled once at load, rendered cheaply per message.

Security rules the templating modules enforce:

- Templates only ever come from the author's bot file. Values at render time (the user's
  message, the model's tool input) are data: they are never compiled, so "{{ 7*7 }}" in a
  message stays literal (`botrunner.templating.template`).
- `${NAME}` / `${NAME:-default}` (tool http fields only) are resolved from the environment at
  load time and rewritten into a private context variable *before* compiling
  (`${X}` -> `{{ __env[0] }}`), so a secret containing "{{" is never compiled and a "${X}"
  typed by the model is never expanded (`botrunner.templating.envrefs`).
- In a tool URL the scheme and host are literal; every `{{ }}` output is percent-encoded for
  the place it lands (a path segment or the query string). Environment values, which the
  author controls, are inserted as they are (`botrunner.templating.httprequest`).

This module is the public face of the three: import from here.
"""

from __future__ import annotations

from botrunner.templating.envrefs import ANY_ENV_REF, ENV_REF, Trusted, resolve_env
from botrunner.templating.httprequest import (
    BodyTemplate,
    RenderedRequest,
    RenderError,
    UrlTemplate,
    render_request,
)
from botrunner.templating.template import RenderFailed, Template, TemplateProblem, environment

__all__ = [
    "ANY_ENV_REF",
    "ENV_REF",
    "BodyTemplate",
    "RenderError",
    "RenderFailed",
    "RenderedRequest",
    "Template",
    "TemplateProblem",
    "Trusted",
    "UrlTemplate",
    "environment",
    "render_request",
    "resolve_env",
]
