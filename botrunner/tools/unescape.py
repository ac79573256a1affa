"""Text with one layer of escapes undone, and the way back to the original offsets.

A secret can come back from a tool server escaped in ways no list of its forms can foresee:
one server escapes only `=` (Gson: `\\u003d`), another only `/` (PHP: `\\/`), another percent-encodes
some characters and not others, in either hex case, or writes HTML character references in an
error page. Undoing every such escape once and searching the result finds the secret whatever
mix of them the server used; `Unescaped.original` maps what was found back to the text as
received, so the whole escaped run is what gets redacted.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_right

__all__ = ["MAX_ESCAPE_PER_BYTE", "Unescaped", "may_be_escaped"]

# The longest text one byte of a secret can become here: "+" as `\u002b` or `&#x2b;` (a
# multi-byte character is shorter per byte in every form).
MAX_ESCAPE_PER_BYTE = 6

# One pattern per kind of escape, each starting with a literal character, so the regex engine
# skips ahead to that character instead of trying every position of a long body.
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")
_BACKSLASH = re.compile(
    r"\\(?:u(?P<hi>[dD][89abAB][0-9a-fA-F]{2})\\u(?P<lo>[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|u(?P<u>[0-9a-fA-F]{4})|(?P<short>[\"\\/bfnrt]))"
)
_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|amp|lt|gt|quot|apos);")
_SHORT = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def may_be_escaped(text: str) -> bool:
    """False when `text` has none of the characters every escape starts with (the usual case)."""
    return "%" in text or "\\" in text or "&" in text


def _utf8_length(lead: int) -> int:
    if lead < 0x80:
        return 1
    if lead >> 5 == 0b110:
        return 2
    if lead >> 4 == 0b1110:
        return 3
    return 4 if lead >> 3 == 0b11110 else 0


def _character(match: re.Match[str]) -> str:
    """The character a backslash or HTML escape stands for ("" when it stands for none)."""
    if match.re is _REFERENCE:
        char = html.unescape(match[0])
        return char if len(char) == 1 else ""
    if match["hi"]:
        high, low = int(match["hi"], 16), int(match["lo"], 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    if match["u"]:
        return chr(int(match["u"], 16))
    return _SHORT[match["short"]]


class Unescaped:
    """`text` with percent-encoding (a UTF-8 character at a time), JSON escapes (`\\/`,
    `\\uXXXX`, surrogate pairs) and HTML character references undone once. Each escape becomes
    one character; anything that is not a valid escape is kept as written."""

    __slots__ = ("text", "_at", "_spans")

    def __init__(self, text: str) -> None:
        parts: list[str] = []
        self._at: list[int] = []  # where each escape's character is in the unescaped text
        self._spans: list[tuple[int, int]] = []  # ... and the escape's span in `text`
        size = done = 0

        def escape(char: str, start: int, end: int) -> None:
            nonlocal size, done
            if start > done:
                parts.append(text[done:start])
                size += start - done
            self._at.append(size)
            self._spans.append((start, end))
            parts.append(char)
            size += 1
            done = end

        found = (*_PERCENT.finditer(text), *_BACKSLASH.finditer(text), *_REFERENCE.finditer(text))
        for match in sorted(found, key=lambda m: m.start()):
            start = match.start()
            if match.re is not _PERCENT:
                char = _character(match)
                if char:
                    escape(char, start, match.end())
                continue
            raw = bytes.fromhex(match[0].replace("%", ""))
            i = 0
            while i < len(raw):
                n = _utf8_length(raw[i])
                try:
                    char = raw[i : i + n].decode("utf-8") if n and i + n <= len(raw) else ""
                except UnicodeDecodeError:
                    char = ""
                if char:
                    escape(char, start + 3 * i, start + 3 * (i + n))
                    i += n
                else:  # not UTF-8: the byte stays as written, with the text that follows
                    i += 1
        parts.append(text[done:])
        self.text = "".join(parts)

    def _original(self, index: int, *, end: bool) -> int:
        i = bisect_right(self._at, index) - 1
        if i < 0:
            return index + end
        start, stop = self._spans[i]
        if self._at[i] == index:
            return stop if end else start
        return stop + (index - self._at[i] - 1) + end

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that `text[start:end]` came from."""
        return self._original(start, end=False), self._original(end - 1, end=True)
