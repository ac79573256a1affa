"""A tool's `input_schema` read as JSON Schema authors use it.

A JSON Schema validator ignores keywords it does not know, so `typ: string` or `requried: [city]`
is a valid schema that means something else: the model is then told any value will do. These
rules catch what the metaschema cannot: misspelt keywords, `required` names that are not
declared, `enum` values of the wrong type and a `default` that does not validate.
"""

from __future__ import annotations

import json
from typing import Any

from botrunner.botfile.filecheck import FileCheck, PathT, closest, display

__all__ = ["KEYWORDS", "lint_input_schema"]

# Draft 7 and 2020-12 keywords, plus the annotations editors and model APIs read.
KEYWORDS = frozenset(
    """$schema $id $ref $defs $comment $anchor $dynamicRef $dynamicAnchor $vocabulary definitions
    type enum const title description default examples deprecated readOnly writeOnly format
    multipleOf maximum exclusiveMaximum minimum exclusiveMinimum
    maxLength minLength pattern contentMediaType contentEncoding contentSchema
    items additionalItems prefixItems maxItems minItems uniqueItems contains maxContains
    minContains unevaluatedItems
    maxProperties minProperties required properties patternProperties additionalProperties
    dependencies dependentRequired dependentSchemas propertyNames unevaluatedProperties
    allOf anyOf oneOf not if then else""".split()  # noqa: SIM905 (reads as the spec lists them)
)

# Where a keyword's value holds subschemas: one, a list of them, or a mapping name -> schema.
_ONE = ("additionalProperties", "additionalItems", "contains", "propertyNames", "not", "if")
_ONE += ("then", "else", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def lint_input_schema(check: FileCheck, path: PathT) -> None:
    """Report the schema at `path` and every subschema in it (the metaschema already passed)."""
    schema = check.get(path)
    if isinstance(schema, dict):
        _lint(check, schema, path)


def _lint(check: FileCheck, schema: dict[str, Any], path: PathT) -> None:
    for key in schema:
        if key in KEYWORDS or key.startswith("x-"):
            continue
        close = closest(key, KEYWORDS)
        if close:
            check.error(
                check.src.key_pos((*path, key)),
                f'"{key}" is not a JSON Schema keyword in {display(path)}',
                f'Did you mean "{close}"? A misspelt keyword is ignored, so the model is told '
                "something else than you meant.",
            )
        else:
            check.warn(
                check.src.key_pos((*path, key)),
                f'"{key}" is not a JSON Schema keyword in {display(path)}; it is ignored',
                'Remove it, or start it with "x-" if it is a note for yourself.',
            )
    _check_required(check, schema, path)
    _check_enum(check, schema, path)
    _check_default(check, schema, path)
    for key, sub in _subschemas(schema, path):
        _lint(check, sub, key)


def _subschemas(schema: dict[str, Any], path: PathT) -> list[tuple[PathT, dict[str, Any]]]:
    found: list[tuple[PathT, dict[str, Any]]] = []
    for key in _ONE:
        if isinstance(schema.get(key), dict):
            found.append(((*path, key), schema[key]))
    for key in _LIST:
        if isinstance(schema.get(key), list):
            found += [
                ((*path, key, i), s) for i, s in enumerate(schema[key]) if isinstance(s, dict)
            ]
    items = schema.get("items")
    if isinstance(items, dict):
        found.append(((*path, "items"), items))
    elif isinstance(items, list):
        found += [((*path, "items", i), s) for i, s in enumerate(items) if isinstance(s, dict)]
    for key in _MAP:
        if isinstance(schema.get(key), dict):
            found += [((*path, key, n), s) for n, s in schema[key].items() if isinstance(s, dict)]
    return found


def _check_required(check: FileCheck, schema: dict[str, Any], path: PathT) -> None:
    required, properties = schema.get("required"), schema.get("properties")
    if not isinstance(required, list) or not isinstance(properties, dict):
        return
    if "patternProperties" in schema:
        return  # a required name may be matched by a pattern
    declared = sorted(properties)
    for index, name in enumerate(required):
        if not isinstance(name, str) or name in properties:
            continue
        close = closest(name, declared)
        check.error(
            check.src.node_pos((*path, "required", index)),
            f'"{name}" is required but not declared under {display((*path, "properties"))}',
            f'Did you mean "{close}"?'
            if close
            else f"Add {name} under properties (with its type and a description), or remove it "
            "from required.",
        )


def _types(schema: dict[str, Any]) -> list[str] | None:
    declared = schema.get("type")
    names = [declared] if isinstance(declared, str) else declared
    if not isinstance(names, list) or not all(n in _PYTHON_TYPES for n in names):
        return None
    return names


def _is_a(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _PYTHON_TYPES[name])


def _check_enum(check: FileCheck, schema: dict[str, Any], path: PathT) -> None:
    enum, names = schema.get("enum"), _types(schema)
    if not isinstance(enum, list) or names is None:
        return
    for index, value in enumerate(enum):
        if not any(_is_a(value, n) for n in names):
            check.error(
                check.src.node_pos((*path, "enum", index)),
                f"the enum value {_show(value)} is not of type {' or '.join(names)} in "
                f"{display(path)}",
                _quote_hint(check, (*path, "enum", index), value, names),
            )


def _check_default(check: FileCheck, schema: dict[str, Any], path: PathT) -> None:
    if "default" not in schema:
        return
    from jsonschema import Draft7Validator

    rest = {k: v for k, v in schema.items() if k != "default"}
    try:
        error = next(iter(Draft7Validator(rest).iter_errors(schema["default"])), None)
    except Exception:  # an unresolvable $ref: the metaschema pass and the API decide
        return
    if error is not None:
        names = _types(schema) or []
        check.error(
            check.src.node_pos((*path, "default")),
            f"the default {_show(schema['default'])} does not fit its own schema in "
            f"{display(path)}: {error.message}",
            _quote_hint(check, (*path, "default"), schema["default"], names)
            or "Change the default to a value the schema accepts, or remove it.",
        )


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _quote_hint(check: FileCheck, where: PathT, value: Any, names: list[str]) -> str:
    if "string" in names and not isinstance(value, str | dict | list):
        node = check.src.nodes.get(where)
        raw = getattr(node, "value", None) if node is not None else None
        text = raw if isinstance(raw, str) else _show(value)
        kind = (
            "a number" if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
        kind = kind or ("empty (null)" if value is None else f"the true/false value {_show(value)}")
        return f'YAML reads {text} as {kind}, not text; quote it: "{text}".'
    return ""
