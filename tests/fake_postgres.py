"""A PostgreSQL server that only ever refuses the password: just enough of the frontend/backend
protocol (v3) for a client to get to authentication and be told no, as a server with
password authentication does (SQLSTATE 28P01). The machine's own server trusts every
local connection, so this is how the wrong-password path is driven for real."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SSL_REQUEST = 80877103
AUTH_CLEARTEXT = 3


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _error(code: str, message: str) -> bytes:
    fields = [(b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message)]
    body = b"".join(tag + value.encode() + b"\0" for tag, value in fields) + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def _refuse(conn: socket.socket, passwords: list[str]) -> None:
    with conn:
        try:
            while True:  # SSLRequest (answered "no SSL") then the StartupMessage
                (length,) = struct.unpack("!i", _read(conn, 4))
                body = _read(conn, length - 4)
                if struct.unpack("!i", body[:4])[0] != SSL_REQUEST:
                    break
                conn.sendall(b"N")
            params = body[4:].split(b"\0")
            user = dict(zip(params[::2], params[1::2], strict=False)).get(b"user", b"").decode()
            conn.sendall(b"R" + struct.pack("!ii", 8, AUTH_CLEARTEXT))
            _read(conn, 1)  # 'p', PasswordMessage
            (length,) = struct.unpack("!i", _read(conn, 4))
            passwords.append(_read(conn, length - 4).rstrip(b"\0").decode())
            conn.sendall(_error("28P01", f'password authentication failed for user "{user}"'))
        except (ConnectionError, OSError):
            pass


@contextmanager
def password_refusing_server() -> Iterator[tuple[int, list[str]]]:
    """(port, the passwords clients sent) of a server that refuses every one of them."""
    passwords: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_refuse, args=(conn, passwords), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], passwords
    finally:
        listener.close()
