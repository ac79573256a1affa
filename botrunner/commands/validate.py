"""`botrunner validate PATH...`: check bot files (and their `*.tests.yaml` test files) like a
compiler, for authors and CI.

Exit codes: 0 every file is valid (warnings allowed), 1 some file has an error (or, with
`--strict`, a warning or an unset environment variable), 2 usage error (e.g. no such path).
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

from botrunner.botfile.livebot import is_test_file
from botrunner.botfile.loader import check_file
from botrunner.botfile.problems import FORMATTERS, Problem
from botrunner.testing.loader import check_test_file

SUFFIXES = (".yaml", ".yml")
_GLOB_CHARS = frozenset("*?[")


class NoSuchPath(Exception):
    """A PATH argument that names nothing: a usage error (exit code 2)."""


def expand(paths: Iterable[str]) -> list[str]:
    """Files as given; directories -> every *.yaml / *.yml under them; globs -> their matches.

    Order is stable (directories and globs sorted) and each file is listed once.
    """
    found: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.normpath(path)
        if key not in seen:
            seen.add(key)
            found.append(path)

    for arg in paths:
        if os.path.isdir(arg):
            for file in _walk(Path(arg)):
                add(str(file))
        elif os.path.exists(arg):
            add(arg)
        elif _GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            files: list[str] = []
            for match in matches:
                if os.path.isdir(match):
                    files.extend(str(f) for f in _walk(Path(match)))
                elif match.endswith(SUFFIXES):
                    files.append(match)
            if not files:
                raise NoSuchPath(f"no bot files match {arg}")
            for file in files:
                add(file)
        else:
            raise NoSuchPath(f"no such file or directory: {arg}")
    return found


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(SUFFIXES))
    return files


def run(
    paths: Iterable[str],
    *,
    output_format: str = "text",
    strict: bool = False,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        files = expand(paths)
    except NoSuchPath as exc:
        err.write(f"botrunner validate: error: {exc}\n")
        return 2
    if not files:
        err.write("botrunner validate: error: no bot files (*.yaml, *.yml) found\n")
        return 2
    problems: list[Problem] = []
    bad_files = 0
    for file in files:
        if is_test_file(file):  # a bot's conversation tests (`botrunner test`)
            _, found = check_test_file(file, env=env)
        else:
            _, found = check_file(file, strict=strict, env=env)
        problems.extend(found)
        if any(p.is_error or strict for p in found):
            bad_files += 1
    out.write(FORMATTERS[output_format](problems))
    errors = sum(p.is_error for p in problems)
    warnings = len(problems) - errors
    summary = _summary(len(files), bad_files, errors, warnings)
    if output_format == "text":
        out.write(summary + "\n")
    else:
        err.write(summary + "\n")
    return 1 if bad_files else 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(files: int, bad: int, errors: int, warnings: int) -> str:
    checked = _plural(files, "file")
    if not errors and not warnings:
        return f"{checked} checked: all valid"
    found = ", ".join(
        part
        for part in (errors and _plural(errors, "error"), warnings and _plural(warnings, "warning"))
        if part
    )
    return f"{checked} checked, {bad} failed: {found}"
