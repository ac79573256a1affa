"""`botrunner serve --workers N`: N processes serving one port, each with its own event loop,
store connections and bot-file watcher, sharing the database (and Redis).

The parent binds the port and starts N `botrunner serve` processes that inherit a listening
socket each (the hidden `--worker` option). On Linux every worker has its own socket on the
port (SO_REUSEPORT), and the kernel spreads new connections evenly over them; one socket
shared by every worker instead would let whichever worker woke last take most of them.
Elsewhere they share one socket. Each worker tells the parent when it is serving through a socket pair that is
also its lifeline: if the parent goes away, even SIGKILLed, the worker sees the pair close and
shuts down gracefully. The parent forwards SIGTERM and SIGINT (replies in flight get --grace;
a second Ctrl-C stops at once), starts a new worker when one dies after it was serving, and
stops them all if one fails to start (its own error is already on stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

# A worker imports the web stack and loads the bots before it serves.
STARTUP_TIMEOUT = 120.0
# Beyond --grace, how long stopping workers may take to close their stores.
STOP_MARGIN = 10.0
READY = b"r"


@dataclass(frozen=True, slots=True)
class WorkerLink:
    """A worker's side: its number, the listening socket and the control socket it inherited."""

    index: int
    listen_fd: int
    control_fd: int

    @classmethod
    def parse(cls, text: str) -> WorkerLink:
        index, listen_fd, control_fd = (int(part) for part in text.split(":"))
        return cls(index, listen_fd, control_fd)

    def sockets(self) -> tuple[socket.socket, socket.socket]:
        control = socket.socket(fileno=self.control_fd)
        control.setblocking(False)
        return socket.socket(fileno=self.listen_fd), control


def watch_parent(control: socket.socket, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` once the parent has closed its end (it never writes to it)."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = control.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(control.fileno())
            on_gone()

    loop.add_reader(control.fileno(), readable)


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """A listening socket for each of `count` workers, as uvicorn binds one (address reuse,
    backlog 2048): their own on `port` where the kernel balances them, else one shared."""
    balanced = count > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    first = _bind(host, port, balanced)
    if not balanced:
        return [first] * count
    sockets = [first]
    try:
        for _ in range(count - 1):
            sockets.append(_bind(host, first.getsockname()[1], balanced))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Worker:
    def __init__(self, index: int, argv: list[str], listening: socket.socket) -> None:
        self.index, self.argv, self.listening = index, argv, listening
        self.proc: asyncio.subprocess.Process | None = None
        self.control: socket.socket | None = None

    async def start(self) -> bool:
        """Start the process; True once it serves, False if it exited (or hung) before."""
        parent, child = socket.socketpair()
        parent.setblocking(False)
        fds = (self.listening.fileno(), child.fileno())
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                "--worker",
                f"{self.index}:{fds[0]}:{fds[1]}",
                pass_fds=fds,
                # Its own session: a terminal's Ctrl-C reaches the parent only, which forwards it
                # once (twice would force the worker to stop at once).
                start_new_session=True,
            )
        finally:
            child.close()
        if self.control is not None:
            self.control.close()
        self.control = parent
        loop = asyncio.get_running_loop()
        ready = asyncio.ensure_future(loop.sock_recv(parent, 1))
        exited = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait(
            [ready, exited], timeout=STARTUP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        exited.cancel()
        if ready in done and not ready.cancelled() and ready.exception() is None:
            return ready.result() == READY or await self._abandon()
        return await self._abandon()

    async def _abandon(self) -> bool:
        """The worker did not start: make sure it is gone."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        return False

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    @property
    def code(self) -> int | None:
        return None if self.proc is None else self.proc.returncode


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def supervise(
    argv: list[str], sockets: list[socket.socket], grace: float, announce: Callable[[], None]
) -> int:
    """Run a worker (`argv` is a `botrunner serve` command line) on each of `sockets` until a
    signal stops them; the exit code is 0 when every worker stopped cleanly."""
    return asyncio.run(_supervise(argv, sockets, grace, announce))


async def _supervise(
    argv: list[str], sockets: list[socket.socket], grace: float, announce: Callable[[], None]
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    workers = [Worker(i, argv, sock) for i, sock in enumerate(sockets)]

    def on_signal(sig: int) -> None:
        stop.set()
        for worker in workers:
            worker.signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    started = await asyncio.gather(*(w.start() for w in workers))
    if not all(started):
        await _stop_all(workers, grace)
        failed = [w.code for w, ok in zip(workers, started, strict=True) if not ok]
        return next((code for code in failed if code and code > 0), 1)
    if not stop.is_set():
        announce()
    while not stop.is_set():
        waits = {asyncio.ensure_future(w.proc.wait()): w for w in workers if w.proc is not None}
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
        for future in [*waits, stopping]:
            future.cancel()
        for future, worker in waits.items():
            if future in done and not stop.is_set():
                _err(
                    f"botrunner: worker {worker.index} exited ({_describe(worker.code)}); restarting it"
                )
                if not await worker.start() and not stop.is_set():
                    _err(f"error: worker {worker.index} could not start again; stopping")
                    stop.set()
    await _stop_all(workers, grace)
    return 0 if all(w.code == 0 for w in workers) else 1


async def _stop_all(workers: list[Worker], grace: float) -> None:
    for worker in workers:
        worker.signal(signal.SIGTERM)
    procs = [w.proc for w in workers if w.proc is not None]
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace + STOP_MARGIN)
    except TimeoutError:
        for worker in workers:
            worker.signal(signal.SIGKILL)
        await asyncio.gather(*(p.wait() for p in procs))
    for worker in workers:
        if worker.control is not None:
            worker.control.close()


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
