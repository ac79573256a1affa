"""Find and load the bot file JSON Schema (shipped in the wheel; in `schemas/` in a checkout)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_NAME = "bot.schema.json"
CHECKOUT_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_NAME


@cache
def schema_path() -> Path:
    """The installed package's copy first, then the checkout's `schemas/` folder."""
    try:
        packaged = resources.files("botrunner").joinpath(SCHEMA_NAME)
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, OSError):  # pragma: no cover - odd import setups
        pass
    if CHECKOUT_SCHEMA.is_file():
        return CHECKOUT_SCHEMA
    raise FileNotFoundError(
        f"cannot find {SCHEMA_NAME}: it should be inside the installed botrunner package "
        f"or at {CHECKOUT_SCHEMA}"
    )


@cache
def schema_text() -> str:
    return schema_path().read_text(encoding="utf-8")


@cache
def load_schema() -> dict[str, Any]:
    """The schema as a dict. Cached: treat it as read-only."""
    return json.loads(schema_text())


def subschema(path: tuple[str | int, ...]) -> dict[str, Any]:
    """The part of the schema describing the value at `path` ({} when the schema is silent)."""
    node: Any = load_schema()
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
