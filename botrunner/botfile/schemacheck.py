"""The schema pass: JSON Schema errors said in plain words, at the text the author must change.

Each jsonschema error becomes a `Problem` located at the offending key or value, with a hint
("did you mean", where a misplaced key belongs, what the setting is for). Every path the schema
rejects is recorded in `FileCheck.failed`, so the semantic rules skip it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from botrunner.botfile import yamlsrc
from botrunner.botfile.filecheck import FileCheck, PathT, closest, display
from botrunner.botfile.schema import SCHEMA_NAME, TESTS_SCHEMA_NAME, load_schema, subschema

__all__ = ["check_schema"]

_TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value lines)",
    "array": "a list (lines starting with -)",
    "null": "empty",
}

# What a file of each kind must look like at the top, said when it is not a mapping at all.
_ROOT = {
    SCHEMA_NAME: (
        "a bot file must be a mapping of key: value lines (name:, model:, system: ...)",
        "See bots/tutor.yaml for a complete example.",
    ),
    TESTS_SCHEMA_NAME: (
        "a test file must be a mapping of key: value lines (bot:, tests: ...)",
        "See bots/tutor.tests.yaml for a complete example, and docs/testing.md.",
    ),
}

_BOUNDS = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "more than",
    "exclusiveMaximum": "less than",
}


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft7Validator

    return Draft7Validator(load_schema(name))


@cache
def _known_keys(name: str) -> dict[str, list[str]]:
    """Every fixed key in the schema -> where it belongs ("memory", "tools[].http", ...)."""
    index: dict[str, list[str]] = {}

    def walk(node: dict[str, Any], where: str) -> None:
        for key, sub in node.get("properties", {}).items():
            index.setdefault(key, []).append(where)
            if sub.get("additionalProperties") is False:
                walk(sub, f"{where}.{key}" if where else key)
            elif isinstance(sub.get("items"), dict):
                walk(sub["items"], f"{where}.{key}[]" if where else f"{key}[]")

    walk(load_schema(name), "")
    return index


def check_schema(check: FileCheck, schema: str = SCHEMA_NAME) -> None:
    """Check the file against `schema` (a file in `schemas/`: the bot file's by default)."""
    validator = _validator(schema)
    errors = list(validator.iter_errors(check.src.data))
    if _read_as_text(check, errors):
        errors = list(validator.iter_errors(check.src.data))
    for err in errors:
        _report(check, err, schema)


def _read_as_text(check: FileCheck, errors: list[Any]) -> bool:
    """Where text is expected but YAML read an unquoted `yes`, `1.0` or `12:30` as something
    else, use the text as written (warning where YAML 1.1 changed it). True if any changed."""
    coerced = False
    for err in errors:
        path = tuple(err.absolute_path)
        expected = err.validator_value if err.validator == "type" else None
        if not path or expected is None:
            continue
        if "string" not in ([expected] if isinstance(expected, str) else expected):
            continue
        node = check.src.nodes.get(path)
        text = yamlsrc.plain_text(node)
        if text is None:
            continue
        _set(check.src.data, path, text)
        coerced = True
        how = yamlsrc.surprise(node)
        if how:
            check.schema_problems.append(
                check.src.problem(
                    check.src.node_pos(path),
                    f'YAML reads "{text}" as {how}; botrunner uses the text "{text}" here',
                    f'Put it in quotes ("{text}") so every tool reads it the same way.',
                    "warning",
                )
            )
    return coerced


def _report(check: FileCheck, err: Any, schema: str) -> None:
    path: PathT = tuple(err.absolute_path)
    kind = err.validator
    sub = err.schema if isinstance(err.schema, dict) else {}
    what = display(path)
    desc = sub.get("description", "")
    value = err.instance
    src = check.src

    def add(pos: tuple[int, int], message: str, hint: str, failed: PathT) -> None:
        problem = src.problem(pos, message, hint)
        if problem not in check.schema_problems:  # e.g. one `required` error per missing key
            check.schema_problems.append(problem)
        check.failed.append(failed)

    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(sub.get("properties", {}))
        patterns = list(sub.get("patternProperties", {}))
        for key in value:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            add(
                src.key_pos((*path, key)),
                f'unknown key "{key}"{_where(path)}',
                _unknown_key_hint(key, allowed, schema),
                (*path, key),
            )
    elif kind == "required":
        allowed = list(sub.get("properties", {}))
        for key in err.validator_value:
            if not isinstance(value, dict) or key in value:
                continue
            if any(closest(k, allowed) == key for k in value if k not in allowed):
                # A misspelling of it is reported as an unknown key with "did you mean".
                check.failed.append((*path, key))
                continue
            about = subschema((*path, key), schema).get("description", "")
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
            add(src.node_pos(path), *_ROOT[schema], path)
        elif value is None:
            add(
                src.node_pos(path),
                f"{what} has no value",
                f"Write {want} after the colon, or delete the line. {desc}".strip(),
                path,
            )
        else:
            add(src.node_pos(path), f"{what} should be {want}, not {_describe(value)}", desc, path)
    elif kind == "enum":
        # A boolean in an enum only accepts YAML 1.1's reading of an unquoted `off`.
        choices = [str(c) for c in err.validator_value if not isinstance(c, bool)]
        close = closest(str(value), choices)
        add(
            src.node_pos(path),
            f"{what} must be one of {', '.join(choices)}, not {_describe(value)}",
            f'Did you mean "{close}"?' if close else desc,
            path,
        )
    elif kind in _BOUNDS:
        rule = f"{_BOUNDS[kind]} {_number(err.validator_value)}"
        add(src.node_pos(path), f"{what} must be {rule}, not {_number(value)}", desc, path)
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
    elif kind == "minItems":
        add(
            src.node_pos(path),
            f"{what} is empty",
            f"Write at least {_plural(err.validator_value, 'item')} (lines starting with -). {desc}".strip(),
            path,
        )
    elif kind == "const":
        add(
            src.node_pos(path),
            sub.get("errorMessage", f"{what} must be {err.validator_value!r}"),
            desc,
            path,
        )
    else:  # pragma: no cover - every keyword the schema uses is handled above
        add(src.node_pos(path), f"{what}: {err.message}", desc, path)


def _unknown_key_hint(key: str, allowed: list[str], schema: str) -> str:
    close = closest(key, allowed)
    if close:
        return f'Did you mean "{close}"?'
    homes = [w for w in _known_keys(schema).get(key, []) if w]
    if homes:
        return f'"{key}" belongs under {homes[0]}:'
    listing = ", ".join(allowed)
    return f"Allowed here: {listing}. Keys starting with x- are ignored, for your own notes."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _where(path: PathT) -> str:
    return f" in {display(path)}" if path else ""


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
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-" if lower else "_", slug).strip("-_")[:64]
    if not re.fullmatch(pattern, slug) and re.fullmatch(pattern, slug.replace("-", "_")):
        slug = slug.replace("-", "_")  # names used in templates: first-name -> first_name
    return slug


def _set(data: Any, path: PathT, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value
