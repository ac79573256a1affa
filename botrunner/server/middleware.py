"""The gate every HTTP request passes: request ids, head and body size limits, API key check.

Pure ASGI (no BaseHTTPMiddleware) so streamed responses pass through untouched.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from botrunner.server.auth import KeyRing, bearer_key
from botrunner.server.errors import error_body
from botrunner.server.headlimits import HEADERS_TOO_LARGE, HeadLimits
from botrunner.server.jsonbody import dumps

REQUEST_ID = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Reachable without a key: probes, and the chat page's static files (no data in them; the page
# asks for a key when the API answers 401).
OPEN_PATHS = frozenset({"/livez", "/readyz", "/", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)


class BodyTooLarge(Exception):
    pass


class Gate:
    def __init__(
        self, app: ASGIApp, *, keys: KeyRing, max_body_bytes: int, head_limits: HeadLimits
    ) -> None:
        self.app, self.keys, self.max_body = app, keys, max_body_bytes
        self.head_limits = head_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = scope["headers"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        given = headers.get(REQUEST_ID, "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if started:
                    return  # a response (413) was already sent for this request
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID.encode(), request_id.encode()),
                ]
            elif not started:
                return
            await send(message)

        async def reply(status: int, code: str, text: str, extra: dict[str, str]) -> None:
            body = dumps(error_body(status, code, text, request_id)).encode()
            hdrs = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *_encode(extra),
            ]
            await send_with_id({"type": "http.response.start", "status": status, "headers": hdrs})
            await send_with_id({"type": "http.response.body", "body": body})

        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        problem = self.head_limits.problem(target, raw_headers)
        if problem is not None:
            await reply(431, HEADERS_TOO_LARGE, problem, {"connection": "close"})
            return

        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            await reply(413, "body_too_large", self._too_large(), {"connection": "close"})
            return

        path = scope["path"]
        if self.keys:
            key = bearer_key(headers.get("authorization"))
            principal = self.keys.authenticate(key) if key else None
            if principal is not None:  # on an open path too: /readyz shows it more
                state["principal"] = principal
            elif path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
                text = (
                    "Missing API key: send `Authorization: Bearer <key>`."
                    if key is None
                    else "This API key is not valid."
                )
                await reply(401, "unauthorized", text, {"www-authenticate": "Bearer"})
                return

        received = 0
        responded = False

        async def limited_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body and not responded:
                    responded = True
                    if not started:
                        await reply(413, "body_too_large", self._too_large(), {})
                    raise BodyTooLarge()
            return message

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, limited_receive, send_with_id)

    def _too_large(self) -> str:
        return (
            f"The request body is larger than the {self.max_body // 1024} KiB this server accepts."
        )


def _encode(headers: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
