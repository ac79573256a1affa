"""Finding a bot's secrets in text in every form they come back in.

A secret leaves in one form and can come back in another: percent-encoded by the query or path
it was sent in (either hex case, `+` for a space), JSON-escaped by the server that echoes it
(`\\/`, `\\u003d`), as HTML character references in an error page, or inside base64 when it
went out as a URL's `user:password` (Basic auth). `Redactor` looks for each secret as written
and, after undoing one layer of those escapes, in the decoded text; whatever matched is
replaced in the original text, whole.
"""

from __future__ import annotations

import base64
import html
import re
from bisect import bisect_right
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import unquote

__all__ = ["REDACTED", "Redactor", "redact", "redactor"]

REDACTED = "[redacted]"

# base64 text that only a secret decides is left out below this length: shorter runs would
# match ordinary text.
_MIN_BASE64 = 8
# The longest text one byte of a secret can become: `\u002b`, `&#x2b;` (UTF-8 escapes stay
# below this per byte), doubled for responses in a two-byte encoding.
_BYTES_PER_BYTE = 12

# One pattern per kind of escape, each starting with a literal character: the regex engine then
# skips ahead to that character instead of trying every position (ten times faster on a body).
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")
_BACKSLASH = re.compile(
    r"\\(?:u(?P<hi>[dD][89abAB][0-9a-fA-F]{2})\\u(?P<lo>[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|u(?P<u>[0-9a-fA-F]{4})|(?P<short>[\"\\/bfnrt]))"
)
_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|amp|lt|gt|quot|apos);")
_SHORT = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _utf8_length(lead: int) -> int:
    if lead < 0x80:
        return 1
    if lead >> 5 == 0b110:
        return 2
    if lead >> 4 == 0b1110:
        return 3
    return 4 if lead >> 3 == 0b11110 else 0


def _unescape(match: re.Match[str]) -> str:
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


class _Decoded:
    """`text` with one layer of escapes undone, and the way back to `text`'s offsets. Each
    escape becomes one character; a match that touches an escape covers all of it."""

    __slots__ = ("text", "_decoded_at", "_spans")

    def __init__(self, text: str) -> None:
        parts: list[str] = []
        # For each escape: where its character is in the decoded text, and the original span.
        self._decoded_at: list[int] = []
        self._spans: list[tuple[int, int]] = []
        size = at = 0

        def escape(char: str, start: int, end: int) -> None:
            nonlocal size, at
            if start > at:
                parts.append(text[at:start])
                size += start - at
            self._decoded_at.append(size)
            self._spans.append((start, end))
            parts.append(char)
            size += 1
            at = end

        found = (*_PERCENT.finditer(text), *_BACKSLASH.finditer(text), *_REFERENCE.finditer(text))
        for match in sorted(found, key=lambda m: m.start()):
            start = match.start()
            if match.re is not _PERCENT:
                char = _unescape(match)
                if char:
                    escape(char, start, match.end())
                continue
            # A run of %XX: one escape per UTF-8 character; bytes that are no UTF-8 stay as
            # written (they are copied with the text that follows).
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
                else:
                    i += 1
        parts.append(text[at:])
        self.text = "".join(parts)

    def _original(self, index: int, *, end: bool) -> int:
        """The offset in the original text of decoded character `index` (its end with `end`)."""
        i = bisect_right(self._decoded_at, index) - 1
        if i < 0:
            return index + end
        start, stop = self._spans[i]
        if self._decoded_at[i] == index:
            return stop if end else start
        return stop + (index - self._decoded_at[i] - 1) + end

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that decoded to `text[start:end]`."""
        return self._original(start, end=False), self._original(end - 1, end=True)


def _base64_cores(data: bytes) -> list[str]:
    """The part of base64(anything + data + anything) that `data` alone decides, for each of
    the three ways `data` can line up with base64's 3-byte groups (a password after "user:")."""
    cores = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode("ascii")
        core = encoded[(8 * k + 5) // 6 : 8 * (k + len(data)) // 6]
        if len(core) >= _MIN_BASE64:
            cores.append(core)
    return cores


def _find(text: str, needles: list[str]) -> list[tuple[int, int]]:
    found = []
    for needle in needles:
        at = text.find(needle)
        while at >= 0:
            found.append((at, at + len(needle)))
            at = text.find(needle, at + len(needle))
    return found


class Redactor:
    """Replaces a fixed set of secrets, in any of their forms, with `REDACTED`."""

    __slots__ = ("_needles", "margin")

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        longest = 0
        for secret in secrets:
            if not secret:
                continue
            longest = max(longest, len(secret.encode("utf-8")))
            # An author may have had to percent-encode a secret to write it in a URL (a
            # password with "/" in user:password@host): it also leaves decoded.
            for form in {secret, unquote(secret)}:
                needles.add(form)
                needles.add(form.replace(" ", "+"))  # a space in a form-encoded query
                needles.update(_base64_cores(form.encode("utf-8")))
        self._needles = sorted(needles, key=len, reverse=True)
        # How far past a point a secret that starts before it can reach, in bytes.
        self.margin = _BYTES_PER_BYTE * longest

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets are in `text`: sorted, merged (start, end) offsets."""
        if not self._needles:
            return []
        found = _find(text, self._needles)
        if "%" in text or "\\" in text or "&" in text:
            decoded = _Decoded(text)
            if decoded.text != text:
                found += [decoded.original(*span) for span in _find(decoded.text, self._needles)]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def redact(self, text: str) -> str:
        return self.cut(text, len(text))

    def cut(self, text: str, end: int) -> str:
        """`text[:end]` redacted; a secret that starts before `end` is replaced whole, so no
        piece of it is left where the text was cut (`text` must reach `margin` past `end`)."""
        out: list[str] = []
        at = 0
        for start, stop in self.spans(text):
            if start >= end:
                break
            out += (text[at:start], REDACTED)
            at = stop
        if at < end:
            out.append(text[at:end])
        return "".join(out)


@lru_cache(maxsize=256)
def redactor(secrets: frozenset[str]) -> Redactor:
    """The `Redactor` for a bot's secrets, built once per set."""
    return Redactor(secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, in any of the forms above, replaced by `REDACTED`."""
    return redactor(frozenset(secrets)).redact(text)
