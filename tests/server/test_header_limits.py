"""Request heads are bounded: too many or too large headers get 431 before the body is read,
a head that never ends is not buffered, and one that takes too long gets 408. A real
`botrunner serve` process and raw sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
from fake_anthropic import slow, text
from test_server_harness import ProcessServer, write_bot


def serve(tmp_path, fake, *args: str, env: dict[str, str] | None = None) -> ProcessServer:
    base = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "test", "CI": "false"}
    bot = str(write_bot(tmp_path))
    return ProcessServer(
        [bot, "--db", str(tmp_path / "bots.db"), "--no-reload", *args], {**base, **(env or {})}
    )


def exchange(url: str, head: bytes, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send `head` (and `body`) from a thread while reading the answer; (status, JSON, raw)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:

        def send() -> None:
            # The server may refuse and close before all is sent: expected for huge heads.
            with contextlib.suppress(OSError):
                sock.sendall(head + body)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _length(raw):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        sender.join(10)
    status = int(raw.split(b" ", 2)[1])
    body = raw.partition(b"\r\n\r\n")[2][: _length(raw)]
    return status, json.loads(body or b"null"), raw


def _length(raw: bytes) -> int:
    for line in raw.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def request(*headers: str, path: str = "/livez", method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_huge_or_many_headers_are_refused_with_431(tmp_path, fake_anthropic):
    with serve(tmp_path, fake_anthropic) as srv:
        # One 8 MiB header: refused once 32 KiB plus a read are in, not after all 8 MiB.
        status, body, _ = exchange(srv.url, request("X-Big: " + "a" * (8 * 1024 * 1024)))
        assert status == 431 and body["error"]["code"] == "headers_too_large"
        assert "32768 bytes" in body["error"]["message"]
        # A head that never ends is answered once 32 KiB plus a read are in, not buffered on.
        status, body, _ = exchange(srv.url, b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 2**20)
        assert status == 431 and body["error"]["code"] == "headers_too_large"
        # 5,000 small headers.
        many = [f"X-H{n}: v" for n in range(5000)]
        status, body, _ = exchange(srv.url, request(*many))
        assert status == 431 and body["error"]["code"] == "headers_too_large"
        assert body["error"]["message"].startswith("The request has 5001 headers")  # and Host
        # The server is fine, and ordinary requests (and bodies past 32 KiB) pass.
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            pad = {"model": "nope", "messages": [{"role": "user", "content": "x" * 60_000}]}
            for _ in range(3):  # one kept-alive connection
                assert client.post("/v1/chat/completions", json=pad).status_code == 404
        host, port = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(request() + request("Connection: close"))  # pipelined
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        assert raw.count(b"HTTP/1.1 200") == 2


def test_limits_are_configurable_and_checked_before_the_body(tmp_path, fake_anthropic):
    env = {"BOTRUNNER_MAX_HEADERS": "10"}
    with serve(tmp_path, fake_anthropic, "--max-header-bytes", "2048", env=env) as srv:
        ten = [f"X-H{n}: v" for n in range(9)]  # and Host: 10 headers
        assert exchange(srv.url, request(*ten))[0] == 200
        status, body, _ = exchange(srv.url, request(*ten, "X-One-More: v"))
        assert status == 431 and "at most 10" in body["error"]["message"]
        # A 3 KB cookie on a POST that announces a large body but never sends it: the answer
        # comes at once, so the body was never waited for.
        head = request(
            "Cookie: s=" + "c" * 3000,
            "Content-Type: application/json",
            "Content-Length: 60000",
            path="/chat/s1",
            method="POST",
        )
        status, body, _ = exchange(srv.url, head)
        assert status == 431 and "2048 bytes" in body["error"]["message"]
    assert fake_anthropic.requests == []


def test_a_head_that_takes_too_long_gets_408_and_an_idle_connection_is_closed(
    tmp_path, fake_anthropic
):
    fake_anthropic.enqueue(slow(text("one two three four five six"), token_delay=0.3))
    with serve(tmp_path, fake_anthropic, "--header-timeout", "0.5") as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        # Slowloris: a head a few bytes at a time, never finished.
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            started = time.monotonic()
            raw = b""
            for piece in (b"GET /livez HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
                with contextlib.suppress(OSError):
                    sock.sendall(piece)
                time.sleep(0.2)
            while chunk := sock.recv(65536):
                raw += chunk
            took = time.monotonic() - started
        assert raw.startswith(b"HTTP/1.1 408 ")
        body = json.loads(raw.partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == "request_timeout"
        assert "within 0.5 seconds" in body["error"]["message"]
        assert took < 5
        # A connection that never sends anything is closed, without an answer.
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            assert sock.recv(65536) == b""
        # The clock is for the head only: a reply streaming for longer is not cut.
        reply = httpx.post(srv.url + "/chat/s1", json={"message": "count"}, timeout=30)
        assert '"done":true' in reply.text and "six" in reply.text
