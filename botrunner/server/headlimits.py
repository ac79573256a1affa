"""Limits on a request's head (request line and headers): its size and its number of headers.

Two layers, because the HTTP parser buffers a head until it is complete and only then hands it
to the app:

- `Gate` (middleware.py) checks the parsed head exactly (`HeadLimits.problem`) and answers 431
  before the app, or anything else, reads the body.
- `bounded_protocol` is uvicorn's httptools protocol with a bound on the bytes it buffers for
  a head that never ends (an 8 MiB header would otherwise be held in memory in full, several
  times over): past the limit plus one socket read it answers 431, discards what the client
  still sends for a moment (so the client can read the answer) and closes the connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADERS_TOO_LARGE = "headers_too_large"
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


def bounded_protocol(limits: HeadLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, with the bytes buffered for one head bounded."""
    body = json.dumps(
        {
            "error": {
                "code": HEADERS_TOO_LARGE,
                "message": limits.too_large(),
                "type": "invalid_request_error",
            }
        }
    ).encode()
    refusal = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )
    bound = limits.max_bytes + _READ_SIZE

    class BoundedHttpTools(HttpToolsProtocol):
        _head_bytes = 0  # bytes received while this head is incomplete (whole reads)
        _in_head = True  # between requests, or inside a head
        _refused = False

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # discarded: the answer is sent, the connection is closing
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > bound:
                self._refused = True
                self.transport.write(refusal)
                asyncio.get_running_loop().call_later(_LINGER_SECONDS, self.transport.close)

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True

    return BoundedHttpTools
