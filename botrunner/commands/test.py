"""`botrunner test PATH...`: conversation tests for bots (`*.tests.yaml`), for authors and CI.

By default each test is replayed from its cassette (no key, no network); `--live` runs against
the real model; `--record` does too and writes the cassettes.

Exit codes: 0 every test passed (tests without a recording are allowed unless `--strict`), 1 a
test failed or is stale (or, with `--strict`, has no recording), 2 usage error (no such path,
no test files, an invalid test file or cassette, `-k` matching nothing, no API key to run live).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from botrunner.botfile.livebot import TEST_SUFFIXES, is_test_file
from botrunner.botfile.problems import Problem, format_text
from botrunner.commands.validate import NoSuchPath, expand
from botrunner.testing.cassette import CassetteError, read_cassette, write_cassette
from botrunner.testing.jsonreport import format_json
from botrunner.testing.junit import format_junit
from botrunner.testing.loader import check_test_file
from botrunner.testing.results import TestResult, summary
from botrunner.testing.runner import Mode, Planned, run_tests
from botrunner.testing.testfile import TestFile
from botrunner.testing.text import format_result


class UsageError(Exception):
    """Nothing can be run as asked (exit code 2); `problems` say where, when files are at fault."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def run(
    paths: Iterable[str],
    *,
    live: bool = False,
    record: bool = False,
    keywords: Iterable[str] = (),
    jobs: int = 4,
    output_format: str = "text",
    junit: Path | None = None,
    strict: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    mode: Mode = "record" if record else "live" if live else "replay"
    try:
        files = load(find_test_files(paths))
        planned = plan(files, mode, [k.lower() for k in keywords])
        if mode != "replay":
            check_model(files, mode)
    except UsageError as exc:
        err.write(format_text(exc.problems))
        err.write(f"botrunner test: error: {exc}\n")
        return 2

    started = time.monotonic()

    def show(result: TestResult) -> None:
        if output_format == "text":
            out.write(format_result(result))
            out.flush()

    results = asyncio.run(_run(planned, mode, jobs, show))
    seconds = time.monotonic() - started
    line = summary(results, seconds)
    if output_format == "json":
        out.write(format_json(results, seconds, mode))
        err.write(line + "\n")
    else:
        out.write(f"\n{line}\n")
    if mode == "record":
        for written in save_recordings(files, planned):
            err.write(f"recorded {written}\n")
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(format_junit(results, seconds, strict=strict), encoding="utf-8")
    bad = {"failed", "stale"} | ({"not_recorded"} if strict else set())
    return 1 if any(r.status in bad for r in results) else 0


async def _run(planned: list[Planned], mode: Mode, jobs: int, show) -> list[TestResult]:
    from botrunner.providers import aclose_all

    results: list[TestResult] = []
    try:
        async for result in run_tests(planned, mode, jobs=jobs):
            results.append(result)
            show(result)
    finally:
        await aclose_all()
    return results


def find_test_files(paths: Iterable[str]) -> list[Path]:
    """Test files as given; directories and globs -> every *.tests.yaml in them; a bot file ->
    the test file beside it."""
    found: list[Path] = []
    for arg in paths:
        try:
            files = expand([arg])
        except NoSuchPath as exc:
            raise UsageError(str(exc)) from None
        explicit = os.path.isfile(arg)
        for file in map(Path, files):
            if is_test_file(file):
                found.append(file)
            elif explicit:
                tests = [file.with_name(file.stem + s) for s in TEST_SUFFIXES]
                existing = [t for t in tests if t.is_file()]
                if not existing:
                    raise UsageError(
                        f"{file} has no tests: write them in {tests[0]} (see docs/testing.md)"
                    )
                found.append(existing[0])
    unique = list(dict.fromkeys(found))
    if not unique:
        raise UsageError("no test files (*.tests.yaml) found in " + ", ".join(paths))
    return unique


def load(paths: list[Path]) -> list[TestFile]:
    files, problems = [], []
    for path in paths:
        test_file, found = check_test_file(path)
        problems += [p for p in found if p.is_error]
        if test_file is not None:
            files.append(test_file)
    if problems:
        bad = len({p.file for p in problems})
        raise UsageError(
            f"{_plural(bad, 'test file')} with errors: fix them and run again", problems
        )
    return files


def plan(files: list[TestFile], mode: Mode, keywords: list[str]) -> list[Planned]:
    planned, problems = [], []
    for test_file in files:
        recorded = None
        if mode in ("replay", "record"):
            try:
                recorded = read_cassette(test_file.cassette)
            except CassetteError as exc:
                problems.append(exc.problem)
                continue
        for test in test_file.tests:
            if keywords and not any(k in test.name.lower() for k in keywords):
                continue
            entry = (recorded or {}).get(test.name) if mode == "replay" else None
            planned.append(Planned(test_file, test, entry))
    if problems:
        raise UsageError(f"{_plural(len(problems), 'unreadable cassette')}", problems)
    if not planned:
        raise UsageError("no test matches -k " + " or -k ".join(keywords))
    return planned


def check_model(files: list[TestFile], mode: Mode) -> None:
    from botrunner.providers import get_provider
    from botrunner.providers.base import ProviderError

    for test_file in files:
        try:
            get_provider(test_file.bot).check()
        except ProviderError as exc:
            raise UsageError(
                f"--{mode} runs {test_file.bot.path} against its model: {exc.message}"
            ) from None


def save_recordings(files: list[TestFile], planned: list[Planned]) -> list[str]:
    """Write each recorded file's cassette: the new recordings, and the old ones of tests that
    were not run (-k) and are still in the file."""
    written = []
    for test_file in files:
        mine = {p.test.name: p.recording for p in planned if p.file is test_file and p.recording}
        if not mine:
            continue
        try:
            old = read_cassette(test_file.cassette) or {}
        except CassetteError:
            old = {}
        entries = {
            t.name: mine.get(t.name) or old[t.name]
            for t in test_file.tests
            if t.name in mine or t.name in old
        }
        bot_name = os.path.relpath(test_file.bot.path, test_file.path.parent)
        write_cassette(test_file.cassette, bot_name, entries, test_file.bot.secrets)
        written.append(f"{test_file.cassette} ({len(mine)} of {len(entries)} tests)")
    return written


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
