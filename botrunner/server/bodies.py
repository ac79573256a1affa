"""What every JSON request body is checked for before a route sees it.

JSON may spell a lone UTF-16 surrogate (`"\\ud800"`); Python decodes it into a `str` that can't
be encoded as UTF-8, so it would fail wherever the text is stored or written, after the request
was accepted. Bodies are refused up front instead: 400 `invalid_message`, naming the field,
nothing stored.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, model_validator
from pydantic_core import PydanticCustomError

INVALID_TEXT = "invalid_message"
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_at(value: Any, where: str = "") -> str | None:
    """The path (`messages[0].content`) of the first string, or object key, holding a lone
    surrogate; None when there is none."""
    if isinstance(value, str):
        return (where or "body") if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return path
            found = lone_surrogate_at(item, path)
            if found:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found = lone_surrogate_at(item, f"{where}[{n}]")
            if found:
                return found
    return None


class CheckedBody(BaseModel):
    """A request body model that refuses text that is not valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        where = lone_surrogate_at(data)
        if where is not None:
            raise PydanticCustomError(
                INVALID_TEXT,
                "{where}: the text is not valid Unicode (a lone surrogate such as \\ud800); "
                "send it as UTF-8, or escape characters as surrogate pairs.",
                # A key may hold the surrogate: the message names it escaped.
                {"where": where.encode("utf-8", "backslashreplace").decode()},
            )
        return data
