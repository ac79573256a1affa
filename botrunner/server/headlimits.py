"""Limits on a request's head (request line and headers): its size and its number of headers.

Two layers, because the HTTP parser buffers a head until it is complete and only then hands it
to the app:

- `Gate` (middleware.py) checks the parsed head exactly (`HeadLimits.problem`) and answers 431
  before the app, or anything else, reads the body.
- `bounded_protocol` is uvicorn's httptools protocol with a bound on the bytes it buffers for
  a head that never ends (an 8 MiB header would otherwise be held in memory in full, several
  times over): past the limit plus one socket read it answers 431, discards what the client
  still sends for a moment (so the client can read the answer) and closes the connection.
  It also bounds the time a head may take: uvicorn itself never times out a connection that
  sends nothing, or a head a byte at a time (slowloris), so a few hundred such connections
  would hold the server's sockets. Past the limit, a started head gets 408 and a connection
  that sent nothing is closed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADERS_TOO_LARGE = "headers_too_large"
REQUEST_TIMEOUT = "request_timeout"
# What one read from a socket may carry at most (asyncio and uvloop read 256 KiB at a time): the
# transport bound allows that much beyond the limit, as it counts whole reads.
_READ_SIZE = 256 * 1024
# How long a refused connection is kept open, its input discarded, before it is closed.
_LINGER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """`botrunner serve --max-header-bytes / --max-headers` (or BOTRUNNER_MAX_HEADER_BYTES /
    BOTRUNNER_MAX_HEADERS)."""

    max_bytes: int = 32 * 1024
    max_count: int = 100
    # `--header-timeout`: seconds from a connection's start, or the end of its last response,
    # to the end of the next request's head.
    timeout_seconds: float = 30.0

    def problem(self, target_bytes: int, headers: list[tuple[bytes, bytes]]) -> str | None:
        """Why a parsed head is refused (None: it is not). `target_bytes`: the request
        target's length; each header counts as on the wire (`name: value` and CRLF)."""
        if len(headers) > self.max_count:
            return (
                f"The request has {len(headers)} headers; this server accepts at most "
                f"{self.max_count}. Send fewer headers."
            )
        size = target_bytes + sum(len(name) + len(value) + 4 for name, value in headers)
        return self.too_large() if size > self.max_bytes else None

    def too_large(self) -> str:
        return (
            f"The request line and headers are larger than the {self.max_bytes} bytes this "
            "server accepts. Send fewer or shorter headers (large cookies are a common cause)."
        )

    def too_slow(self) -> str:
        return (
            f"The request line and headers did not arrive within {self.timeout_seconds:g} "
            "seconds. Send the whole request head at once."
        )


def _answer(status: bytes, code: str, message: str) -> bytes:
    body = json.dumps(
        {"error": {"code": code, "message": message, "type": "invalid_request_error"}}
    ).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


def bounded_protocol(limits: HeadLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, with the bytes buffered for one head, and the time it
    takes, bounded."""
    refusal = _answer(b"431 Request Header Fields Too Large", HEADERS_TOO_LARGE, limits.too_large())
    too_slow = _answer(b"408 Request Timeout", REQUEST_TIMEOUT, limits.too_slow())
    bound = limits.max_bytes + _READ_SIZE

    class BoundedHttpTools(HttpToolsProtocol):
        _head_bytes = 0  # bytes received while this head is incomplete (whole reads)
        _in_head = True  # between requests, or inside a head
        _refused = False
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._time_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._untime_head()
            super().connection_lost(exc)

        def _time_head(self) -> None:
            self._untime_head()
            self._head_timer = self.loop.call_later(limits.timeout_seconds, self._head_too_slow)

        def _untime_head(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self._refused or self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a (pipelined) request is being answered; its end restarts the clock
            if self._head_bytes == 0:
                self.transport.close()  # nothing of a request yet: nobody to answer
                return
            self._refuse(too_slow)

        def _refuse(self, answer: bytes) -> None:
            self._refused = True
            self._untime_head()
            self.transport.write(answer)
            asyncio.get_running_loop().call_later(_LINGER_SECONDS, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # discarded: the answer is sent, the connection is closing
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > bound:
                self._refuse(refusal)

        def on_headers_complete(self) -> None:
            self._untime_head()
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._time_head()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True

    return BoundedHttpTools
