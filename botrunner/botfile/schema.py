"""Find and load botrunner's JSON Schemas: the bot file's and the test file's (shipped in the
wheel; in `schemas/` in a checkout)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_NAME = "bot.schema.json"
TESTS_SCHEMA_NAME = "tests.schema.json"
CHECKOUT_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CHECKOUT_SCHEMA = CHECKOUT_SCHEMAS / SCHEMA_NAME


@cache
def schema_path(name: str = SCHEMA_NAME) -> Path:
    """The installed package's copy first, then the checkout's `schemas/` folder."""
    try:
        packaged = resources.files("botrunner").joinpath(name)
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, OSError):  # pragma: no cover - odd import setups
        pass
    checkout = CHECKOUT_SCHEMAS / name
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(
        f"cannot find {name}: it should be inside the installed botrunner package or at {checkout}"
    )


@cache
def schema_text(name: str = SCHEMA_NAME) -> str:
    return schema_path(name).read_text(encoding="utf-8")


@cache
def load_schema(name: str = SCHEMA_NAME) -> dict[str, Any]:
    """The schema as a dict. Cached: treat it as read-only."""
    return json.loads(schema_text(name))


def subschema(path: tuple[str | int, ...], name: str = SCHEMA_NAME) -> dict[str, Any]:
    """The part of the schema describing the value at `path` ({} when the schema is silent)."""
    node: Any = load_schema(name)
    for part in path:
        if not isinstance(node, dict):
            return {}
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        else:
            extra = node.get("additionalProperties", {})
            node = extra if isinstance(extra, dict) else {}
    return node if isinstance(node, dict) else {}
