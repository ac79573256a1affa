"""Live bots: load bot files, watch them, swap in each valid edit, keep the last good version.

Shared by `chat` (one file) and `serve` (a file or a directory). A broken or half-written
edit never replaces a working bot: the previous version keeps answering and the problems are
kept in `errors` (and passed to `on_change`) exactly as `botrunner validate` reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botrunner.bot import Bot
from botrunner.botfile.loader import check_file
from botrunner.botfile.problems import Problem

log = logging.getLogger("botrunner.reload")
BOT_SUFFIXES = (".yaml", ".yml")
# After the watcher itself fails: wait, then try again, backing off while it keeps failing.
_RESTART_DELAY = 0.5
_MAX_RESTART_DELAY = 30.0


def _unexpected(path: Path, exc: Exception) -> Problem:
    return Problem(
        str(path),
        1,
        1,
        "error",
        f"botrunner could not reload this file ({type(exc).__name__}: {exc})",
        "The previous version keeps answering. Save the file again; if this persists, "
        "report it as a botrunner bug.",
    )


# Conversation tests beside the bots (`botrunner test`): never loaded as bots.
TEST_SUFFIXES = (".tests.yaml", ".tests.yml")


def is_test_file(path: str | Path) -> bool:
    return str(path).endswith(TEST_SUFFIXES)


def is_bot_file(path: Path) -> bool:
    return path.suffix in BOT_SUFFIXES and not is_test_file(path)


@dataclass(frozen=True, slots=True)
class Change:
    """What one reload did: a new `bot`, a removal (`removed`), or `problems` (kept old)."""

    path: Path
    bot: Bot | None = None
    problems: tuple[Problem, ...] = ()
    removed: bool = False


class LiveBots:
    def __init__(self, target: str | Path) -> None:
        self.target = Path(target).resolve()
        self.directory_mode = self.target.is_dir()
        self._by_path: dict[Path, Bot] = {}
        self._by_name: dict[str, Bot] = {}
        self.errors: dict[Path, tuple[Problem, ...]] = {}

    # -- reading -------------------------------------------------------------------------
    @property
    def bots(self) -> dict[str, Bot]:
        return self._by_name

    def get(self, name: str) -> Bot | None:
        return self._by_name.get(name)

    def only(self) -> Bot:
        """The bot of a single-file target (or the only bot of a directory)."""
        if len(self._by_name) != 1:
            raise LookupError(f"{len(self._by_name)} bots are loaded, not one")
        return next(iter(self._by_name.values()))

    # -- loading -------------------------------------------------------------------------
    def files(self) -> list[Path]:
        if not self.directory_mode:
            return [self.target]
        return sorted(p for p in self.target.rglob("*") if is_bot_file(p) and p.is_file())

    def load_all(self) -> list[Problem]:
        """Initial load; returns every problem found (the caller decides whether to start)."""
        problems: list[Problem] = []
        for path in self.files():
            change = self.reload(path)
            problems.extend(change.problems)
        return problems

    def reload(self, path: Path) -> Change:
        path = path.resolve()
        return self._apply(path, self._read(path))

    @staticmethod
    def _read(path: Path) -> tuple[Bot | None, list[Problem]] | None:
        """The checked file, or None when it does not exist. Touches no shared state, so the
        watcher runs it in a thread: a slow file never holds up replies."""
        if not path.exists():
            return None
        return check_file(path)

    def _apply(self, path: Path, checked: tuple[Bot | None, list[Problem]] | None) -> Change:
        if checked is None:
            if self.directory_mode and path in self._by_path:
                self._replace(path, None)
                self.errors.pop(path, None)
                return Change(path, removed=True)
            # A single watched file briefly vanishes while editors save by rename.
            return Change(path)
        bot, problems = checked
        errors = tuple(p for p in problems if p.severity == "error")
        if bot is None or errors:
            return self._fail(path, errors or tuple(problems))
        clash = self._by_name.get(bot.name)
        if clash is not None and clash.path.resolve() != path:
            problem = Problem(
                file=str(path),
                line=1,
                column=1,
                severity="error",
                message=f"another file ({clash.path}) already defines a bot named '{bot.name}'",
                hint="Give each bot a unique `name:`.",
            )
            return self._fail(path, (problem,))
        errors_now = dict(self.errors)
        errors_now.pop(path, None)
        self.errors = errors_now
        self._replace(path, bot)
        return Change(path, bot=bot)

    def _fail(self, path: Path, problems: tuple[Problem, ...]) -> Change:
        # A new dict, assigned: a reader iterating `errors` never sees it change size.
        self.errors = {**self.errors, path: problems}
        return Change(path, problems=problems)

    def _replace(self, path: Path, bot: Bot | None) -> None:
        # Build new dicts and assign: readers see the old or the new set, never a mix.
        by_path = dict(self._by_path)
        if bot is None:
            by_path.pop(path, None)
        else:
            by_path[path] = bot
        self._by_path = by_path
        self._by_name = {b.name: b for b in by_path.values()}

    # -- watching ------------------------------------------------------------------------
    async def watch(
        self,
        on_change: Callable[[Change], None] | None = None,
        *,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Reload on every change until `stop` is set (or the task is cancelled).

        Nothing a file contains stops the watcher: a file that cannot be loaded is a reported
        problem (the previous version keeps answering), and if watching itself fails it is
        logged and restarted, after reloading every file so no edit made meanwhile is missed.
        """
        delay = _RESTART_DELAY
        while stop is None or not stop.is_set():
            started = time.monotonic()
            try:
                await self._watch(on_change, stop)
                return  # awatch only ends when `stop` is set
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any failure
                if time.monotonic() - started > _MAX_RESTART_DELAY:
                    delay = _RESTART_DELAY  # it had been running fine: not a failure loop
                if isinstance(exc, FileNotFoundError):  # removed, maybe being replaced
                    log.warning("%s is gone; watching again in %g s", self.target, delay)
                else:
                    log.exception("watching %s failed; restarting in %g s", self.target, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, _MAX_RESTART_DELAY)
            with contextlib.suppress(Exception):
                for path in sorted({*self.files(), *self._by_path, *self.errors}):
                    await self._reload_and_report(path, on_change)

    async def _watch(
        self, on_change: Callable[[Change], None] | None, stop: asyncio.Event | None
    ) -> None:
        from watchfiles import awatch

        # Watch the directory, not the file: editors save by writing a new file and renaming.
        watched = self.target if self.directory_mode else self.target.parent
        async for batch in awatch(
            watched,
            stop_event=stop,
            debounce=50,
            step=20,
            recursive=self.directory_mode,
            watch_filter=lambda _change, name: self._wanted(Path(name)),
        ):
            for path in sorted({Path(name).resolve() for _change, name in batch}):
                await self._reload_and_report(path, on_change)
            if not watched.is_dir():
                # Its watch died with it: a directory created again under the same name is
                # never seen. Start over (once it exists again), as after any failure.
                raise FileNotFoundError(f"{watched} was removed")

    async def _reload_and_report(
        self, path: Path, on_change: Callable[[Change], None] | None
    ) -> None:
        path = path.resolve()
        try:
            change = self._apply(path, await asyncio.to_thread(self._read, path))
        except Exception as exc:  # noqa: BLE001 - check_file reports file problems; a bug here
            log.exception("reloading %s failed unexpectedly", path)
            change = self._fail(path, (_unexpected(path, exc),))
        try:
            if on_change is not None:
                on_change(change)
            elif change.problems:
                log.warning("reload failed for %s; keeping the previous version", path)
        except Exception:  # noqa: BLE001 - a failing listener must not stop the watcher
            log.exception("reporting the reload of %s failed", path)

    def _wanted(self, path: Path) -> bool:
        if self.directory_mode:
            return is_bot_file(path)
        return path.resolve() == self.target
