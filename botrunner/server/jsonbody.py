"""JSON as the server writes it, in every body: responses, NDJSON lines and SSE data.

Compact and UTF-8 (not ASCII-escaped: half the bytes for most languages), except for U+2028,
U+2029 and U+0085, which are written as `\\u` escapes. They are valid raw in JSON, but
line readers that use `str.splitlines` (`httpx`'s and `requests`' `iter_lines`) treat them as
line breaks and cut an NDJSON line or an SSE `data:` field in the middle of the JSON. In JSON
text they can only occur inside strings, where the escape means the same character.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.responses import JSONResponse

_BREAKS = re.compile("[\u2028\u2029\u0085]")
_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str
).encode


def escape_breaks(text: str) -> str:
    """JSON text with the three line breaks above escaped (a no-op scan for most text)."""
    if _BREAKS.search(text) is None:
        return text
    return _BREAKS.sub(lambda m: _ESCAPES[m.group()], text)


def dumps(value: Any) -> str:
    """One line of JSON that every line reader reads as one line."""
    return escape_breaks(_encode(value))


class JSONBody(JSONResponse):
    """A JSONResponse written with `dumps`: the app's default response class."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
