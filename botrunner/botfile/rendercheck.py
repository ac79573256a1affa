"""Trial renders: every template of a bot file rendered once with sample values, so a template
that compiles but fails when filled in (`{{ 1/0 }}`, an attribute the sandbox refuses, a
number too large to print) is reported at its line by `validate`, not by a failed reply.

The sample values: `today`, `now` and `bot` as in a turn, the file's own variables, each user
attribute the template may use set to sample text, and tool input built from the tool's
input_schema (its default, first example or first enum value, else a value of its type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from botrunner.bot import Tool, UserAttribute
from botrunner.botfile.filecheck import FileCheck, PathT, display
from botrunner.templating import RenderFailed, Template
from botrunner.templating.prompt import system_context

__all__ = ["check_system_renders", "check_tool_renders", "sample_input", "sample_user"]

_SAMPLES = "today, now, bot, your variables, sample text for each user attribute"


def sample_user(attributes: Mapping[str, UserAttribute]) -> dict[str, str]:
    """A user with an id and every attribute set to sample text (within its length)."""
    sample = {name: f"sample {name}"[: spec.max_length] for name, spec in attributes.items()}
    return {"id": "sample-user", **sample}


def check_system_renders(
    check: FileCheck, template: Template, variables: Mapping[str, Any], user: Mapping[str, Any]
) -> None:
    context = system_context(check.get(("name",)) or "", "", variables, user)
    _try(check, ("system",), lambda: template.render(context), _SAMPLES)


def check_tool_renders(check: FileCheck, index: int, tool: Tool) -> None:
    base: PathT = ("tools", index, "http")
    try:
        given = sample_input(tool.input_schema)
    except Exception:  # noqa: BLE001 - an input_schema too odd to sample: nothing to try
        return
    samples = "tool input built from input_schema"
    http = tool.http
    _try(check, (*base, "url"), lambda: http.url.render(given), samples)
    for group, templates in (("params", http.params), ("headers", http.headers)):
        for key, template in templates.items():
            context = {"input": given}
            render: Callable[[], Any] = lambda t=template, c=context: t.render(c)  # noqa: E731
            _try(check, (*base, group, key), render, samples)
    if http.body is not None:
        body = http.body
        _try(check, (*base, "body"), lambda: body.render(given), samples)


def _try(check: FileCheck, path: PathT, render: Callable[[], Any], samples: str) -> None:
    try:
        render()
    except RenderFailed as exc:
        where = (*path, *exc.path)
        text = check.get(where)
        if isinstance(text, str):
            pos = check.src.text_pos(where, exc.line, _column(text, exc.line))
        else:
            pos = check.src.node_pos(where)
        check.error(
            pos,
            f"{display(where)}: the template fails when filled in: {exc.reason}",
            _hint(exc, samples),
        )


def _column(text: str, line: int) -> int:
    """The first tag on the failing line (0-based), else its first character."""
    lines = text.split("\n")
    row = lines[line - 1] if 0 < line <= len(lines) else ""
    tags = [at for at in (row.find("{{"), row.find("{%")) if at >= 0]
    return min(tags) if tags else len(row) - len(row.lstrip())


def _hint(exc: RenderFailed, samples: str) -> str:
    if exc.reason.startswith("refused by the sandbox: access to"):
        return (
            "Templates run in a sandbox: names starting with _ and Python internals are off "
            "limits. Use your variables and their plain values."
        )
    if exc.reason.startswith("refused by the sandbox"):
        return "Templates may not build numbers or texts that large; use a smaller value."
    return (
        f"botrunner filled the template in once with sample values ({samples}) and this "
        "line failed; make it work for any value (e.g. check with {% if %} first)."
    )


def sample_input(schema: Any) -> Any:
    """A value that fits the JSON Schema `schema` well enough to fill in a tool's templates."""
    if not isinstance(schema, dict):
        return "sample"
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: sample_input(sub) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        return [sample_input(items)] if isinstance(items, dict) else []
    if kind in ("integer", "number"):
        # 1 (not 0: a divisor is the likeliest use), moved inside the schema's bounds.
        low, high = schema.get("minimum"), schema.get("maximum")
        value = 1 if kind == "integer" else 1.0
        if isinstance(low, int | float) and value < low:
            value = low
        if isinstance(high, int | float) and value > high:
            value = high
        return value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "sample"
