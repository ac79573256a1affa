"""The JSON Schema is the single source of truth: complete, strict, editor-friendly, documented."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from botrunner.botfile.schema import load_schema, subschema
from botrunner.commands.reference import DOC_PATH, main, render

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = load_schema()


def _objects(node, path="$"):
    """Every schema object in the bot schema (not inside the open input_schema value)."""
    if isinstance(node, dict):
        yield path, node
        for key, sub in node.get("properties", {}).items():
            yield from _objects(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            yield from _objects(node["items"], f"{path}[]")


def test_is_a_valid_draft_07_schema():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_every_property_has_a_description():
    for path, node in _objects(SCHEMA):
        for key, prop in node.get("properties", {}).items():
            if path.endswith(".input_schema"):
                continue  # the `type: object` rule inside a tool's own JSON Schema
            assert prop.get("description"), f"{path}.{key} has no description"


def test_fixed_objects_reject_unknown_keys_but_allow_x_notes():
    fixed = [
        (path, node)
        for path, node in _objects(SCHEMA)
        if node.get("type") == "object" and "properties" in node and not path.endswith("schema")
    ]
    assert len(fixed) >= 8
    for path, node in fixed:
        assert node["additionalProperties"] is False, path
        assert "^x-" in node["patternProperties"], path


def test_the_issue_example_is_valid_for_editors():
    # What yaml-language-server checks: the plain schema on the plain YAML.
    validator = jsonschema.Draft7Validator(SCHEMA)
    for path in sorted((ROOT / "bots").glob("*.yaml")):
        if path.name.endswith(".tests.yaml"):
            continue  # conversation tests: schemas/tests.schema.json (test_bottest_files.py)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert list(validator.iter_errors(data)) == [], path


def test_subschema_lookup():
    assert subschema(("model", "max_tokens"))["minimum"] == 1
    assert subschema(("tools", 3, "http", "headers", "X-Any"))["type"] == "string"
    assert subschema(("nope", "deeper")) == {}


def test_reference_doc_is_in_sync_with_the_schema():
    assert DOC_PATH == ROOT / "docs" / "bot-reference.md"
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/bot-reference.md is out of date: run python -m botrunner.commands.reference"
    )
    assert main(["--check"]) == 0


@pytest.mark.parametrize(
    "section",
    ["## Top level", "## `model`", "## `memory`", "## `limits.per_user`", "## `tools[].http`"],
)
def test_reference_doc_covers_every_section(section):
    assert section in render()


def test_reference_doc_lists_every_key():
    text = render()
    for path, node in _objects(SCHEMA):
        if path.endswith(".input_schema"):
            continue
        for key in node.get("properties", {}):
            assert f"| `{key}`" in text, key


def test_reference_render_changes_with_the_schema():
    changed = {**SCHEMA, "properties": {**SCHEMA["properties"]}}
    changed["properties"]["greeting"] = {**changed["properties"]["greeting"], "description": "X"}
    assert render(changed) != render()
