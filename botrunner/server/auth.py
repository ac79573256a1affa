"""API keys and principals: who is calling, and which end user a request acts for.

Keys never come from bot YAML. They come from the environment:

    BOTRUNNER_API_KEYS="web=sk-web-123, backend=sk-backend-456"   # principal=key, comma-separated
    BOTRUNNER_TRUSTED_PRINCIPALS="backend"                        # may name end users

or from a keys file (`botrunner serve --keys FILE`), one JSON object per line (`#` comments and
blank lines are allowed); `key_sha256` (hex) may replace `key` so the file holds no secret:

    {"principal": "web", "key": "sk-web-123"}
    {"principal": "backend", "key_sha256": "9f86d08...", "trusted": true}

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every configured key
(no early exit), and are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_KEYS = "BOTRUNNER_API_KEYS"
ENV_TRUSTED = "BOTRUNNER_TRUSTED_PRINCIPALS"
ANONYMOUS = "anonymous"
_USER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


class KeysError(ValueError):
    """The keys configuration is unusable; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    # A trusted backend may act for its end users by naming them (`user.id` / OpenAI `user`).
    trusted: bool = False


class KeyRing:
    def __init__(self, entries: list[tuple[bytes, Principal]] | None = None) -> None:
        self._entries = list(entries or [])

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, digest: bytes, principal: Principal, where: str) -> None:
        if any(hmac.compare_digest(digest, known) for known, _ in self._entries):
            raise KeysError(f"{where}: this key is already configured for another principal")
        self._entries.append((digest, principal))

    def authenticate(self, key: str) -> Principal | None:
        digest = _digest(key)
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(digest, known):
                found = principal
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def load_keys(path: Path | None = None, environ: Mapping[str, str] | None = None) -> KeyRing:
    """Keys from the environment plus, when given, the keys file. Raises KeysError."""
    env = os.environ if environ is None else environ
    ring = KeyRing()
    trusted = {t.strip() for t in env.get(ENV_TRUSTED, "").split(",") if t.strip()}
    for n, entry in enumerate(re.split(r"[,\s]+", env.get(ENV_KEYS, "")), 1):
        if not entry:
            continue
        name, sep, key = entry.partition("=")
        if not sep:  # a bare key: a principal named after the key's fingerprint
            name, key = "key-" + _digest(entry).hex()[:8], entry
        if not name or not key:
            raise KeysError(f"{ENV_KEYS}: entry {n} must look like principal=key")
        ring.add(_digest(key), Principal(name, name in trusted), f"{ENV_KEYS}: entry {n}")
    if path is not None:
        _load_file(ring, Path(path))
    return ring


def _load_file(ring: KeyRing, path: Path) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KeysError(f"{path}: cannot read the keys file ({exc.strerror})") from None
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise KeysError(f"{where}: not a JSON object (one per line)") from None
        if not isinstance(item, dict) or not isinstance(item.get("principal"), str):
            raise KeysError(f'{where}: expected {{"principal": "...", "key": "..."}}')
        if isinstance(item.get("key"), str) and item["key"]:
            digest = _digest(item["key"])
        elif isinstance(item.get("key_sha256"), str):
            try:
                digest = bytes.fromhex(item["key_sha256"])
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise KeysError(f"{where}: key_sha256 must be 64 hex digits")
        else:
            raise KeysError(f'{where}: give "key" or "key_sha256"')
        ring.add(digest, Principal(item["principal"], item.get("trusted") is True), where)


def resolve_user(principal: Principal | None, named: object) -> str:
    """The end user a request acts for; sessions and limits are keyed by it.

    Without auth the caller may name the user (`user.id`), else "anonymous". With auth the user
    is the principal itself, unless a trusted principal names one (kept apart per principal).
    Raises PermissionError when an untrusted principal names someone else, ValueError when the
    id is unusable.
    """
    if named is not None and not isinstance(named, str | int):
        raise ValueError("user.id must be a string")
    name = None if named is None else str(named)
    if name is not None and not _USER_ID.match(name):
        raise ValueError("user.id must be 1 to 128 characters without control characters")
    if principal is None:
        return name or ANONYMOUS
    if name is None or name == principal.name:
        return principal.name
    if not principal.trusted:
        raise PermissionError(f"the key of '{principal.name}' may not act for other users")
    return f"{principal.name}:{name}"
