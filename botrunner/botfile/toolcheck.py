"""Rules for a bot's tools: unique names, a valid input_schema, http settings whose templates
compile and read only `input`, and `input.x` fields the input_schema declares."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from botrunner.bot import Location, Tool, ToolHttp
from botrunner.botfile.filecheck import FileCheck, PathT, closest, display, texts
from botrunner.botfile.schemalint import lint_input_schema
from botrunner.botfile.templatecheck import report_template_problem, report_undefined
from botrunner.templating.httprequest import BodyTemplate, UrlTemplate
from botrunner.templating.template import Template, TemplateProblem

__all__ = ["BODY_METHODS", "check_tools"]

BODY_METHODS = ("POST", "PUT", "PATCH")

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_INPUT_FIELD = re.compile(r"(?<![\w.])input\.([A-Za-z_]\w*)")


def check_tools(check: FileCheck) -> list[Tool]:
    """The tools that passed every rule, compiled."""
    tools_data = check.get(("tools",))
    if not isinstance(tools_data, list):
        return []
    names: dict[str, int] = {}
    tools: list[Tool] = []
    for index, tool in enumerate(tools_data):
        base: PathT = ("tools", index)
        if not isinstance(tool, dict):
            continue
        name = tool.get("name")
        if check.ok((*base, "name")) and isinstance(name, str):
            if name in names:
                check.error(
                    check.src.node_pos((*base, "name")),
                    f'the tool name "{name}" is already used on line {names[name]}',
                    "Each tool needs its own name; rename one of them.",
                )
            else:
                names[name] = check.src.node_pos((*base, "name"))[0]
        _check_input_schema(check, (*base, "input_schema"))
        http = _check_http(check, (*base, "http"))
        _check_input_fields(check, base)
        if http is not None and check.ok(base):
            tools.append(
                Tool(
                    name=tool["name"],
                    description=tool["description"],
                    input_schema=tool.get("input_schema", {"type": "object", "properties": {}}),
                    http=http,
                    location=Location(check.src.file, *check.src.node_pos(base)),
                )
            )
    return tools


@cache
def _meta_validator(dialect: Any) -> Any:
    """Draft 7 unless the tool's schema names its own dialect with `$schema` (fast, and what
    most editors and the model's API accept)."""
    from jsonschema import Draft7Validator
    from jsonschema.validators import validator_for

    cls = (
        validator_for({"$schema": dialect}, default=Draft7Validator) if dialect else Draft7Validator
    )
    return cls(cls.META_SCHEMA)


def _check_input_schema(check: FileCheck, path: PathT) -> None:
    schema = check.get(path)
    if not isinstance(schema, dict) or not check.ok(path):
        return
    before = len(check.problems)
    dialect = schema.get("$schema")
    # A non-string `$schema` is reported by the Draft 7 metaschema itself.
    validator = _meta_validator(dialect if isinstance(dialect, str) else None)
    for err in sorted(validator.iter_errors(schema), key=lambda e: list(e.absolute_path))[:5]:
        where = (*path, *err.absolute_path)
        if err.absolute_path and err.absolute_path[-1] == "type":
            check.error(
                check.src.node_pos(where),
                f'"{err.instance}" is not a JSON Schema type'
                if isinstance(err.instance, str)
                else f"{display(where)} is not a valid JSON Schema type",
                "Use one of: string, number, integer, boolean, object, array, null.",
            )
        else:
            check.error(
                check.src.node_pos(where),
                f"input_schema is not a valid JSON Schema: {err.message}",
                "input_schema describes the tool's input in JSON Schema; see "
                "https://json-schema.org/understanding-json-schema/",
            )
    if len(check.problems) == before:
        lint_input_schema(check, path)


def _check_input_fields(check: FileCheck, base: PathT) -> None:
    """Warn about `input.x` in http settings when input_schema has no property x."""
    schema = check.get((*base, "input_schema"))
    http = check.get((*base, "http"))
    if not (isinstance(schema, dict) and isinstance(http, dict)):
        return
    props = schema.get("properties")
    if not isinstance(props, dict) or not check.ok((*base, "input_schema")):
        return
    known = sorted(props)
    below_http = len(base) + 1
    for path, value in texts(http, (*base, "http"), lambda p: len(p) > below_http):
        if "input" not in value or not check.ok(path):
            continue
        for tag in _TAG.finditer(value):
            for use in _INPUT_FIELD.finditer(tag.group()):
                field = use.group(1)
                if field in props:
                    continue
                close = closest(field, known)
                hint = (
                    f"Did you mean input.{close}?"
                    if close
                    else (f"input_schema has: {', '.join(known)}." if known else "")
                )
                check.warn(
                    check.offset_pos(path, value, tag.start() + use.start(1)),
                    f"input.{field} is not a property in the input_schema of this tool",
                    hint,
                )


# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_header_names(check: FileCheck, path: PathT) -> bool:
    """Header names are sent exactly as written, so each must be a literal HTTP token."""
    headers = check.get(path)
    if not isinstance(headers, dict) or not check.ok(path):
        return True
    good = True
    for name in headers:
        if _TOKEN.fullmatch(name):
            continue
        good = False
        line, col = check.src.key_pos((*path, name))
        offset = next((i for i, ch in enumerate(name) if not _TOKEN.fullmatch(ch)), 0)
        if any(mark in name for mark in ("{{", "{%", "${")):
            message = f'the header name "{name}" is a template; header names are sent as written'
            hint = (
                "Write a fixed name (like X-City) and put the template in its value: "
                '"X-City": "{{ input.city }}".'
            )
        else:
            message = f'the header name "{name}" has a character HTTP does not allow in a name'
            hint = "Header names are letters, digits and - (like X-Api-Key); no spaces or colons."
        key_node = check.src.key_nodes.get((*path, name))
        quote = 1 if getattr(key_node, "style", None) in ("'", '"') else 0
        check.error((line, col + quote + offset), message, hint)
    return good


def _check_http(check: FileCheck, path: PathT) -> ToolHttp | None:
    http = check.get(path)
    if not isinstance(http, dict):
        return None
    hint = "In a tool's http settings only input.<field> is available (the model fills it in)."
    allowed = {"input"}
    good = True

    def compile_text(sub: PathT, factory: Any) -> Any:
        nonlocal good
        where = (*path, *sub)
        value = check.get(where)
        if not check.ok(where):
            good = False
            return None
        try:
            template = factory(value, check.location(where), env=check.env)
        except TemplateProblem as exc:
            if "No filter named 'segments'" in exc.message and factory is not UrlTemplate:
                exc.message = "| segments can only be used in a tool URL's path"
                exc.hint = (
                    "It lets one value fill several path segments, e.g. "
                    "https://api.example.com/files/{{ input.path | segments }}; "
                    "here write {{ input.x }}."
                )
            report_template_problem(check, where, exc)
            good = False
            return None
        before = len(check.problems)
        for found in template.undeclared():
            if isinstance(template, BodyTemplate):
                leaf, name, line, col = found
                report_undefined(check, (*where, *leaf), [(name, line, col)], allowed, hint)
            else:
                report_undefined(check, where, [found], allowed, hint)
        good = good and len(check.problems) == before
        return template

    url = compile_text(("url",), UrlTemplate) if "url" in http else None
    params = {k: compile_text(("params", k), Template) for k in (http.get("params") or {})}
    headers = {k: compile_text(("headers", k), Template) for k in (http.get("headers") or {})}
    good = _check_header_names(check, (*path, "headers")) and good
    body = None
    method = http.get("method", "GET")
    if "body" in http:
        if check.ok((*path, "method")) and method not in BODY_METHODS:
            check.error(
                check.src.key_pos((*path, "body")),
                f"a {method} request cannot have a body",
                "Use method: POST (or PUT or PATCH), or send the values as params.",
            )
            good = False
        body = compile_text(("body",), BodyTemplate)
    if not good or url is None or not check.ok(path):
        return None
    return ToolHttp(
        method=method,
        url=url,
        params=params,
        headers=headers,
        body=body,
        timeout_seconds=float(http.get("timeout_seconds", 10.0)),
        max_response_bytes=http.get("max_response_bytes", 65536),
        follow_redirects=http.get("follow_redirects", False),
    )
