"""One serving process: its event loop (uvloop), the uvicorn server, the bot-file watcher and an
orderly shutdown. `botrunner serve` runs one; `serve --workers N` runs N, each started as a
`serve` process that inherits the parent's listening socket (`botrunner.commands.workers`).

Shutdown (SIGTERM, Ctrl-C): stop accepting connections, let replies in flight finish within
--grace seconds (a second Ctrl-C stops at once), then close the engine and the store.

Every process, every worker, also closes as failed the turns that processes which died left
pending (`Engine.fail_abandoned_turns`): at start-up, then once a minute. Any of them may do it
for all: the statement is idempotent, and a turn is only old enough once no process can be
running it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import uvicorn

from botrunner.botfile.livebot import Change, LiveBots
from botrunner.botfile.problems import format_text
from botrunner.commands.backends import (
    claim_sqlite_file,
    open_checked_limits,
    open_checked_store,
)
from botrunner.commands.workers import READY, WorkerLink, watch_parent
from botrunner.engine.engine import Engine
from botrunner.providers import MODULES as PROVIDER_MODULES
from botrunner.providers import aclose_all as aclose_providers
from botrunner.providers import import_provider
from botrunner.providers.base import ProviderError
from botrunner.server import Settings, create_app
from botrunner.server.auth import KeyRing
from botrunner.server.headlimits import bounded_protocol

log = logging.getLogger("botrunner.serve")


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_loop(main: Coroutine[Any, Any, int]) -> int:
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


async def serve(
    live: LiveBots,
    host: str,
    port: int,
    db: Path | str,
    reload: bool,
    grace: float,
    settings: Settings,
    limits_url: str | None,
    worker: WorkerLink | None = None,
) -> int:
    store = await open_checked_store(str(db))  # StoreError: one line from the CLI, exit 2
    claim = None
    try:
        claim = claim_sqlite_file(str(db))
        limits = await open_checked_limits(limits_url, store)
    except BaseException:
        if claim is not None:
            claim.close()
        await store.close()
        raise
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
    sockets, control = None, None
    if worker is not None:
        listening, control = worker.sockets()
        sockets = [listening]
        watch_parent(control, server.handle_exit_signal)
    tasks = [
        asyncio.create_task(_announce(server, live, settings.keys, control)),
        # Workers after the first keep quiet: one warning per bot, not one per worker.
        asyncio.create_task(
            _check_providers(engine, live, loading, quiet=worker is not None and worker.index > 0)
        ),
        asyncio.create_task(_sweep_abandoned(engine, live, settings)),
    ]
    if reload:
        tasks.append(asyncio.create_task(live.watch(_on_change, stop=stop)))
    try:
        await server.serve(sockets=sockets)
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
        if control is not None:
            control.close()
        if claim is not None:
            claim.close()
    return 0 if server.started else 1


def _import_providers(live: LiveBots) -> Future[None]:
    """Import the provider modules the bots use, in a daemon thread."""
    names = sorted({bot.model.provider for bot in live.bots.values()})
    done: Future[None] = Future()

    def work() -> None:
        try:
            for name in names:
                if name in PROVIDER_MODULES:
                    # A missing SDK is said for each bot by _check_providers; import the rest.
                    with contextlib.suppress(ProviderError):
                        import_provider(name)
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


async def _check_providers(
    engine: Engine, live: LiveBots, loading: Future[None], *, quiet: bool = False
) -> None:
    """Once the providers are imported: freeze the start-up heap, then say which bots can't
    reach their model (unless `quiet`)."""
    with contextlib.suppress(Exception):  # an import error surfaces with the first chat turn
        await asyncio.wrap_future(loading)
    _freeze_startup_heap()
    for bot in [] if quiet else live.bots.values():
        try:
            engine.check(bot)
        except ProviderError as exc:
            _err(f"warning: bot '{bot.name}': {exc.message} Chat requests answer 503 until then.")


async def _sweep_abandoned(engine: Engine, live: LiveBots, settings: Settings) -> None:
    """Close the turns of dead processes now and every `settings.sweep_every` seconds, for
    the bots loaded at that moment. A failure (the store unreachable) is logged and tried
    again next time: it never stops the server."""
    while True:
        try:
            await engine.fail_abandoned_turns(
                live.bots.values(), older_than=settings.abandoned_after
            )
        except Exception as exc:  # noqa: BLE001 - see above
            error = f"{type(exc).__name__}: {exc}"
            log.warning("abandoned_turns_sweep_failed", extra={"fields": {"error": error}})
        await asyncio.sleep(settings.sweep_every)


async def _announce(
    server: uvicorn.Server, live: LiveBots, keys: KeyRing, control: socket.socket | None
) -> None:
    while not server.started:
        await asyncio.sleep(0.02)
    if control is not None:  # a worker: the parent announces once for all of them
        await asyncio.get_running_loop().sock_sendall(control, READY)
        return
    _err(announcement(server.servers[0].sockets[0].getsockname()[:2], live, keys))


def announcement(bound: tuple[str, int], live: LiveBots, keys: KeyRing, workers: int = 1) -> str:
    host, port = bound
    shown = f"[{host}]" if ":" in host else host
    auth = f"{len(keys)} API key(s)" if keys else "no API keys"
    if workers > 1:
        auth += f", {workers} workers"
    return (
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

    def handle_exit_signal(self) -> None:
        """Stop gracefully, as on SIGTERM (a worker whose parent went away)."""
        self._on_signal(signal.SIGTERM)
