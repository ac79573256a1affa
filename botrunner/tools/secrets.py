"""Secrets in every form they come back in.

A secret sent to a tool server can come back changed by the trip: percent-encoded in a URL the
server echoes (`qs%2Bkey%2F...%3D`), JSON-escaped by a server that escapes slashes (`\\/`) or
non-ASCII (`\\u00e9`), base64-encoded, or decoded from the base64 of a Basic credential
(`user:password`). Each of those forms must be redacted like the secret itself, in tool
results, tool errors and everything stored or logged from them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import lru_cache
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "redact", "secret_forms"]

REDACTED = "[redacted]"
# A derived form this short could match ordinary text; the secret itself is always redacted.
_MIN_DERIVED = 6
_HEX = re.compile(r"%[0-9A-F]{2}|\\u[0-9A-F]{4}")


@lru_cache(maxsize=256)
def secret_forms(secrets: frozenset[str]) -> tuple[str, ...]:
    """Every form of every secret, longest first (so overlapping forms vanish whole)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= _forms(secret)
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


def redact(text: str, secrets: frozenset[str]) -> str:
    """Replace every form of every secret in `text`."""
    for form in secret_forms(secrets):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def _forms(secret: str) -> set[str]:
    found = {secret}
    derived: set[str] = set()
    # As sent in a path segment or a query value (httpx and urllib differ on what they keep).
    urls = {quote(secret, safe=""), quote(secret, safe="/"), quote_plus(secret)}
    urls |= {quote_plus(secret, safe="/"), quote(secret, safe="/:@!$&'()*+,;=")}
    for form in urls:
        derived |= {form, _lower_hex(form)}
    # As a JSON string: escaped slashes, \uXXXX for non-ASCII (either case), and of the URL forms.
    for form in {secret, *urls}:
        for ascii_only in (True, False):
            escaped = json.dumps(form, ensure_ascii=ascii_only)[1:-1]
            derived |= {escaped, escaped.replace("/", "\\/"), _upper_hex(escaped)}
    raw = secret.encode("utf-8")
    derived |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    decoded = _from_base64(secret)
    if decoded is not None:
        derived.add(decoded)
        # A Basic credential: the password alone may come back ("wrong password ...").
        _, colon, password = decoded.partition(":")
        if colon:
            derived.add(password)
    found |= {form for form in derived if len(form) >= _MIN_DERIVED}
    return found


def _lower_hex(text: str) -> str:
    return _HEX.sub(lambda m: m.group().lower(), text)


def _upper_hex(text: str) -> str:
    return re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group()[2:].upper(), text)


def _from_base64(secret: str) -> str | None:
    """The text a base64 secret stands for, when it is base64 of printable text."""
    if len(secret) < 8 or len(secret) % 4 or not re.fullmatch(r"[A-Za-z0-9+/_-]+={0,2}", secret):
        return None
    try:
        text = base64.b64decode(secret.replace("-", "+").replace("_", "/"), validate=True)
        decoded = text.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded if decoded.isprintable() else None
