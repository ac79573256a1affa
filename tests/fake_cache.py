"""The prompt cache of the fake Anthropic server, applying the Messages API's documented rules.

From the prompt-caching docs (platform.claude.com/docs/en/build-with-claude/prompt-caching):

- A request's blocks form one prefix, in the order tools, system, messages; a cache entry is
  keyed by the whole prefix up to a block (and by the model). `cache_control` itself is not part
  of the key, so moving a breakpoint does not change a prefix.
- Writes happen only at breakpoints (at most 4 per request), and only for a prefix of at least
  the model's minimum cacheable length; a shorter one is processed uncached, without an error.
- A read looks back from each breakpoint for an entry an earlier request wrote, checking at
  most 20 positions (the breakpoint itself first); a run of consecutive tool_use blocks counts
  as one position, and so does a run of tool_result blocks. The longest live entry found is
  read.
- An entry lives 5 minutes (or 1 hour with `ttl: "1h"`) from the start of the last request
  that wrote or read it. A `1h` breakpoint may not follow a `5m` one.
- Usage: `cache_read_input_tokens` (the prefix read), `cache_creation_input_tokens` (from there
  to the last breakpoint that writes, split by TTL in `cache_creation`), `input_tokens` (the
  rest, after the last breakpoint).

Tokens are estimated from bytes (4 a token): a text block by its text, any other block by its
JSON, a message's role and framing as 3 more tokens on its first block, and
`REQUEST_OVERHEAD` tokens per request outside the blocks (uncached input). Requests with and
without breakpoints are counted the same way (`prompt_tokens`), so their costs compare.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

LOOKBACK = 20
MAX_BREAKPOINTS = 4
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
# The minimum cacheable length of a model the catalogue does not know (e.g. claude-fake-1).
DEFAULT_MIN_CACHEABLE = 1024
# Tokens of a request that are in none of its blocks.
REQUEST_OVERHEAD = 8
# A message's role and framing, counted with its first block.
MESSAGE_OVERHEAD = 3

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


class CacheRequestError(ValueError):
    """A request the real API refuses with a 400 `invalid_request_error`."""


@dataclass(frozen=True, slots=True)
class Block:
    where: str  # tools[i], system[i], messages[i][j]
    key: bytes  # what the prefix hash covers (the block without cache_control, and its role)
    ttl: str | None  # the breakpoint's TTL, None when the block is not a breakpoint
    group: int  # the lookback position: runs of tool_use (or tool_result) blocks share one
    tokens: int


def blocks(body: Any) -> Iterator[tuple[str, Any, Any, str]]:
    """(where, block without cache_control, its cache_control or None, role) for every block
    of a request, in prefix order."""
    if not isinstance(body, dict):
        return
    for i, tool in enumerate(body.get("tools") or ()):
        yield (f"tools[{i}]", *_split(tool), "tools")
    system = body.get("system")
    if isinstance(system, str) and system:
        yield "system[0]", {"type": "text", "text": system}, None, "system"
    elif isinstance(system, list):
        for i, block in enumerate(system):
            yield (f"system[{i}]", *_split(block), "system")
    for m, message in enumerate(body.get("messages") or ()):
        content = message.get("content")
        role = str(message.get("role"))
        if isinstance(content, str):
            yield f"messages[{m}][0]", {"type": "text", "text": content}, None, role
            continue
        for j, block in enumerate(content or ()):
            yield (f"messages[{m}][{j}]", *_split(block), role)


def _split(block: Any) -> tuple[Any, Any]:
    if isinstance(block, dict) and "cache_control" in block:
        rest = {k: v for k, v in block.items() if k != "cache_control"}
        return rest, block["cache_control"]
    return block, None


def _tokens(where: str, block: Any, role: str) -> int:
    if isinstance(block, dict) and block.get("type") == "text":
        tokens = max(1, len(str(block.get("text", "")).encode()) // 4)
    else:
        tokens = max(1, len(_dumps(block).encode()) // 4)
    if role in ("user", "assistant") and where.endswith("][0]"):
        tokens += MESSAGE_OVERHEAD
    return tokens


def prompt_tokens(body: Any) -> int:
    """The whole prompt of a request, in the fake's tokens."""
    return REQUEST_OVERHEAD + sum(_tokens(w, b, r) for w, b, _, r in blocks(body))


def parse(body: Any) -> list[Block]:
    """The request's blocks with their breakpoints, lookback positions and sizes."""
    out: list[Block] = []
    group, previous = -1, ""
    for where, block, marker, role in blocks(body):
        kind = block.get("type") if isinstance(block, dict) else None
        run = kind in ("tool_use", "tool_result")
        if not (run and previous == f"{role}:{kind}"):
            group += 1
        previous = f"{role}:{kind}" if run else ""
        ttl = None
        if marker is not None:
            if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
                raise CacheRequestError(f"{where}.cache_control: type must be 'ephemeral'")
            ttl = marker.get("ttl", "5m")
            if ttl not in TTL_SECONDS:
                raise CacheRequestError(f"{where}.cache_control.ttl: must be '5m' or '1h'")
            if kind == "text" and not block.get("text"):
                raise CacheRequestError(f"{where}: cache_control cannot be set for empty text")
        key = _dumps([role, where.endswith("[0]"), block]).encode()
        out.append(Block(where, key, ttl, group, _tokens(where, block, role)))
    found = [b for b in out if b.ttl is not None]
    if len(found) > MAX_BREAKPOINTS:
        raise CacheRequestError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(found)}."
        )
    for earlier, later in zip(found, found[1:], strict=False):
        if earlier.ttl == "5m" and later.ttl == "1h":
            raise CacheRequestError(
                f"{later.where}: a cache_control block with ttl '1h' cannot come after one "
                "with ttl '5m'; put longer TTLs first."
            )
    return out


@dataclass(slots=True)
class Entry:
    expires: float
    ttl: str


@dataclass(slots=True)
class PromptCache:
    """Cache entries by prefix hash, and the usage each request gets from them."""

    min_cacheable: Callable[[str], int]
    clock: Callable[[], float] = time.monotonic
    entries: dict[str, Entry] = field(default_factory=dict)

    def apply(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """Read and write the cache for one request; return its `usage` input fields.
        Raises CacheRequestError for a request the API refuses."""
        parsed = parse(body)
        now = self.clock()
        digest = hashlib.sha256(model.encode())
        hashes, ends = [], []
        end = 0
        for block in parsed:
            digest = digest.copy()
            digest.update(block.key)
            hashes.append(digest.hexdigest())
            end += block.tokens
            ends.append(end)
        total = end + REQUEST_OVERHEAD
        marks = [i for i, block in enumerate(parsed) if block.ttl is not None]
        read_at = self._lookback(parsed, hashes, marks, now)
        read = ends[read_at] if read_at >= 0 else 0
        minimum = self.min_cacheable(model)
        written = {"5m": 0, "1h": 0}
        upto = read
        for i in marks:
            if ends[i] < minimum:
                continue  # too short to cache: processed uncached, no error
            ttl = parsed[i].ttl or "5m"
            if ends[i] > upto:
                written[ttl] += ends[i] - upto
                upto = ends[i]
            self.entries[hashes[i]] = Entry(now + TTL_SECONDS[ttl], ttl)
        if len(self.entries) > 100_000:
            self.entries = {h: e for h, e in self.entries.items() if e.expires > now}
        creation = written["5m"] + written["1h"]
        return {
            "input_tokens": total - read - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written["5m"],
                "ephemeral_1h_input_tokens": written["1h"],
            },
        }

    def _lookback(
        self, parsed: list[Block], hashes: list[str], marks: list[int], now: float
    ) -> int:
        """The index of the longest live entry found looking back from the breakpoints, or -1;
        the entry read is refreshed."""
        best = -1
        for mark in marks:
            positions, group = 0, None
            for j in range(mark, -1, -1):
                if parsed[j].group != group:
                    positions += 1
                    group = parsed[j].group
                    if positions > LOOKBACK:
                        break
                entry = self.entries.get(hashes[j])
                if entry is not None and entry.expires > now:
                    best = max(best, j)
                    break
        if best >= 0:
            entry = self.entries[hashes[best]]
            entry.expires = now + TTL_SECONDS[entry.ttl]
        return best


def catalogue_minimum(default: int = DEFAULT_MIN_CACHEABLE) -> Callable[[str], int]:
    """The minimum cacheable length by model, from botrunner's model catalogue."""
    try:
        from botrunner.providers.catalogue import find_model
    except ImportError:  # run without botrunner importable: every model gets the default
        return lambda model: default

    def minimum(model: str) -> int:
        info = find_model(model)
        return info.min_cacheable_tokens if info is not None else default

    return minimum
