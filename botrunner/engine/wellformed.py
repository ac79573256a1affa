"""Text from a model, made encodable by every later step: UTF-8 to the client, JSON, SQLite,
PostgreSQL.

JSON may carry a UTF-16 surrogate as an escape (`\\ud83d`), and a server streaming an emoji may
split its pair across two events. Python decodes each half into a `str` that no UTF-8 encoder
accepts, so one such reply would cut the client's stream and could not be stored. Where the
engine takes a reply from any provider, each pair is joined into its character and a lone
surrogate becomes U+FFFD.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def well_formed(text: str) -> str:
    """`text` with each surrogate pair joined and each lone surrogate replaced by U+FFFD."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def well_formed_value(value: Any) -> Any:
    """`value` (JSON-shaped: content blocks, tool input) with every string, keys included,
    made well formed."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, list):
        return [well_formed_value(v) for v in value]
    if isinstance(value, dict):
        return {well_formed(k): well_formed_value(v) for k, v in value.items()}
    return value


class StreamedText:
    """The pieces of one streamed reply, made well formed as they arrive: a piece that ends
    with the first half of a pair keeps it back until the next piece brings the second."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        """What of `piece` (and of what was held back) can go out now."""
        if self._held:
            piece, self._held = self._held + piece, ""
        if piece.isascii():
            return piece
        if "\ud800" <= piece[-1] <= "\udbff":
            piece, self._held = piece[:-1], piece[-1]
        return well_formed(piece)

    def flush(self) -> str:
        """At the end of the reply: a first half that no second half followed, as U+FFFD."""
        held, self._held = self._held, ""
        return _REPLACEMENT if held else ""
