"""Load generation: a lean HTTP/1.1 client for the peers, and the anthropic SDK for the floor.

The HTTP peers are driven with a minimal keep-alive HTTP/1.1 client on asyncio streams (one
connection per simulated user) instead of httpx, so that on a 2-core machine the client costs
as little CPU as possible and the process under test is what saturates. The direct floor is the
real thing a developer would write: `AsyncAnthropic(base_url=...)`.

Time to first token (TTFT) is the time until the first body bytes carrying generated text arrive
(per protocol: an NDJSON `"delta"` line, an SSE `content_block_delta`, an OpenAI chunk with
non-empty `content`); for non-streamed turns it is not measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Turn:
    ok: bool
    total: float  # seconds, request sent -> response complete
    ttft: float | None = None
    error: str | None = None
    text: str = ""


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects after errors or `Connection: close`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            w, self.writer, self.reader = self.writer, None, None
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        marker: re.Pattern[bytes] | None = None,
    ) -> tuple[int, bytes, float | None, float]:
        """Send one request; return (status, body, ttft, total) with times in seconds."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        if body or method in ("POST", "PUT"):
            head.append(f"content-length: {len(body)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        t0 = time.perf_counter()
        try:
            self.writer.write(raw)
            status, resp, ttft, keep = await self._read(marker, t0)
        except BaseException:
            await self.close()
            raise
        total = time.perf_counter() - t0
        if not keep:
            await self.close()
        return status, resp, ttft, total

    async def _read(self, marker, t0):
        assert self.reader is not None
        r = self.reader
        head = await r.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        hdrs: dict[bytes, bytes] = {}
        for line in lines[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                hdrs[k.strip().lower()] = v.strip().lower()
        keep = hdrs.get(b"connection", b"") != b"close"
        ttft = None
        parts: list[bytes] = []
        if hdrs.get(b"transfer-encoding") == b"chunked":
            seen = b""
            while True:
                size_line = await r.readline()
                if not size_line:
                    raise HttpError("connection closed mid-body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b""):
                        pass
                    break
                data = await r.readexactly(size + 2)
                data = data[:-2]
                parts.append(data)
                if marker is not None and ttft is None:
                    seen = seen[-64:] + data
                    if marker.search(seen):
                        ttft = time.perf_counter() - t0
        elif b"content-length" in hdrs:
            n = int(hdrs[b"content-length"])
            parts.append(await r.readexactly(n) if n else b"")
        else:
            parts.append(await r.read())
            keep = False
        return status, b"".join(parts), ttft, keep


# -- protocols ---------------------------------------------------------------------------------

NDJSON_MARK = re.compile(rb'"delta"')
ANTHROPIC_MARK = re.compile(rb"content_block_delta")
OPENAI_MARK = re.compile(rb'"content":\s*"[^"]')


@dataclass
class HttpTarget:
    """How to ask one peer for one turn over HTTP."""

    host: str
    port: int
    protocol: str  # "ndjson" | "sse" | "openai" | "anthropic"
    chat_path: str = "/chat/{session}"
    model: str = "bench"
    api_key: str | None = None
    # ndjson peers that take `"stream": false` for a plain JSON reply (the hand-written baseline)
    ndjson_nonstream_field: bool = False
    # where a non-streamed turn goes when the ndjson endpoint always streams (botrunner: the
    # OpenAI-compatible endpoint)
    nonstream_via_openai: bool = False
    # botrunner: name the end user, one per simulated user (rate limits are per user)
    send_user: bool = False
    fixed_user: str | None = None

    def build(self, session: str, message: str, stream: bool) -> tuple[str, bytes, dict, Any]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        proto = self.protocol
        if not stream and self.nonstream_via_openai:
            proto = "openai"
        if proto in ("ndjson", "sse"):
            payload: dict[str, Any] = {"message": message}
            if self.fixed_user:
                payload["user"] = {"id": self.fixed_user}
            elif self.send_user:
                payload["user"] = {"id": "user-" + session}
            if not stream and self.ndjson_nonstream_field:
                payload["stream"] = False
            if proto == "sse":
                headers["accept"] = "text/event-stream"
            return self.chat_path.format(session=session), _dump(payload), headers, NDJSON_MARK
        if proto == "openai":
            payload = {"model": self.model, "stream": stream, "max_tokens": 1024,
                       "messages": [{"role": "user", "content": message}]}  # fmt: skip
            return "/v1/chat/completions", _dump(payload), headers, OPENAI_MARK
        if proto == "anthropic":
            headers["x-api-key"] = self.api_key or "test"
            headers["anthropic-version"] = "2023-06-01"
            payload = {"model": self.model, "stream": stream, "max_tokens": 1024,
                       "messages": [{"role": "user", "content": message}]}  # fmt: skip
            return "/v1/messages", _dump(payload), headers, ANTHROPIC_MARK
        raise ValueError(proto)

    def check(self, status: int, body: bytes, stream: bool) -> tuple[bool, str | None, str]:
        if status != 200:
            return False, f"HTTP {status}: {body[:120]!r}", ""
        proto = self.protocol
        if not stream and self.nonstream_via_openai:
            proto = "openai"
        try:
            if proto == "ndjson" and not stream and self.ndjson_nonstream_field:
                obj = json.loads(body)
                return True, None, str(obj.get("reply", obj.get("text", "")))
            if proto in ("ndjson", "sse"):
                # Both carry the same JSON events: one per line, or one per SSE `data:` line.
                lines = body.splitlines()
                if proto == "sse":
                    lines = [line[5:] for line in lines if line.startswith(b"data:")]
                text, done = [], False
                for data in lines:
                    data = data.strip()
                    if not data or data == b"[DONE]":
                        continue
                    obj = json.loads(data)
                    if "error" in obj:
                        return False, f"stream error: {obj['error']}", ""
                    if isinstance(obj.get("delta"), str):
                        text.append(obj["delta"])
                    if obj.get("done"):
                        done = True
                return (True, None, "".join(text)) if done else (False, "no done event", "")
            if proto == "openai":
                if not stream:
                    obj = json.loads(body)
                    return True, None, obj["choices"][0]["message"]["content"] or ""
                if b"[DONE]" not in body:
                    return False, "no [DONE]", ""
                text = []
                for line in body.splitlines():
                    if line.startswith(b"data:") and b"[DONE]" not in line:
                        obj = json.loads(line[5:])
                        for ch in obj.get("choices") or []:
                            text.append((ch.get("delta") or {}).get("content") or "")
                return True, None, "".join(text)
            if proto == "anthropic":
                if stream:
                    ok = b"message_stop" in body
                    return ok, None if ok else "no message_stop", ""
                obj = json.loads(body)
                return True, None, obj["content"][0].get("text", "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return False, f"bad body: {exc}", ""
        return False, "unknown protocol", ""


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class HttpWorker:
    """One simulated user of an HTTP peer: one connection, turns one after another."""

    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        self.conn = Conn(target.host, target.port)

    async def turn(self, session: str, message: str, stream: bool, timeout: float = 60.0) -> Turn:
        path, body, headers, marker = self.target.build(session, message, stream)
        t0 = time.perf_counter()
        try:
            status, resp, ttft, total = await asyncio.wait_for(
                self.conn.request("POST", path, body, headers, marker if stream else None),
                timeout,
            )
        except TimeoutError:
            await self.conn.close()
            return Turn(False, time.perf_counter() - t0, error="timeout")
        except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
            await self.conn.close()
            return Turn(False, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")
        ok, err, text = self.target.check(status, resp, stream)
        return Turn(ok, total, ttft if stream else None, err, text)

    async def close(self) -> None:
        await self.conn.close()


class SdkTarget:
    """The floor: the anthropic SDK straight to the upstream."""

    def __init__(self, base_url: str, model: str = "claude-sonnet-4-6") -> None:
        import httpx
        from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

        self.model = model
        self.client = AsyncAnthropic(
            base_url=base_url,
            api_key="test",
            max_retries=0,
            http_client=DefaultAsyncHttpxClient(
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=512)
            ),
        )

    async def aclose(self) -> None:
        await self.client.close()


class SdkWorker:
    def __init__(self, target: SdkTarget) -> None:
        self.target = target

    async def turn(self, session: str, message: str, stream: bool, timeout: float = 60.0) -> Turn:
        client = self.target.client
        msgs = [{"role": "user", "content": message}]
        t0 = time.perf_counter()
        ttft = None
        try:
            async with asyncio.timeout(timeout):
                if stream:
                    parts = []
                    async with client.messages.stream(
                        model=self.target.model, max_tokens=1024, messages=msgs
                    ) as s:
                        async for text in s.text_stream:
                            if ttft is None:
                                ttft = time.perf_counter() - t0
                            parts.append(text)
                        await s.get_final_message()
                    return Turn(True, time.perf_counter() - t0, ttft, None, "".join(parts))
                r = await client.messages.create(
                    model=self.target.model, max_tokens=1024, messages=msgs
                )
                text = r.content[0].text if r.content else ""
                return Turn(True, time.perf_counter() - t0, None, None, text)
        except TimeoutError:
            return Turn(False, time.perf_counter() - t0, error="timeout")
        except Exception as exc:  # the SDK's own error types
            return Turn(False, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        pass
