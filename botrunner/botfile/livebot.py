"""Live bots: load bot files, watch them, swap in each valid edit, keep the last good version.

Shared by `chat` (one file) and `serve` (a file or a directory). A broken or half-written
edit never replaces a working bot: the previous version keeps answering and the problems are
kept in `errors` (and passed to `on_change`) exactly as `botrunner validate` reports them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botrunner.bot import Bot
from botrunner.botfile.loader import check_file
from botrunner.botfile.problems import Problem

log = logging.getLogger("botrunner.reload")
BOT_SUFFIXES = (".yaml", ".yml")
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
        if not path.exists():
            if self.directory_mode and path in self._by_path:
                self._replace(path, None)
                self.errors.pop(path, None)
                return Change(path, removed=True)
            # A single watched file briefly vanishes while editors save by rename.
            return Change(path)
        bot, problems = check_file(path)
        errors = tuple(p for p in problems if p.severity == "error")
        if bot is None or errors:
            self.errors[path] = errors or tuple(problems)
            return Change(path, problems=self.errors[path])
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
            self.errors[path] = (problem,)
            return Change(path, problems=(problem,))
        self.errors.pop(path, None)
        self._replace(path, bot)
        return Change(path, bot=bot)

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
        """Reload on every change until `stop` is set (or the task is cancelled)."""
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
                change = self.reload(path)
                if on_change is not None:
                    on_change(change)
                elif change.problems:
                    log.warning("reload failed for %s; keeping the previous version", path)

    def _wanted(self, path: Path) -> bool:
        if self.directory_mode:
            return is_bot_file(path)
        return path.resolve() == self.target
