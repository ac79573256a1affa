"""`botrunner schema`: print the bot file JSON Schema, or the test file's (`--tests`), or
(hidden) the Markdown reference."""

from __future__ import annotations

import sys
from typing import TextIO

from botrunner.botfile.schema import TESTS_SCHEMA_NAME, schema_text


def run(*, markdown: bool = False, tests: bool = False, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    if markdown:
        from botrunner.commands.reference import render

        out.write(render())
    elif tests:
        out.write(schema_text(TESTS_SCHEMA_NAME))
    else:
        out.write(schema_text())
    return 0
