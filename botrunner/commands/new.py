"""`botrunner new NAME`: write a commented starter bot that is valid as written."""

from __future__ import annotations

import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import TextIO

from botrunner.botfile.schema import SCHEMA_NAME, TESTS_SCHEMA_NAME, schema_text

KINDS = ("tutor", "support", "tool")
# The schema's own rule for `name` (schemas/bot.schema.json).
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def run(
    name: str,
    *,
    kind: str = "tutor",
    directory: Path = Path("bots"),
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if not NAME.fullmatch(name):
        err.write(
            f'error: "{name}" cannot be a bot name\n'
            "    hint: Use lowercase letters, digits, - and _, starting with a letter or digit "
            "(like support-bot).\n"
        )
        return 2
    path = directory / f"{name}.yaml"
    tests = directory / f"{name}.tests.yaml"
    for existing in (path, tests):
        if existing.exists():
            err.write(
                f"error: {existing} already exists; nothing was written\n"
                f"    hint: Pick another name, or delete {existing} first if you want to start "
                "over.\n"
            )
            return 1
    directory.mkdir(parents=True, exist_ok=True)
    schema, wrote_schema = _schema_for(directory, SCHEMA_NAME)
    tests_schema, _ = _schema_for(directory, TESTS_SCHEMA_NAME)
    values = {
        "__NAME__": name,
        "__PATH__": str(path),
        "__TESTS_PATH__": str(tests),
        "__SCHEMA__": schema,
        "__TESTS_SCHEMA__": tests_schema,
    }
    path.write_text(_starter(f"{kind}.yaml", values), encoding="utf-8")
    tests.write_text(_starter("first.tests.yaml", values), encoding="utf-8")
    out.write(f"Wrote {path} and its first test, {tests}")
    out.write(f" (and {wrote_schema}, for your editor)\n" if wrote_schema else "\n")
    out.write(
        "Next:\n"
        f"  botrunner validate {path}   # check it\n"
        f"  botrunner chat {path}       # talk to it in this terminal\n"
        f"  botrunner serve {path}      # serve it on http://127.0.0.1:8000\n"
    )
    return 0


def _starter(name: str, values: dict[str, str]) -> str:
    text = resources.files("botrunner.commands").joinpath(f"starters/{name}").read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _schema_for(directory: Path, schema_name: str) -> tuple[str, Path | None]:
    """The modeline's path to a schema, relative to the bot file: the nearest
    `schemas/<schema_name>` above it, or a copy written next to the bots folder."""
    start = directory.resolve()
    for folder in (start, *start.parents):
        candidate = folder / "schemas" / schema_name
        if candidate.is_file():
            return Path(os.path.relpath(candidate, start)).as_posix(), None
    target = directory.parent / "schemas" / schema_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(schema_text(schema_name), encoding="utf-8")
    return Path(os.path.relpath(target.resolve(), start)).as_posix(), target
