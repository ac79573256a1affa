"""HTTP-backed tools: the model's input is untrusted, the author's YAML is trusted as written.

A call is validated against the tool's `input_schema`, rendered into a request by
`botrunner.templating` (which keeps the scheme and host literal and encodes every `input`
value for the place it goes), sent with httpx, and its response read as a capped stream.
Every failure becomes an `is_error` result the model can read and recover from; `run` never
raises (except for cancellation).
"""

from __future__ import annotations

import asyncio
import codecs
import http.cookiejar
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import jsonschema

from botrunner.bot import Tool
from botrunner.templating import RenderedRequest, render_request
from botrunner.templating.httprequest import PathValueRefused
from botrunner.tools.hosts import HostSlots, Origin
from botrunner.tools.secrets import cut, reach, redact

MAX_REDIRECTS = 5
# The connection pool every bot and user shares, and the part of it one tool server may hold:
# however slow or busy one server is, calls to the others always find a connection.
MAX_CONNECTIONS = 100
MAX_CALLS_PER_HOST = 50
# How much of an error response's body is shown to the model.
ERROR_SNIPPET_CHARS = 200
# How long a validation problem may be: jsonschema quotes the offending value in full.
PROBLEM_CHARS = 300
# Headers that describe a body: dropped when a redirect turns the request into a GET.
_BODY_HEADERS = ("content-length", "content-type", "transfer-encoding", "content-encoding")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    content: str
    is_error: bool = False


class _Redacted(ToolOutcome):
    """An outcome made from a response body, redacted as it was read (see `_read`)."""

    __slots__ = ()


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The client is shared by every bot and user: a cookie one tool server sets for one user
    must never be sent on another user's call, so none are ever kept."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


class _Refused(Exception):
    """A call that must not be sent; the message is for the model."""


class ToolRunner:
    """Runs tool calls over one shared httpx client (connection pooling across turns)."""

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network under the same client settings (`botrunner test`
        serves canned responses through it)."""
        self._client = client or httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
            # Bodies are capped after decoding, and one compressed chunk can inflate a
            # thousandfold: ask for plain bodies (an author's own Accept-Encoding wins).
            headers={"accept-encoding": "identity"},
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=20),
        )
        self._hosts = HostSlots(MAX_CALLS_PER_HOST)
        # Keyed by id(tool); the tool itself is kept so a reused id after a reload can't match.
        self._validators: dict[int, tuple[Tool, Any]] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, tool: Tool, call_input: Any, secrets: frozenset[str]) -> ToolOutcome:
        try:
            outcome = await self._run(tool, call_input, secrets)
        except Exception as exc:  # noqa: BLE001 - one bad call must never end the turn
            log.warning("tool %s failed unexpectedly: %s", tool.name, type(exc).__name__)
            outcome = ToolOutcome(
                f"Tool {tool.name} failed unexpectedly ({type(exc).__name__}).", True
            )
        if isinstance(outcome, _Redacted):
            return ToolOutcome(outcome.content, outcome.is_error)
        # A message built here can quote the request (an invalid URL, a connection error).
        return ToolOutcome(redact(outcome.content, secrets), outcome.is_error)

    async def _run(self, tool: Tool, call_input: Any, secrets: frozenset[str]) -> ToolOutcome:
        problem = self._check_input(tool, call_input)
        if problem:
            return ToolOutcome(
                f"Invalid input for tool {tool.name}: {problem}. Fix the input and call it again.",
                is_error=True,
            )
        try:
            rendered = render_request(tool.http, call_input)
            request = self._build(tool, rendered)
        except (_Refused, PathValueRefused) as exc:
            return ToolOutcome(
                f"Invalid input for tool {tool.name}: {exc}. Fix the input and call it again.",
                is_error=True,
            )
        except ValueError as exc:
            return ToolOutcome(f"Tool {tool.name} could not build its request: {exc}", True)
        timeout = tool.http.timeout_seconds
        try:
            # httpx's timeout bounds each connect/read; this bounds the whole call, so a
            # server that trickles bytes can't hold the turn either.
            # Waiting for a slot counts too: a call to a saturated server fails in time.
            async with asyncio.timeout(timeout), self._hosts.hold(_origin(request.url)):
                return await self._send(tool, request, secrets)
        except (httpx.TimeoutException, TimeoutError):
            return ToolOutcome(
                f"Tool {tool.name} timed out: {request.url.host} did not answer within "
                f"{timeout:g} s.",
                is_error=True,
            )
        except httpx.HTTPError as exc:
            return ToolOutcome(
                f"Tool {tool.name} could not reach {request.url.host}: {_short(exc)}.", True
            )

    def _build(self, tool: Tool, rendered: RenderedRequest) -> httpx.Request:
        # A value of "." or ".." filling a whole segment would be resolved away by the URL
        # parser (/weather/.. is /), moving the call up the author's path: refuse it.
        for segment in urlsplit(rendered.url).path.split("/"):
            if unquote(segment) in (".", ".."):
                raise _Refused(f'"{unquote(segment)}" cannot be a whole path segment')
        url = httpx.URL(rendered.url)
        if rendered.params:
            # Added to the URL's own query (httpx's `params=` would replace it).
            extra = str(httpx.QueryParams(rendered.params)).encode("ascii")
            url = url.copy_with(query=url.query + b"&" + extra if url.query else extra)
        for name, value in rendered.headers.items():
            try:
                value.encode("ascii")
            except UnicodeEncodeError:
                raise _Refused(
                    f'the header "{name}" can only hold ASCII text, and the input put '
                    "other characters in it"
                ) from None
        return self._client.build_request(
            rendered.method,
            url,
            headers=rendered.headers,
            json=rendered.json,
            timeout=tool.http.timeout_seconds,
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
        message = error.message
        if len(message) > PROBLEM_CHARS:
            # Keep both ends: the start of the value and what is wrong with it.
            half = PROBLEM_CHARS // 2
            message = f"{message[:half]}…{message[-half:]}"
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{message} (at '{where}')" if where else message

    async def _send(
        self, tool: Tool, request: httpx.Request, secrets: frozenset[str]
    ) -> ToolOutcome:
        origin = _origin(request.url)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._client.send(request, stream=True)
            try:
                if not (response.is_redirect and tool.http.follow_redirects):
                    return await self._read(tool, response, secrets)
                try:
                    target = request.url.join(response.headers["location"])
                except (httpx.InvalidURL, ValueError):
                    return ToolOutcome(
                        f"Tool {tool.name} was redirected to an invalid address.", True
                    )
                if _origin(target) != origin:
                    return ToolOutcome(
                        f"Tool {tool.name} was redirected to another host ({target.host}); "
                        "botrunner only follows redirects on the same host.",
                        is_error=True,
                    )
            finally:
                await response.aclose()
            request = self._redirected(tool, request, response.status_code, target)
        return ToolOutcome(f"Tool {tool.name} was redirected too many times.", True)

    def _redirected(
        self, tool: Tool, request: httpx.Request, status: int, target: httpx.URL
    ) -> httpx.Request:
        """The request to send after a redirect, the way browsers and httpx do it: 307/308
        repeat the method and body; 301/302 turn a POST (303 anything but HEAD) into a GET
        without a body."""
        method, content = request.method, request.content
        headers = request.headers.copy()
        del headers["host"]  # set again from the target
        to_get = (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST")
        if to_get:
            method, content = "GET", b""
            for name in _BODY_HEADERS:
                headers.pop(name, None)
        return self._client.build_request(
            method,
            target,
            headers=headers,
            content=content or None,
            timeout=tool.http.timeout_seconds,
        )

    async def _read(
        self, tool: Tool, response: httpx.Response, secrets: frozenset[str]
    ) -> ToolOutcome:
        if response.is_redirect:
            return ToolOutcome(
                f"Tool {tool.name} got a redirect (HTTP {response.status_code}) and does not "
                "follow redirects.",
                is_error=True,
            )
        cap = tool.http.max_response_bytes
        # Read past the cap by the longest form a secret can take, so one that starts before
        # the cap is seen whole and replaced whole: no piece of it is left where the body is cut.
        limit = cap + reach(secrets)
        chunks: list[bytes] = []
        size = 0
        complete = True
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                complete = False
                break
        raw = b"".join(chunks)[:limit]
        truncated = not complete or len(raw) > cap
        # Decoded in two steps to know where the cap falls in the text (a character the cap
        # cuts in two is left to the second step).
        decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")(errors="replace")
        text = decoder.decode(raw[:cap], final=not truncated)
        end = len(text)
        if truncated:
            text += decoder.decode(raw[cap:], final=complete)
        if not response.is_success:
            snippet = cut(text, min(end, ERROR_SNIPPET_CHARS), secrets).strip()
            detail = f": {snippet}" if snippet else ""
            return _Redacted(
                f"Tool {tool.name} failed with HTTP {response.status_code}{detail}", True
            )
        body = cut(text, end, secrets)
        if truncated:
            body += f"\n[response truncated at {cap} bytes]"
        return _Redacted(body)


def _origin(url: httpx.URL) -> Origin:
    return (url.scheme, url.host, url.port)


def _short(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
