"""Helpers for the server tests: bot files in tmp_path, and the real server (uvicorn on a free
loopback port) in a thread or as a `botrunner serve` subprocess. No tests in this module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from botrunner.botfile.livebot import LiveBots
from botrunner.engine.engine import Engine
from botrunner.providers import aclose_all as aclose_providers
from botrunner.providers.base import ProviderError
from botrunner.server import Settings, create_app
from botrunner.server.auth import KeyRing
from botrunner.store import open_limits, start_store

REPO = Path(__file__).resolve().parent.parent
_EXE = Path(sys.executable).with_name("botrunner")
# The installed entry point when there is one (`make test`), else the same CLI via -m.
BOTRUNNER = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "botrunner"]


def bot_yaml(name: str = "tutor", system: str = "You are a helpful tutor.", extra: str = "") -> str:
    text = f"name: {name}\nmodel:\n  name: claude-fake-1\n  max_tokens: 256\nsystem: {system}\n"
    return text + extra


def write_bot(directory: Path, name: str = "tutor", **kwargs: Any) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(bot_yaml(name, **kwargs), encoding="utf-8")
    return path


def upstream_env(monkeypatch: Any, fake: Any) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)


def wait_until(predicate: Any, timeout: float = 5.0, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


class ThreadServer:
    """The app on uvicorn in a background thread (own event loop, store, engine, watcher)."""

    def __init__(
        self,
        target: Path,
        db: Path,
        *,
        keys: KeyRing | None = None,
        reload: bool = False,
        limits: str | None = None,
    ) -> None:
        self.target, self.db, self.keys, self.reload = target, db, keys or KeyRing(), reload
        self.limits_url = limits
        self.url = ""
        self.live: LiveBots | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        live = LiveBots(self.target)
        problems = live.load_all()
        assert not problems, problems
        self.live = live
        store = await start_store(self.db)
        limits = open_limits(self.limits_url, store)
        engine = Engine(store, limits=limits)
        for bot in live.bots.values():  # as `serve` does: loads the provider SDK up front
            with contextlib.suppress(ProviderError):
                engine.check(bot)
        app = create_app(live, engine, Settings(keys=self.keys))
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = server = uvicorn.Server(config)
        stop = asyncio.Event()
        watcher = asyncio.create_task(live.watch(stop=stop)) if self.reload else None

        async def announce() -> None:
            while not server.started:
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()

        waiter = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            stop.set()
            waiter.cancel()
            if watcher is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(watcher, 2)
            await engine.aclose()
            await aclose_providers()
            if limits is not store:
                await limits.close()
            await store.close()


class ProcessServer:
    """`botrunner serve` as a subprocess, on a port it picks (read from its startup line)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args, self.env = args, {**os.environ, **env}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr_lines: list[str] = []

    def __enter__(self) -> ProcessServer:
        self.proc = subprocess.Popen(
            [*BOTRUNNER, "serve", *self.args, "--port", "0"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            found = re.search(r"on (http://\S+:\d+) ", line)
            if found:
                self.url = found.group(1)
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.stderr_lines))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
