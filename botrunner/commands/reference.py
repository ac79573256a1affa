"""Generate docs/bot-reference.md from schemas/bot.schema.json, and docs/tests-reference.md
from schemas/tests.schema.json (the schemas are the single source of truth).

python -m botrunner.commands.reference          # rewrite both
python -m botrunner.commands.reference --check  # exit 1 if it is out of date
botrunner schema --markdown                     # print it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from botrunner.botfile.schema import TESTS_SCHEMA_NAME, load_schema

DOC_PATH = Path(__file__).resolve().parent.parent.parent / "docs" / "bot-reference.md"
TESTS_DOC_PATH = DOC_PATH.with_name("tests-reference.md")

_TYPES = {
    "string": "text",
    "integer": "whole number",
    "number": "number",
    "boolean": "true / false",
    "object": "mapping",
    "array": "list",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`"


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind is None:
        return "any"
    kinds = kind if isinstance(kind, list) else [kind]  # e.g. one text, or a list of them
    text = " or ".join(_one_type(k, schema) for k in kinds)
    if "enum" in schema:
        # A boolean in an enum is YAML 1.1's reading of an unquoted off/no: not a choice.
        choices = [v for v in schema["enum"] if not isinstance(v, bool)]
        text = "one of " + ", ".join(_code(v) for v in choices)
    rules = []
    if "minimum" in schema:
        rules.append(f"≥ {schema['minimum']}")
    if "exclusiveMinimum" in schema:
        rules.append(f"> {schema['exclusiveMinimum']}")
    if "maximum" in schema:
        rules.append(f"≤ {schema['maximum']}")
    if "pattern" in schema:
        rules.append(f"matches {_code(schema['pattern'])}")
    if rules:
        text += " (" + ", ".join(rules) + ")"
    return text


def _one_type(kind: str, schema: dict[str, Any]) -> str:
    text = _TYPES.get(kind, kind)
    if kind == "array" and isinstance(schema.get("items"), dict):
        text = f"list of {_TYPES.get(schema['items'].get('type', ''), 'values')}s"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        inner = schema["additionalProperties"].get("type")
        if isinstance(inner, list):  # ["object", "null"]: an empty value means the defaults
            inner = next((k for k in inner if k != "null"), None)
        if inner:
            plural = "s" if inner in ("object", "array") else ""
            text = f"mapping of {_TYPES.get(inner, inner)}{plural}"
    return text


def _sections(schema: dict[str, Any], title: str, out: list[dict[str, Any]]) -> None:
    out.append({"title": title, "schema": schema})
    for key, sub in schema.get("properties", {}).items():
        where = f"{title}.{key}" if title else key
        if sub.get("additionalProperties") is False:
            _sections(sub, where, out)
        elif isinstance(sub.get("items"), dict) and sub["items"].get("properties"):
            _sections(sub["items"], f"{where}[]", out)
        elif _named(sub):
            _sections(sub["additionalProperties"], f"{where}.<name>", out)


def _named(schema: dict[str, Any]) -> bool:
    """A mapping of names the author chooses to fixed objects (a test's `tools`)."""
    extra = schema.get("additionalProperties")
    return isinstance(extra, dict) and bool(extra.get("properties"))


def render(schema: dict[str, Any] | None = None) -> str:
    schema = schema if schema is not None else load_schema()
    lines = [
        "# Bot file reference",
        "",
        "<!-- Generated from schemas/bot.schema.json by `python -m botrunner.commands.reference`."
        " Do not edit by hand: edit the schema and regenerate. -->",
        "",
        f"{schema.get('description', '')}",
        "",
        "One YAML file is one bot. Unknown keys are errors at every level; keys starting with "
        "`x-` are allowed anywhere for your own notes. Check a file with "
        "`botrunner validate FILE`.",
        "",
        "`system` and the texts in a tool's `http` settings are Jinja2 templates "
        "(`{{ name }}`, `{% if ... %}`). `${NAME}` or "
        "`${NAME:-default}` reads an environment variable; it is only allowed in "
        "`model.base_url`, `model.api_key` and a tool's `http` settings, so the model never "
        "sees a secret.",
        "",
    ]
    lines += _tables(schema)
    lines += _model_table()
    return "\n".join(lines).rstrip("\n") + "\n"


def render_tests(schema: dict[str, Any] | None = None) -> str:
    """docs/tests-reference.md: every key of a test file (`*.tests.yaml`)."""
    schema = schema if schema is not None else load_schema(TESTS_SCHEMA_NAME)
    lines = [
        "# Test file reference",
        "",
        "<!-- Generated from schemas/tests.schema.json by "
        "`python -m botrunner.commands.reference`. Do not edit by hand: edit the schema and "
        "regenerate. -->",
        "",
        f"{schema.get('description', '')}",
        "",
        "How to write and run tests, record them and use them in CI: "
        "[testing.md](testing.md). Unknown keys are errors at every level; keys starting with "
        "`x-` are allowed anywhere for your own notes. `botrunner validate` checks test files "
        "too.",
        "",
    ]
    lines += _tables(schema)
    return "\n".join(lines).rstrip("\n") + "\n"


def _tables(schema: dict[str, Any]) -> list[str]:
    """A table of keys for the top level and for every fixed object below it."""
    lines: list[str] = []
    sections: list[dict[str, Any]] = []
    _sections(schema, "", sections)
    for section in sections:
        sub = section["schema"]
        title = section["title"]
        lines.append(f"## {'`' + title + '`' if title else 'Top level'}")
        lines.append("")
        if title and sub.get("description"):
            lines += [sub["description"], ""]
        required = set(sub.get("required", []))
        lines += ["| Key | Type | Default | Description |", "|---|---|---|---|"]
        for key, prop in sub.get("properties", {}).items():
            if key in required:
                default = "**required**"
            elif "default" in prop:
                default = _code(prop["default"])
            else:
                default = "optional"
            desc = prop.get("description", "")
            if prop.get("examples"):
                desc += " Example: " + ", ".join(_code(e) for e in prop["examples"])
            link = title + "." + key if title else key
            nested = prop.get("additionalProperties") is False or (
                isinstance(prop.get("items"), dict) and prop["items"].get("properties")
            )
            name = f"`{key}`"
            if nested:
                anchor = link + ("[]" if prop.get("type") == "array" else "")
                name += f" ([details](#{_anchor(anchor)}))"
            elif _named(prop):
                name += f" ([details](#{_anchor(link + '.<name>')}))"
            lines.append(f"| {name} | {_cell(_type(prop))} | {default} | {_cell(desc)} |")
        lines.append("")
    return lines


def _model_table() -> list[str]:
    """The model catalogue (botrunner/providers/models.json) as a table for bot authors."""
    from botrunner.providers.catalogue import catalogue

    lines = [
        "## Models botrunner knows",
        "",
        "`validate` checks `model.name` and `model.max_tokens` against this table (from "
        "`botrunner/providers/models.json`): a name that is not here gets a warning (with a "
        "did-you-mean when it is close to one), a `max_tokens` above the model's maximum is an "
        "error. Prices are US dollars per million tokens, used by `botrunner usage`. A prompt "
        "shorter than the minimum cacheable length is never cached.",
        "",
        "| Model | Also called | Status | Context window | Max output | Min cacheable prompt "
        "| Input | Cache write (5 min / 1 h) | Cache read | Output |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in catalogue().models:
        p = m.prices
        money = (
            [
                f"${p.input:g}",
                f"${p.cache_write_5m:g} / ${p.cache_write_1h:g}",
                f"${p.cache_read:g}",
            ]
            + [f"${p.output:g}"]
            if p
            else ["", "", "", ""]
        )
        aliases = ", ".join(f"`{a}`" for a in m.aliases)
        lines.append(
            f"| `{m.id}` | {aliases} | {m.status} | {m.context_window:,} | "
            f"{m.max_output_tokens:,} | {m.min_cacheable_tokens:,} | " + " | ".join(money) + " |"
        )
    lines.append("")
    return lines


def _anchor(title: str) -> str:
    # GitHub's heading anchors: lowercase, drop punctuation except - and _, spaces to -.
    return "".join(c for c in title.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    docs = [(DOC_PATH, render()), (TESTS_DOC_PATH, render_tests())]
    if "--check" in argv:
        stale = [path for path, text in docs if _read(path) != text]
        for path in stale:
            print(f"{path} is out of date: run python -m botrunner.commands.reference")
        return 1 if stale else 0
    for path, text in docs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
