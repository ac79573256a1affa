"""HTTP-backed tools: the model's input is untrusted, the author's YAML is trusted as written.

A call is validated against the tool's `input_schema`, rendered into a request by
`botrunner.templating` (which keeps the scheme and host literal and encodes every `input`
value for the place it goes), sent with httpx, and its response read as a capped stream.
Every failure becomes an `is_error` result the model can read and recover from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
import jsonschema

from botrunner.bot import Tool
from botrunner.templating import render_request

MAX_REDIRECTS = 5
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    content: str
    is_error: bool = False


def redact(text: str, secrets: frozenset[str]) -> str:
    """Replace every secret value in `text`; longest first so overlapping secrets vanish whole."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


class ToolRunner:
    """Runs tool calls over one shared httpx client (connection pooling across turns)."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        # Keyed by id(tool); the tool itself is kept so a reused id after a reload can't match.
        self._validators: dict[int, tuple[Tool, Any]] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, tool: Tool, call_input: Any, secrets: frozenset[str]) -> ToolOutcome:
        outcome = await self._run(tool, call_input)
        return ToolOutcome(redact(outcome.content, secrets), outcome.is_error)

    async def _run(self, tool: Tool, call_input: Any) -> ToolOutcome:
        problem = self._check_input(tool, call_input)
        if problem:
            return ToolOutcome(
                f"Invalid input for tool {tool.name}: {problem}. Fix the input and call it again.",
                is_error=True,
            )
        try:
            rendered = render_request(tool.http, call_input)
        except ValueError as exc:
            return ToolOutcome(f"Tool {tool.name} could not build its request: {exc}", True)
        request = self._client.build_request(
            rendered.method,
            rendered.url,
            params=rendered.params or None,
            headers=rendered.headers,
            json=rendered.json,
            timeout=tool.http.timeout_seconds,
        )
        try:
            return await self._send(tool, request)
        except httpx.TimeoutException:
            return ToolOutcome(
                f"Tool {tool.name} timed out: {request.url.host} did not answer within "
                f"{tool.http.timeout_seconds:g} s.",
                is_error=True,
            )
        except httpx.HTTPError as exc:
            return ToolOutcome(
                f"Tool {tool.name} could not reach {request.url.host}: {_short(exc)}.", True
            )

    def _check_input(self, tool: Tool, call_input: Any) -> str | None:
        cached = self._validators.get(id(tool))
        if cached is None or cached[0] is not tool:
            cls = jsonschema.validators.validator_for(tool.input_schema)
            cached = (tool, cls(tool.input_schema))
            self._validators[id(tool)] = cached
        error = jsonschema.exceptions.best_match(cached[1].iter_errors(call_input))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{error.message} (at '{where}')" if where else error.message

    async def _send(self, tool: Tool, request: httpx.Request) -> ToolOutcome:
        origin = (request.url.scheme, request.url.host, request.url.port)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._client.send(request, stream=True)
            try:
                if not (response.is_redirect and tool.http.follow_redirects):
                    return await self._read(tool, response)
                target = httpx.URL(urljoin(str(request.url), response.headers["location"]))
                if (target.scheme, target.host, target.port) != origin:
                    return ToolOutcome(
                        f"Tool {tool.name} was redirected to another host ({target.host}); "
                        "botrunner only follows redirects on the same host.",
                        is_error=True,
                    )
            finally:
                await response.aclose()
            method = "GET" if response.status_code in (301, 302, 303) else request.method
            request = self._client.build_request(
                method, target, headers=request.headers, timeout=tool.http.timeout_seconds
            )
        return ToolOutcome(f"Tool {tool.name} was redirected too many times.", True)

    async def _read(self, tool: Tool, response: httpx.Response) -> ToolOutcome:
        cap = tool.http.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                truncated = True
                break
        body = b"".join(chunks)[:cap].decode(response.encoding or "utf-8", errors="replace")
        if response.is_redirect:
            return ToolOutcome(
                f"Tool {tool.name} got a redirect (HTTP {response.status_code}) and does not "
                "follow redirects.",
                is_error=True,
            )
        if not response.is_success:
            snippet = body[:200].strip()
            detail = f": {snippet}" if snippet else ""
            return ToolOutcome(
                f"Tool {tool.name} failed with HTTP {response.status_code}{detail}", True
            )
        if truncated:
            body += f"\n[response truncated at {cap} bytes]"
        return ToolOutcome(body)


def _short(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
