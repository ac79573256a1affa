"""Tools in a test: the real `ToolRunner` (input validation, rendering, secrets redacted), with
the network replaced by the test's canned responses.

Each call's rendered request is kept, so `tool_calls.request` checks exactly what `serve`
would have sent. A tool without a canned response gets a connection error, and the call is
marked so the test fails: a test never reaches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from botrunner.bot import Tool
from botrunner.testing.testfile import CannedResponse
from botrunner.tools import ToolOutcome, ToolRunner, redact


@dataclass(slots=True)
class SentRequest:
    """A request as the tool rendered it. Secret values (from `${NAME}`) read `[redacted]`."""

    method: str
    url: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class CapturedCall:
    tool: str
    input: Any
    request: SentRequest | None = None
    canned: bool = True


# The call being run in this task: asyncio runs a turn's tool calls as concurrent tasks, each
# with its own copy of the context, so the transport knows whose request it is serving.
_current: ContextVar[CapturedCall | None] = ContextVar("botrunner_test_tool_call", default=None)


class CannedTools(ToolRunner):
    def __init__(self, canned: Mapping[str, CannedResponse]) -> None:
        super().__init__(transport=httpx.MockTransport(self._serve))
        self.canned = canned
        self.calls: list[CapturedCall] = []
        self._secrets: frozenset[str] = frozenset()

    async def run(self, tool: Tool, call_input: Any, secrets: frozenset[str]) -> ToolOutcome:
        call = CapturedCall(tool.name, call_input)
        self.calls.append(call)
        self._secrets = secrets
        token = _current.set(call)
        try:
            return await super().run(tool, call_input, secrets)
        finally:
            _current.reset(token)

    def take(self) -> list[CapturedCall]:
        """The calls made since the last `take` (one turn's)."""
        calls, self.calls = self.calls, []
        return calls

    async def _serve(self, request: httpx.Request) -> httpx.Response:
        call = _current.get()
        body = await request.aread()
        if call is None:  # pragma: no cover - every request comes from `run`
            raise httpx.ConnectError("tests never use the network", request=request)
        hide = self._secrets
        call.request = SentRequest(
            method=request.method,
            url=redact(str(request.url), hide),
            query=[(k, redact(v, hide)) for k, v in request.url.params.multi_items()],
            headers={k.lower(): redact(v, hide) for k, v in request.headers.items()},
            body=redact(body.decode("utf-8", "replace"), hide).encode(),
        )
        canned = self.canned.get(call.tool)
        if canned is None:
            call.canned = False
            raise httpx.ConnectError(
                f"no canned response for {call.tool} in this test", request=request
            )
        return httpx.Response(canned.status, headers=dict(canned.headers), content=canned.body)
