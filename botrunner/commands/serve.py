"""`botrunner serve PATH`: the bots in PATH (a file or a directory) over HTTP.

Refuses to start when a bot file is invalid (printing the problems as `validate` does), or when
no API keys are configured and --host is not a loopback address (unless --insecure-no-auth).
Starts when a bot's model provider is not configured (no ANTHROPIC_API_KEY or OPENAI_API_KEY,
or the openai package not installed): it says so on stderr, on the chat page and in every chat
response (503) until that is fixed.

One process by default (`botrunner.commands.process`); `--workers N` runs N of them on one
port (`botrunner.commands.workers`), which needs a store several processes can share.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from pathlib import Path

from botrunner.botfile.livebot import LiveBots
from botrunner.botfile.problems import format_text
from botrunner.commands.backends import check, shared_by_processes
from botrunner.commands.process import announcement, run_loop, serve
from botrunner.commands.workers import WorkerLink, listen, supervise
from botrunner.engine import turnlog
from botrunner.server import Settings
from botrunner.server.auth import KeyRing, KeysError, load_keys
from botrunner.server.headlimits import HeadLimits

# For tests only, and left out of the documentation on purpose: "AFTER,EVERY" (seconds) sweeps
# the turns pending for over AFTER seconds every EVERY seconds, instead of the bots' longest
# turn and once a minute, so a test sees a killed process's turns closed within a second or two.
# Workers inherit it with the environment.
TEST_SWEEP_ENV = "BOTRUNNER_TEST_SWEEP"


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
    workers: int = 1,
    worker: str | None = None,
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
    if workers > 1:
        if not shared_by_processes(str(db)):
            _err(
                f"error: --workers {workers} needs a database every worker can share: use "
                "--db postgresql://USER@HOST:5432/DBNAME. A SQLite file has one writing "
                "process; serve it with one worker."
            )
            return 2
        argv = [sys.executable, "-m", "botrunner", "serve", str(path), "--host", host]
        argv += ["--db", str(db), "--grace", str(grace), "--log", log_to or "-"]
        argv += ["--limits", limits] if limits else []
        argv += ["--keys", str(keys_file)] if keys_file else []
        argv += [] if reload else ["--no-reload"]
        argv += ["--insecure-no-auth"] if insecure_no_auth else []
        if head_limits is not None:
            argv += ["--max-header-bytes", str(head_limits.max_bytes)]
            argv += ["--max-headers", str(head_limits.max_count)]
            argv += ["--header-timeout", str(head_limits.timeout_seconds)]
        return _supervise(argv, workers, host, port, db, limits, grace, live, keys)
    turnlog.configure(log_to)
    settings = Settings(keys=keys, max_body_bytes=max_body_bytes)
    if sweep := os.environ.get(TEST_SWEEP_ENV):
        try:
            after, every = (float(x) for x in sweep.split(","))
            if every <= 0:
                raise ValueError
        except ValueError:
            _err(f"error: {TEST_SWEEP_ENV}={sweep!r}: write AFTER,EVERY (seconds, EVERY > 0)")
            return 2
        settings.abandoned_after, settings.sweep_every = after, every
    if head_limits is not None:
        settings.head_limits = head_limits
    link = WorkerLink.parse(worker) if worker else None
    return run_loop(serve(live, host, port, db, reload, grace, settings, limits, link))


def _supervise(
    argv: list[str],
    workers: int,
    host: str,
    port: int,
    db: str | Path,
    limits: str | None,
    grace: float,
    live: LiveBots,
    keys: KeyRing,
) -> int:
    """Check the backends once (migrations run here, not in N workers at once), bind the port
    once, then run the workers on it."""
    asyncio.run(check(str(db), limits))  # StoreError: one line from the CLI, exit 2
    try:
        sockets = listen(host, port, workers)
    except OSError as exc:
        _err(f"error: can't listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    bound = sockets[0].getsockname()[:2]
    try:
        return supervise(
            argv, sockets, grace, lambda: _err(announcement(bound, live, keys, workers))
        )
    finally:
        for sock in set(sockets):
            sock.close()
