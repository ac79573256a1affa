"""The Jinja2 sandbox every bot template runs in, and what a failed render reports.

Jinja's sandbox guards attribute access, but not arithmetic: `{{ 7**999999 }}` is computed
while *compiling* (Jinja folds constant expressions), and its `repr` then hits Python's limit
on converting big integers to text (4300 digits), an error Jinja does not expect there;
`{{ 9**9**9 }}` would keep a core busy for hours. Interception makes `**` and `*` calls to
`call_binop` at render time instead (an intercepted operator is never folded), where the size
of the result is checked before it is computed.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

__all__ = [
    "MAX_DIGITS",
    "MAX_REPEAT",
    "BoundedSandbox",
    "RenderError",
    "RenderFailed",
    "environment",
    "render_failure",
]

# Python refuses to print an int longer than this (sys.get_int_max_str_digits, default 4300).
MAX_DIGITS = 4000
_MAX_BITS = int(MAX_DIGITS * math.log2(10))
# The longest text or list `*` may build (a system prompt is a few thousand characters).
MAX_REPEAT = 1_000_000


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox, with `**` and `*` refused when their result would be huge."""

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        else:
            _check_product(left, right)
        return super().call_binop(context, operator, left, right)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_power(base: Any, exponent: Any) -> None:
    if not (_is_int(base) and _is_int(exponent) and exponent > 0 and abs(base) > 1):
        return
    if exponent * math.log2(abs(base)) > _MAX_BITS:
        raise SecurityError(
            f"the power {base} ** {exponent} would have more than {MAX_DIGITS} digits"
        )


def _check_product(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        if left.bit_length() + right.bit_length() > _MAX_BITS:
            raise SecurityError(f"the product would have more than {MAX_DIGITS} digits")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and _is_int(times) and len(seq) * times > MAX_REPEAT:
            raise SecurityError(
                f"repeating a text or list {times} times would make more than {MAX_REPEAT:,} items"
            )


# The one environment for prompts and plain http fields. Lenient at render time: a missing
# `user.name` renders as empty text; undefined *top-level* names are rejected at load instead.
environment = BoundedSandbox(
    autoescape=False, keep_trailing_newline=True, undefined=jinja2.Undefined
)


class RenderError(ValueError):
    """A request that must not be sent, e.g. a header value with a line break in it, or a
    path value that could leave its segment: refused on purpose, so it passes through a
    template's render as it is (never wrapped in `RenderFailed`)."""


class RenderFailed(ValueError):
    """A template that compiled but failed while rendering (`{{ 1/0 }}`, an unsafe attribute).
    `line` is 1-based inside the template's own text; `reason` is one line of plain text;
    `path` locates the text inside a JSON body."""

    def __init__(self, reason: str, line: int, cause: BaseException) -> None:
        super().__init__(f"line {line}: {reason}")
        self.reason = reason
        self.line = line
        self.cause = cause
        self.path: tuple[str | int, ...] = ()


def _template_line(tb: TracebackType | None) -> int:
    # Jinja rewrites a render error's traceback so the template's own frames carry the
    # template's line numbers under the file name "<template>"; the innermost one is the line.
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_failure(exc: BaseException) -> RenderFailed:
    """The `RenderFailed` for an exception raised by a compiled template's `render`."""
    if isinstance(exc, SecurityError):
        reason = f"refused by the sandbox: {exc}"
    elif isinstance(exc, RecursionError):
        reason = "the template recursed too deeply"
    elif isinstance(exc, MemoryError):
        reason = "the template ran out of memory"
    elif isinstance(exc, jinja2.UndefinedError):
        reason = f"undefined value: {exc}"
    else:
        # ZeroDivisionError: "division by zero"; TypeError: "unsupported operand ...": the
        # message says it; the class name is for whoever reads the log.
        reason = str(exc).strip() or type(exc).__name__
    reason = " ".join(reason.split())
    if len(reason) > 300:
        reason = reason[:297] + "..."
    return RenderFailed(reason, _template_line(exc.__traceback__), exc)
