"""`botrunner schema`: print the bot file JSON Schema (or, hidden, the Markdown reference)."""

from __future__ import annotations

import sys
from typing import TextIO

from botrunner.botfile.schema import schema_text


def run(*, markdown: bool = False, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    if markdown:
        from botrunner.commands.reference import render

        out.write(render())
    else:
        out.write(schema_text())
    return 0
