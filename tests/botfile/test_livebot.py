"""LiveBots' watcher: nothing in a bot file, a failing listener or the watched directory going
away stops hot reload; a file that cannot be checked is a reported problem."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from botrunner.botfile import loader
from botrunner.botfile.livebot import Change, LiveBots
from botrunner.botfile.loader import check_file

BOT = "name: tutor\nmodel:\n  name: claude-sonnet-4-6\nsystem: {system}\n"


def write(path: Path, system: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(BOT.format(system=system), encoding="utf-8")
    tmp.replace(path)


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def system_of(live: LiveBots) -> str | None:
    bot = live.get("tutor")
    return bot.system.source if bot else None


async def watching(live: LiveBots, on_change, body) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(live.watch(on_change, stop=stop))
    await asyncio.sleep(0.3)  # let the watcher register
    try:
        await body()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_a_failing_listener_does_not_stop_the_watcher(tmp_path):
    path = tmp_path / "tutor.yaml"
    write(path, "one")
    live = LiveBots(path)
    assert live.load_all() == []
    seen: list[Change] = []

    def listener(change: Change) -> None:
        seen.append(change)
        raise RuntimeError("a listener bug")

    async def body() -> None:
        write(path, "two")
        await until(lambda: system_of(live) == "two")
        write(path, "three")
        await until(lambda: system_of(live) == "three")

    asyncio.run(watching(live, listener, body))
    assert [c.bot.system.source for c in seen if c.bot][-1] == "three"


def test_a_file_that_breaks_the_checker_keeps_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "tutor.yaml"
    write(path, "one")
    live = LiveBots(path)
    assert live.load_all() == []

    def broken(_check) -> None:  # a bug in one of the passes, for this test
        raise RuntimeError("boom")

    async def body() -> None:
        monkeypatch.setattr(loader, "check_schema", broken)
        write(path, "two")
        await until(lambda: bool(live.errors))
        [problem] = live.errors[path.resolve()]
        assert (problem.line, problem.column, problem.severity) == (1, 1, "error")
        assert problem.message == "botrunner could not check this file (RuntimeError: boom)"
        assert system_of(live) == "one"
        monkeypatch.undo()
        write(path, "three")
        await until(lambda: system_of(live) == "three")
        assert live.errors == {}

    asyncio.run(watching(live, None, body))


def test_check_file_turns_any_exception_into_a_problem(tmp_path, monkeypatch):
    path = tmp_path / "tutor.yaml"
    write(path, "one")
    monkeypatch.setattr(loader, "check_variables", lambda _check: {}["missing"])
    bot, [problem] = check_file(path, env={})
    assert bot is None
    assert problem.message == "botrunner could not check this file (KeyError: 'missing')"
    assert problem.hint.startswith("This is a bug in botrunner")


@pytest.mark.parametrize("mode", ["directory", "file"])
def test_the_watched_directory_removed_and_created_again(tmp_path, mode):
    folder = tmp_path / "bots"
    folder.mkdir()
    path = folder / "tutor.yaml"
    write(path, "one")
    live = LiveBots(folder if mode == "directory" else path)
    assert live.load_all() == []

    async def body() -> None:
        shutil.rmtree(folder)
        await asyncio.sleep(0.3)
        folder.mkdir()
        write(path, "two")
        await until(lambda: system_of(live) == "two")
        write(path, "three")  # and it keeps watching after that
        await until(lambda: system_of(live) == "three")

    asyncio.run(watching(live, None, body))
