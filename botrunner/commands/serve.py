"""`botrunner serve PATH`: the bots in PATH (a file or a directory) over HTTP.

Refuses to start when a bot file is invalid (printing the problems as `validate` does), or when
no API keys are configured and --host is not a loopback address (unless --insecure-no-auth).
Starts when the model provider is not configured (no ANTHROPIC_API_KEY): it says so on stderr,
on the chat page and in every chat response (503) until the variable is set.

Shutdown (SIGTERM, Ctrl-C): stop accepting connections, let replies in flight finish within
--grace seconds (a second Ctrl-C stops at once), then close the engine and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from botrunner.botfile.livebot import Change, LiveBots
from botrunner.botfile.problems import format_text
from botrunner.engine import turnlog
from botrunner.engine.engine import Engine
from botrunner.providers import MODULES as PROVIDER_MODULES
from botrunner.providers import aclose_all as aclose_providers
from botrunner.providers.base import ProviderError
from botrunner.server import Settings, create_app
from botrunner.server.auth import KeyRing, KeysError, load_keys
from botrunner.server.headlimits import HeadLimits, bounded_protocol
from botrunner.store import LimitStore, LimitsUnavailable, MissingExtra, open_limits, start_store
from botrunner.store.base import Store

log = logging.getLogger("botrunner.serve")


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(
    path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    db: str | Path = "botrunner.db",
    reload: bool = True,
    keys_file: Path | None = None,
    log_to: str | None = "-",
    insecure_no_auth: bool = False,
    grace: float = 30.0,
    max_body_bytes: int = 64 * 1024,
    limits: str | None = None,
    head_limits: HeadLimits | None = None,
) -> int:
    if not Path(path).exists():
        _err(f"error: {path}: no such file or directory")
        return 2
    live = LiveBots(path)
    problems = live.load_all()
    if problems or live.errors:
        _err(format_text(problems).rstrip("\n"))
    if live.errors:
        _err(f"error: {len(live.errors)} bot file(s) have errors; fix them and run again.")
        return 1
    if not live.bots:
        _err(f"error: no bot files (*.yaml, *.yml) in {path}")
        return 1
    try:
        keys = load_keys(keys_file)
    except KeysError as exc:
        _err(f"error: {exc}")
        return 2
    if not keys and not is_loopback(host) and not insecure_no_auth:
        _err(
            f"error: refusing to listen on {host} without API keys: anyone who can reach it "
            "could use your model budget. Set BOTRUNNER_API_KEYS or pass --keys FILE "
            "(or --insecure-no-auth if something in front of botrunner checks access)."
        )
        return 2
    turnlog.configure(log_to)
    settings = Settings(keys=keys, max_body_bytes=max_body_bytes)
    if head_limits is not None:
        settings.head_limits = head_limits
    return _run_loop(_serve(live, host, port, db, reload, grace, settings, limits))


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop where it exists (not on Windows): about a tenth less CPU per turn
    than asyncio's own loop (bench/ab.py); uvicorn picks httptools, the C HTTP parser, by
    itself. The loop is run directly, not through asyncio.Runner: with uvloop under a Runner, a
    server started in the background by a shell (which sets SIGINT to be ignored) no longer
    stopped on SIGINT, as it does on asyncio's loop (_Server.capture_signals takes both)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _serve(
    live: LiveBots,
    host: str,
    port: int,
    db: str | Path,
    reload: bool,
    grace: float,
    settings: Settings,
    limits_url: str | None,
) -> int:
    store = await start_store(db)  # StoreError: reported by the CLI, exit 2
    try:
        limits = await open_checked_limits(limits_url, store)
    except StartupError as exc:
        _err(f"error: {exc}")
        await store.close()
        return 2
    engine = Engine(store, limits=limits)
    app = create_app(live, engine, settings)
    # The model SDK (about 2 s to import) loads in a thread while the server starts and
    # listens; a chat turn that comes first waits for it.
    loading = _import_providers(live)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=grace,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
        # httptools, with the bytes buffered for an unfinished request head bounded.
        http=bounded_protocol(settings.head_limits),
    )
    server = _Server(config)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_announce(server, live, settings.keys)),
        asyncio.create_task(_check_providers(engine, live, loading)),
    ]
    if reload:
        tasks.append(asyncio.create_task(live.watch(_on_change, stop=stop)))
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it can't bind; it has already said why
        return 1
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(*tasks)
        await engine.aclose()
        await aclose_providers()
        if limits is not store:
            await limits.close()
        await store.close()
    return 0 if server.started else 1


class StartupError(Exception):
    """A backend can't be used: one line for the user, exit code 2."""


def shown_url(url: str) -> str:
    """`url` as it may be printed: without a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


async def open_checked_limits(url: str | None, store: Store) -> LimitStore:
    """The limits backend for `--limits` (the store when None), checked reachable; raises
    StartupError saying what is wrong and what to do."""
    try:
        limits = open_limits(url, store)
    except (ValueError, MissingExtra) as exc:
        raise StartupError(f"--limits: {exc}") from None
    if limits is store:
        return store
    assert url is not None
    try:
        await limits.ping()
    except LimitsUnavailable as exc:
        await limits.close()
        cause = exc.__cause__ or exc
        raise StartupError(
            f"--limits {shown_url(url)}: can't reach it ({cause}). Start it or fix the URL."
        ) from None
    return limits


def _import_providers(live: LiveBots) -> Future[None]:
    """Import the provider modules the bots use, in a daemon thread."""
    names = sorted({bot.model.provider for bot in live.bots.values()})
    done: Future[None] = Future()

    def work() -> None:
        try:
            for name in names:
                if name in PROVIDER_MODULES:
                    importlib.import_module(PROVIDER_MODULES[name])
        except BaseException as exc:  # noqa: BLE001 - reported by _check_providers
            done.set_exception(exc)
        else:
            done.set_result(None)

    threading.Thread(target=work, name="botrunner-import", daemon=True).start()
    return done


def _freeze_startup_heap() -> None:
    """Everything loaded by now (the web stack, the SDK, the bots: ~200,000 objects) lives as
    long as the server: keep it out of the garbage collector's full passes, which otherwise
    stop every reply in flight for ~90 ms now and then. Called once the SDK is imported."""
    gc.collect()
    gc.freeze()


async def _check_providers(engine: Engine, live: LiveBots, loading: Future[None]) -> None:
    """Once the providers are imported: freeze the start-up heap, then say which bots can't
    reach their model."""
    with contextlib.suppress(Exception):  # an import error surfaces with the first chat turn
        await asyncio.wrap_future(loading)
    _freeze_startup_heap()
    for bot in live.bots.values():
        try:
            engine.check(bot)
        except ProviderError as exc:
            _err(f"warning: bot '{bot.name}': {exc.message} Chat requests answer 503 until then.")


async def _announce(server: uvicorn.Server, live: LiveBots, keys: KeyRing) -> None:
    while not server.started:
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    auth = f"{len(keys)} API key(s)" if keys else "no API keys"
    _err(
        f"botrunner: serving {', '.join(sorted(live.bots))} on http://{shown}:{port} "
        f"({auth}); chat page at http://{shown}:{port}/"
    )


def _on_change(change: Change) -> None:
    if change.problems:
        log.warning(
            "reload_failed",
            extra={"fields": {"file": str(change.path), "problems": format_text(change.problems)}},
        )
    elif change.bot is not None:
        fields = {"file": str(change.path), "bot": change.bot.name, "version": change.bot.version}
        log.info("reloaded", extra={"fields": fields})
    elif change.removed:
        log.info("removed", extra={"fields": {"file": str(change.path)}})


class _Server(uvicorn.Server):
    """uvicorn's Server, but a signal ends `serve()` normally (exit code 0 after a graceful
    SIGTERM) instead of being re-raised at the process once the server has stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop now
        else:
            self.should_exit = True
