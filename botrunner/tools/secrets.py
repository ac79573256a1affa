"""Secrets in every form they come back in.

A secret sent to a tool server can come back changed by the trip: percent-encoded in a URL the
server echoes (`qs%2Bkey%2F...%3D`), JSON-escaped by a server that escapes slashes (`\\/`) or
non-ASCII (`\\u00e9`), base64-encoded, inside the base64 of a Basic credential built from
`user:${PASSWORD}@host` in a tool URL, or decoded from the base64 of a Basic credential
(`user:password`). Each of those forms must be redacted like the secret itself, in tool
results, tool errors and everything stored or logged from them.

The forms are searched for in the text as received and, because servers mix escapes freely
(only `=` as `\\u003d`, some characters percent-encoded and not others, HTML character
references), also in the text with one layer of escapes undone (`botrunner.tools.unescape`);
what is found is replaced whole in the text as received.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote

from botrunner.tools.unescape import MAX_ESCAPE_PER_BYTE, Unescaped, may_be_escaped

__all__ = ["REDACTED", "cut", "reach", "redact", "secret_forms"]

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
    return cut(text, len(text), secrets)


def cut(text: str, end: int, secrets: frozenset[str]) -> str:
    """`text[:end]` with every form of every secret replaced; one that starts before `end` is
    replaced whole, so no piece of it is left where the text is cut (for that, `text` must go
    on `reach(secrets)` past `end` when there is more)."""
    out: list[str] = []
    done = 0
    for start, stop in _spans(text, secret_forms(secrets)):
        if start >= end:
            break
        out += (text[done:start], REDACTED)
        done = stop
    if done < end:
        out.append(text[done:end])
    return "".join(out)


@lru_cache(maxsize=256)
def reach(secrets: frozenset[str]) -> int:
    """How far, in bytes of a response, one of `secrets` can reach in any of its forms."""
    longest = max((len(s.encode("utf-8")) for s in secrets), default=0)
    forms = max((len(f.encode("utf-8")) for f in secret_forms(secrets)), default=0)
    # Doubled for a response in a two-byte encoding (UTF-16).
    return 2 * max(forms, MAX_ESCAPE_PER_BYTE * longest)


def _spans(text: str, forms: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where the forms are in `text`, as received or escaped: sorted, merged (start, end)."""
    found = _find(text, forms)
    if forms and may_be_escaped(text):
        unescaped = Unescaped(text)
        if unescaped.text != text:
            found += [unescaped.original(*span) for span in _find(unescaped.text, forms)]
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged


def _find(text: str, forms: tuple[str, ...]) -> list[tuple[int, int]]:
    found = []
    for form in forms:
        at = text.find(form)
        while at >= 0:
            found.append((at, at + len(form)))
            at = text.find(form, at + len(form))
    return found


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
    # A secret the author percent-encoded to write it in a URL (a password with "/" in
    # user:password@host) also leaves decoded; and as a URL's password it goes out inside the
    # base64 of "user:password", where only the part it alone decides can be looked for.
    plain = unquote(secret)
    derived.add(plain)
    for form in {secret, plain}:
        derived |= set(_base64_cores(form.encode("utf-8")))
    decoded = _from_base64(secret)
    if decoded is not None:
        derived.add(decoded)
        # A Basic credential: the password alone may come back ("wrong password ...").
        _, colon, password = decoded.partition(":")
        if colon:
            derived.add(password)
    found |= {form for form in derived if len(form) >= _MIN_DERIVED}
    return found


def _base64_cores(data: bytes) -> list[str]:
    """The part of base64(anything + data + anything) that `data` alone decides, for each of
    the three ways `data` can line up with base64's 3-byte groups."""
    cores = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode("ascii")
        cores.append(encoded[(8 * k + 5) // 6 : 8 * (k + len(data)) // 6])
    return cores


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
