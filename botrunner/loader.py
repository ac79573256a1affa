"""The one place that reads a bot file: YAML -> schema check -> semantic rules -> frozen `Bot`.

Problems are reported all at once, each with the file, line and column of the offending text,
a message in plain words and a hint. Schema problems come first, then semantic ones; semantic
checks skip the parts that already failed the schema.

This module (and everything it imports) must stay light: `botrunner validate` runs it on
hundreds of files, so no SDK or web stack here.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from botrunner import yamlsrc
from botrunner.bot import (
    Bot,
    EnvRef,
    Limits,
    Location,
    Memory,
    Model,
    PerUser,
    Retry,
    Tool,
    ToolHttp,
)
from botrunner.problems import Problem, format_text
from botrunner.schema import load_schema, subschema
from botrunner.templating import (
    ANY_ENV_REF,
    ENV_REF,
    BodyTemplate,
    Template,
    TemplateProblem,
    UrlTemplate,
    resolve_env,
)

__all__ = ["BotFileError", "check_file", "load_bot", "SYSTEM_VARIABLES"]

log = logging.getLogger(__name__)

# Names the engine fills in when it renders `system`; `user.<anything>` is dynamic.
SYSTEM_VARIABLES = ("today", "now", "bot", "user")
RESERVED_VARIABLES = frozenset((*SYSTEM_VARIABLES, "input"))
BODY_METHODS = ("POST", "PUT", "PATCH")

PathT = tuple[str | int, ...]
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_INPUT_FIELD = re.compile(r"(?<![\w.])input\.([A-Za-z_]\w*)")


class BotFileError(Exception):
    """A bot file that cannot be loaded. `.problems` holds every problem found (errors first)."""

    def __init__(self, path: str | os.PathLike[str], problems: list[Problem]) -> None:
        self.path = str(path)
        self.problems = problems
        errors = [p for p in problems if p.is_error]
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        super().__init__(f"{self.path}: {count}\n{format_text(errors)}".rstrip("\n"))


def load_bot(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Bot:
    """Load a bot file, or raise `BotFileError` listing every problem. Warnings are logged."""
    bot, problems = check_file(path, env=env)
    if bot is None:
        raise BotFileError(path, problems)
    for problem in problems:
        log.warning("%s", problem)
    return bot


def check_file(
    path: str | os.PathLike[str], *, strict: bool = False, env: Mapping[str, str] | None = None
) -> tuple[Bot | None, list[Problem]]:
    """Check a bot file. Returns the `Bot` (None if there is any error) and all problems.

    `strict` also reports each `${NAME}` without a default whose variable is unset or empty
    (by name; values are never shown). Missing variables are not errors otherwise.
    """
    file = str(path)
    env = os.environ if env is None else env
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [Problem(file, 1, 1, "error", f"cannot read the file: {reason}", "")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [
            Problem(
                file,
                line,
                1,
                "error",
                "the file is not UTF-8 text",
                "Save the file with UTF-8 encoding (every modern editor can).",
            )
        ]
    src = yamlsrc.parse(text, file)
    if src.data is None and src.problems:
        return None, src.problems
    return _Checker(src, Path(path), hashlib.sha256(raw).hexdigest()[:12], env, strict).run()


# -- the schema pass -----------------------------------------------------------------------------


@cache
def _validator() -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(load_schema())


@cache
def _known_keys() -> dict[str, list[str]]:
    """Every fixed key in the schema -> where it belongs ("memory", "tools[].http", ...)."""
    index: dict[str, list[str]] = {}

    def walk(node: dict[str, Any], where: str) -> None:
        for key, sub in node.get("properties", {}).items():
            index.setdefault(key, []).append(where)
            if sub.get("additionalProperties") is False:
                walk(sub, f"{where}.{key}" if where else key)
            elif isinstance(sub.get("items"), dict):
                walk(sub["items"], f"{where}.{key}[]" if where else f"{key}[]")

    walk(load_schema(), "")
    return index


def display(path: PathT) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "the top level"


def _where(path: PathT) -> str:
    return f" in {display(path)}" if path else ""


_TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value lines)",
    "array": "a list (lines starting with -)",
    "null": "empty",
}


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'the text "{shown}"'
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _suggest_slug(value: str, pattern: str) -> str:
    lower = "A-Z" not in pattern
    slug = value.lower() if lower else value
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-" if lower else "_", slug).strip("-_")
    return slug[:64]


def _set(data: Any, path: PathT, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


class _Checker:
    def __init__(
        self, src: yamlsrc.Source, path: Path, version: str, env: Mapping[str, str], strict: bool
    ) -> None:
        self.src = src
        self.path = path
        self.version = version
        self.env = env
        self.strict = strict
        self.schema_problems: list[Problem] = []
        self.problems: list[Problem] = []  # semantic ones
        self.failed: list[PathT] = []
        self.env_refs: list[EnvRef] = []

    # -- helpers -----------------------------------------------------------------------------

    def error(self, pos: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(self.src.problem(pos, message, hint))

    def warn(self, pos: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(self.src.problem(pos, message, hint, "warning"))

    def location(self, path: PathT) -> Location:
        line, column = self.src.text_pos(path, 1, 0)
        return Location(self.src.file, line, column)

    def ok(self, path: PathT) -> bool:
        """True when the schema found nothing wrong at, above or below `path`."""
        for bad in self.failed:
            n = min(len(bad), len(path))
            if bad[:n] == path[:n]:
                return False
        return True

    def get(self, path: PathT) -> Any:
        value: Any = self.src.data
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return None
        return value

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> tuple[Bot | None, list[Problem]]:
        self.check_schema()
        self.check_env_refs(self.src.data, ())
        self.check_model()
        variables = self.check_variables()
        self.check_system(variables)
        tools = self.check_tools()
        if self.strict:
            self.check_env_set()
        key = lambda p: (p.line, p.column)  # noqa: E731
        problems = (
            self.src.problems
            + sorted(self.schema_problems, key=key)
            + sorted(self.problems, key=key)
        )
        if any(p.is_error for p in problems):
            return None, problems
        return self.build(variables, tools), problems

    # -- schema ------------------------------------------------------------------------------

    def check_schema(self) -> None:
        validator = _validator()
        data = self.src.data
        errors = list(validator.iter_errors(data))
        coerced = False
        for err in errors:
            path = tuple(err.absolute_path)
            expected = err.validator_value if err.validator == "type" else None
            if not path or expected is None:
                continue
            if "string" not in ([expected] if isinstance(expected, str) else expected):
                continue
            node = self.src.nodes.get(path)
            text = yamlsrc.plain_text(node)
            if text is None:
                continue
            _set(data, path, text)
            coerced = True
            how = yamlsrc.surprise(node)
            if how:
                self.schema_problems.append(
                    self.src.problem(
                        self.src.node_pos(path),
                        f'YAML reads "{text}" as {how}; botrunner uses the text "{text}" here',
                        f'Put it in quotes ("{text}") so every tool reads it the same way.',
                        "warning",
                    )
                )
        if coerced:
            errors = list(validator.iter_errors(data))
        for err in errors:
            self.schema_error(err)

    def schema_error(self, err: Any) -> None:
        path: PathT = tuple(err.absolute_path)
        kind = err.validator
        sub = err.schema if isinstance(err.schema, dict) else {}
        what = display(path)
        desc = sub.get("description", "")
        value = err.instance
        src = self.src

        def add(pos: tuple[int, int], message: str, hint: str, failed: PathT) -> None:
            problem = src.problem(pos, message, hint)
            if problem not in self.schema_problems:  # e.g. one `required` error per missing key
                self.schema_problems.append(problem)
            self.failed.append(failed)

        if kind == "additionalProperties" and isinstance(value, dict):
            allowed = list(sub.get("properties", {}))
            patterns = list(sub.get("patternProperties", {}))
            for key in value:
                if key in allowed or any(re.search(p, key) for p in patterns):
                    continue
                add(
                    src.key_pos((*path, key)),
                    f'unknown key "{key}"{_where(path)}',
                    self.unknown_key_hint(key, allowed, path),
                    (*path, key),
                )
        elif kind == "required":
            allowed = list(sub.get("properties", {}))
            for key in err.validator_value:
                if not isinstance(value, dict) or key in value:
                    continue
                if any(
                    difflib.get_close_matches(k, allowed, n=1, cutoff=0.6) == [key]
                    for k in value
                    if k not in allowed
                ):
                    # A misspelling of it is reported as an unknown key with "did you mean".
                    self.failed.append((*path, key))
                    continue
                about = subschema((*path, key)).get("description", "")
                add(
                    src.parent_pos(path),
                    f'"{key}" is missing{_where(path)}',
                    f"Add {key}: here. {about}".strip(),
                    (*path, key),
                )
        elif kind == "type":
            expected = err.validator_value
            names = [expected] if isinstance(expected, str) else list(expected)
            want = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
            if not path:
                add(
                    src.node_pos(path),
                    "a bot file must be a mapping of key: value lines (name:, model:, system: ...)",
                    "See bots/tutor.yaml for a complete example.",
                    path,
                )
            elif value is None:
                add(
                    src.node_pos(path),
                    f"{what} has no value",
                    f"Write {want} after the colon, or delete the line. {desc}".strip(),
                    path,
                )
            else:
                add(
                    src.node_pos(path),
                    f"{what} should be {want}, not {_describe(value)}",
                    desc,
                    path,
                )
        elif kind == "enum":
            choices = [str(c) for c in err.validator_value]
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f'Did you mean "{close[0]}"?' if close else desc
            add(
                src.node_pos(path),
                f"{what} must be one of {', '.join(choices)}, not {_describe(value)}",
                hint,
                path,
            )
        elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            bound = _number(err.validator_value)
            rule = {
                "minimum": f"at least {bound}",
                "maximum": f"at most {bound}",
                "exclusiveMinimum": f"more than {bound}",
                "exclusiveMaximum": f"less than {bound}",
            }[kind]
            add(
                src.node_pos(path),
                f"{what} must be {rule}, not {_number(value)}",
                desc,
                path,
            )
        elif kind == "pattern" and "propertyNames" in err.schema_path:
            add(
                src.key_pos((*path, value)),
                f'"{value}" cannot be used as a name: {sub.get("errorMessage", "it has characters that are not allowed")}',
                f"Try {_suggest_slug(str(value), err.validator_value)!r}.".replace("'", '"'),
                (*path, value),
            )
        elif kind == "pattern":
            suggestion = _suggest_slug(str(value), err.validator_value)
            add(
                src.node_pos(path),
                f'{what} "{value}" is not allowed: '
                f"{sub.get('errorMessage', 'it does not have the expected form')}",
                f'Try "{suggestion}".' if suggestion else desc,
                path,
            )
        elif kind == "minLength":
            add(src.node_pos(path), f"{what} is empty", f"Write some text. {desc}".strip(), path)
        elif kind == "const":
            add(
                src.node_pos(path),
                sub.get("errorMessage", f"{what} must be {err.validator_value!r}"),
                desc,
                path,
            )
        else:  # pragma: no cover - every keyword the schema uses is handled above
            add(src.node_pos(path), f"{what}: {err.message}", desc, path)

    def unknown_key_hint(self, key: str, allowed: list[str], path: PathT) -> str:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            return f'Did you mean "{close[0]}"?'
        homes = [w for w in _known_keys().get(key, []) if w]
        if homes:
            return f'"{key}" belongs under {homes[0]}:'
        listing = ", ".join(allowed)
        return f"Allowed here: {listing}. Keys starting with x- are ignored, for your own notes."

    # -- ${NAME} -----------------------------------------------------------------------------

    @staticmethod
    def env_allowed(path: PathT) -> bool:
        if path[:1] == ("model",) and len(path) == 2 and path[1] in ("base_url", "api_key"):
            return True
        return len(path) >= 4 and path[0] == "tools" and path[2] == "http" and path[3] != "method"

    @staticmethod
    def is_open(path: PathT) -> bool:
        """Inside a map of the author's own data, where x- keys are data, not notes."""
        if "input_schema" in path:
            return True
        return len(path) >= 4 and path[2] == "http" and path[3] in ("params", "headers", "body")

    def check_env_refs(self, value: Any, path: PathT) -> None:
        if any(path[: len(bad)] == bad for bad in self.failed):
            return  # inside a part that failed the schema
        if isinstance(value, dict):
            open_map = self.is_open(path)
            for key, item in value.items():
                if open_map or not key.startswith("x-"):
                    self.check_env_refs(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.check_env_refs(item, (*path, index))
        elif isinstance(value, str) and "${" in value:
            allowed = self.env_allowed(path)
            for match in ANY_ENV_REF.finditer(value):
                pos = self.offset_pos(path, value, match.start())
                text = match.group()
                if not allowed:
                    self.error(
                        pos,
                        f"{text} reads an environment variable, which is not allowed in {display(path)}",
                        "The model must never see a secret: use ${...} only in model.base_url, "
                        "model.api_key and a tool's http settings.",
                    )
                    continue
                ref = ENV_REF.fullmatch(text)
                if ref is None:
                    self.error(
                        pos,
                        f'"{text}" is not a valid environment variable reference',
                        "Write ${NAME} or ${NAME:-default}; NAME may use letters, digits and _.",
                    )
                    continue
                self.env_refs.append(
                    EnvRef(ref["name"], ref["default"], Location(self.src.file, *pos))
                )

    def offset_pos(self, path: PathT, text: str, offset: int) -> tuple[int, int]:
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1)
        return self.src.text_pos(path, line, col)

    def check_env_set(self) -> None:
        seen: set[str] = set()
        for ref in self.env_refs:
            if ref.default is not None or ref.name in seen or self.env.get(ref.name):
                continue
            seen.add(ref.name)
            self.error(
                (ref.location.line, ref.location.column),
                f"the environment variable {ref.name} is not set",
                f"Set {ref.name} where botrunner runs (CI secrets, the server's environment), "
                f"or give a default: ${{{ref.name}:-value}}.",
            )

    def resolve(self, text: str) -> str:
        return ENV_REF.sub(lambda m: resolve_env(m["name"], m["default"], self.env), text)

    # -- semantic rules ----------------------------------------------------------------------

    def check_model(self) -> None:
        base = self.get(("model", "base_url"))
        if (
            self.ok(("model", "base_url"))
            and isinstance(base, str)
            and "${" not in base
            and not re.match(r"https?://[^/?#\s]+", base)
        ):
            self.error(
                self.src.node_pos(("model", "base_url")),
                "model.base_url must start with https:// (or http://)",
                "Write the full address, e.g. https://gateway.example.com",
            )
        key = self.get(("model", "api_key"))
        if self.ok(("model", "api_key")) and isinstance(key, str) and "${" not in key:
            self.warn(
                self.src.node_pos(("model", "api_key")),
                "the API key is written in the file, where anyone who can read it can use it",
                "Read it from the environment instead: api_key: ${ANTHROPIC_API_KEY}",
            )

    def check_variables(self) -> dict[str, Any]:
        variables = self.get(("variables",))
        if not isinstance(variables, dict) or not self.ok(("variables",)):
            return {} if not isinstance(variables, dict) else self._notes_removed(variables)
        for name in variables:
            if name in RESERVED_VARIABLES:
                self.error(
                    self.src.key_pos(("variables", name)),
                    f'the variable name "{name}" is reserved',
                    "botrunner fills in today, now, bot and user itself (and input in tools); "
                    "pick another name.",
                )
        return self._notes_removed(variables)

    @staticmethod
    def _notes_removed(mapping: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in mapping.items() if not k.startswith("x-")}

    def template_problem(self, path: PathT, exc: TemplateProblem) -> None:
        path = (*path, *exc.path)
        column = exc.column
        if column is None:
            pos = self.src.node_pos(path)
        else:
            pos = self.src.text_pos(path, exc.line, column)
        self.error(pos, f"{display(path)}: {exc.message}", exc.hint)

    def undefined(
        self, path: PathT, found: list[tuple[str, int, int]], allowed: set[str], hint: str
    ) -> None:
        for name, line, col in found:
            if name in allowed:
                continue
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            extra = f' Did you mean "{close[0]}"?' if close else ""
            first = hint
            if name == "input" and path[0] != "tools":
                first = "input is only available in a tool's http settings. " + hint
            self.error(
                self.src.text_pos(path, line, col),
                f'undefined variable "{name}" in {display(path)}',
                first + extra,
            )

    def check_system(self, variables: dict[str, Any]) -> None:
        self.system: Template | None = None
        source = self.get(("system",))
        if not self.ok(("system",)) or not isinstance(source, str):
            return
        try:
            template = Template(source, self.location(("system",)))
        except TemplateProblem as exc:
            self.template_problem(("system",), exc)
            return
        allowed = set(SYSTEM_VARIABLES) | set(variables)
        own = f" and your variables ({', '.join(variables)})" if variables else ""
        self.undefined(
            ("system",),
            template.undeclared(),
            allowed,
            f"In system you can use today, now, bot, user.<anything>{own}; "
            "add other values under variables:.",
        )
        self.system = template

    def check_tools(self) -> list[Tool]:
        tools_data = self.get(("tools",))
        if not isinstance(tools_data, list):
            return []
        names: dict[str, int] = {}
        tools: list[Tool] = []
        for index, tool in enumerate(tools_data):
            base: PathT = ("tools", index)
            if not isinstance(tool, dict):
                continue
            name = tool.get("name")
            if self.ok((*base, "name")) and isinstance(name, str):
                if name in names:
                    self.error(
                        self.src.node_pos((*base, "name")),
                        f'the tool name "{name}" is already used on line {names[name]}',
                        "Each tool needs its own name; rename one of them.",
                    )
                else:
                    names[name] = self.src.node_pos((*base, "name"))[0]
            self.check_input_schema((*base, "input_schema"))
            http = self.check_http((*base, "http"))
            self.check_input_fields(base)
            if http is not None and self.ok(base):
                tools.append(
                    Tool(
                        name=tool["name"],
                        description=tool["description"],
                        input_schema=tool.get("input_schema", {"type": "object", "properties": {}}),
                        http=http,
                        location=Location(self.src.file, *self.src.node_pos(base)),
                    )
                )
        return tools

    def check_input_schema(self, path: PathT) -> None:
        schema = self.get(path)
        if not isinstance(schema, dict) or not self.ok(path):
            return
        validator = _meta_validator(schema.get("$schema"))
        for err in sorted(validator.iter_errors(schema), key=lambda e: list(e.absolute_path))[:5]:
            where = (*path, *err.absolute_path)
            if err.absolute_path and err.absolute_path[-1] == "type":
                self.error(
                    self.src.node_pos(where),
                    f'"{err.instance}" is not a JSON Schema type'
                    if isinstance(err.instance, str)
                    else f"{display(where)} is not a valid JSON Schema type",
                    "Use one of: string, number, integer, boolean, object, array, null.",
                )
            else:
                self.error(
                    self.src.node_pos(where),
                    f"input_schema is not a valid JSON Schema: {err.message}",
                    "input_schema describes the tool's input in JSON Schema; see "
                    "https://json-schema.org/understanding-json-schema/",
                )

    def check_input_fields(self, base: PathT) -> None:
        """Warn about `input.x` in http settings when input_schema has no property x."""
        schema = self.get((*base, "input_schema"))
        http = self.get((*base, "http"))
        if not (isinstance(schema, dict) and isinstance(http, dict)):
            return
        props = schema.get("properties")
        if not isinstance(props, dict) or not self.ok((*base, "input_schema")):
            return
        known = sorted(props)

        def walk(value: Any, path: PathT) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    if len(path) > len(base) + 1 or not key.startswith("x-"):
                        walk(item, (*path, key))
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, (*path, index))
            elif isinstance(value, str) and "input" in value and self.ok(path):
                for tag in _TAG.finditer(value):
                    for use in _INPUT_FIELD.finditer(tag.group()):
                        field = use.group(1)
                        if field in props:
                            continue
                        close = difflib.get_close_matches(field, known, n=1)
                        hint = (
                            f"Did you mean input.{close[0]}?"
                            if close
                            else (f"input_schema has: {', '.join(known)}." if known else "")
                        )
                        self.warn(
                            self.offset_pos(path, value, tag.start() + use.start(1)),
                            f"input.{field} is not a property in the input_schema of this tool",
                            hint,
                        )

        walk(http, (*base, "http"))

    def check_http(self, path: PathT) -> ToolHttp | None:
        http = self.get(path)
        if not isinstance(http, dict):
            return None
        hint = "In a tool's http settings only input.<field> is available (the model fills it in)."
        allowed = {"input"}
        good = True

        def compile_text(sub: PathT, factory: Any) -> Any:
            nonlocal good
            where = (*path, *sub)
            value = self.get(where)
            if not self.ok(where):
                good = False
                return None
            try:
                template = factory(value, self.location(where), env=self.env)
            except TemplateProblem as exc:
                self.template_problem(where, exc)
                good = False
                return None
            before = len(self.problems)
            for found in template.undeclared():
                if isinstance(template, BodyTemplate):
                    leaf, name, line, col = found
                    self.undefined((*where, *leaf), [(name, line, col)], allowed, hint)
                else:
                    self.undefined(where, [found], allowed, hint)
            good = good and len(self.problems) == before
            return template

        url = compile_text(("url",), UrlTemplate) if "url" in http else None
        params = {k: compile_text(("params", k), Template) for k in (http.get("params") or {})}
        headers = {k: compile_text(("headers", k), Template) for k in (http.get("headers") or {})}
        body = None
        method = http.get("method", "GET")
        if "body" in http:
            if self.ok((*path, "method")) and method not in BODY_METHODS:
                self.error(
                    self.src.key_pos((*path, "body")),
                    f"a {method} request cannot have a body",
                    "Use method: POST (or PUT or PATCH), or send the values as params.",
                )
                good = False
            body = compile_text(("body",), BodyTemplate)
        if not good or url is None or not self.ok(path):
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

    # -- the Bot -----------------------------------------------------------------------------

    def build(self, variables: dict[str, Any], tools: list[Tool]) -> Bot:
        data = self.src.data
        model = data["model"]
        api_key = model.get("api_key")
        api_key_env = None
        if api_key is not None:
            ref = ENV_REF.search(api_key)
            api_key_env = ref["name"] if ref else None
            api_key = self.resolve(api_key) or None
        base_url = model.get("base_url")
        if base_url is not None:
            base_url = self.resolve(base_url) or None
        memory = data.get("memory", {})
        limits = data.get("limits", {})
        per_user = limits.get("per_user", {})
        retry = data.get("retry", {})
        temperature = model.get("temperature")
        assert self.system is not None
        secrets = {resolve_env(ref.name, ref.default, self.env) for ref in self.env_refs} - {""}
        return Bot(
            name=data["name"],
            model=Model(
                name=model["name"],
                max_tokens=model.get("max_tokens", 1024),
                provider=model.get("provider", "anthropic"),
                temperature=float(temperature) if temperature is not None else None,
                base_url=base_url,
                api_key=api_key,
                api_key_env=api_key_env,
            ),
            system=self.system,
            path=self.path,
            version=self.version,
            description=data.get("description", ""),
            variables=variables,
            greeting=data.get("greeting"),
            memory=Memory(
                strategy=memory.get("strategy", "window"),
                max_turns=memory.get("max_turns", 20),
                retrieve_turns=memory.get("retrieve_turns", 3),
                summarize_every=memory.get("summarize_every", 5),
            ),
            limits=Limits(
                max_message_chars=limits.get("max_message_chars", 4000),
                per_user=PerUser(
                    requests_per_minute=per_user.get("requests_per_minute"),
                    tokens_per_day=per_user.get("tokens_per_day"),
                ),
                max_tool_rounds=limits.get("max_tool_rounds", 5),
            ),
            retry=Retry(
                max_retries=retry.get("max_retries", 3),
                timeout_seconds=float(retry.get("timeout_seconds", 60.0)),
            ),
            tools=tuple(tools),
            env_refs=tuple(self.env_refs),
            secrets=frozenset(secrets),
        )


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
