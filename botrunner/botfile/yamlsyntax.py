"""YAML syntax errors, said in plain words with a hint, at the place the author must fix."""

from __future__ import annotations

import re

import yaml

from botrunner.botfile.problems import Problem

__all__ = ["syntax_problem"]

_INDENTATION_HINT = (
    "Keys of the same section must start in the same column; indent with spaces, not tabs."
)

# (text in PyYAML's message, our message, hint), first match wins.
_KNOWN = [
    (
        "mapping values are not allowed",
        'unexpected ":" here: this line is not indented like the lines around it',
        'Keys of the same section must start in the same column. If the value itself contains ": ", put the value in quotes.',
    ),
    (
        "did not find expected key",
        "this line is not indented like the lines above it",
        _INDENTATION_HINT,
    ),
    (
        "expected <block end>",
        "this line is not indented like the lines above it",
        _INDENTATION_HINT,
    ),
    (
        "found another document",
        "a bot file holds one bot, but this file starts a second document here (---)",
        "Remove this `---` line and what follows it, or move the second bot to its own file.",
    ),
    (
        "found undefined alias",
        "this *alias refers to an &anchor that is not defined above it",
        "Define the anchor (&name) before using it, or write the value out in full.",
    ),
    (
        "found duplicate anchor",
        "this &anchor name is already used above",
        "Give each anchor its own name.",
    ),
]


# What YAML counts as a line break (str.splitlines also splits on \x0b, \x0c, \x1c...).
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_CONTROL_NAMES = {
    "\x00": "a NUL byte",
    "\x0b": "a vertical tab",
    "\x0c": "a form feed (page break)",
    "\x1b": "an escape character",
    "\x7f": "a delete character",
}


def yaml_lines(text: str) -> list[str]:
    """The lines of `text` as YAML numbers them (mark.line is an index into this)."""
    return _LINE_BREAK.split(text)


def reader_problem(file: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    """A character YAML does not accept (PyYAML gives only its offset in the text)."""
    before = text[: max(exc.position, 0)]
    line = len(_LINE_BREAK.findall(before))
    col = len(_LINE_BREAK.split(before)[-1])
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    what = _CONTROL_NAMES.get(char, f"the invisible control character U+{ord(char):04X}")
    return Problem(
        file,
        line + 1,
        col + 1,
        "error",
        f"this line contains {what}, which YAML does not allow",
        "Delete it: it is usually invisible, pasted in from another program. Retyping the "
        "line removes it.",
    )


def syntax_problem(file: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line, mark.column) if mark else (0, 0)
    problem = exc.problem or ""
    context = exc.context or ""
    message, hint = None, None
    if "cannot start any token" in problem:
        lines = yaml_lines(text)
        char = lines[line][col] if line < len(lines) and col < len(lines[line]) else ""
        if char == "\t":
            message = "tabs cannot be used for indentation in YAML"
            hint = "Replace the tab with spaces."
        else:
            message = f"a value cannot start with {char!r} unless it is in quotes"
            hint = f'Put the whole value in quotes, e.g. "{char}..."'
    elif "quoted scalar" in context and exc.context_mark is not None:
        # PyYAML reports the end of the file; the opening quote is what needs fixing.
        line, col = exc.context_mark.line, exc.context_mark.column
        message = "this quoted text is never closed"
        hint = "Add the matching closing quote at the end of the text."
    elif "flow sequence" in context or "flow mapping" in context:
        if exc.context_mark is not None:
            line, col = exc.context_mark.line, exc.context_mark.column
        bracket = "[ ]" if "sequence" in context else "{ }"
        message = f"this one-line {bracket} is not closed properly"
        hint = "Check that every bracket is closed and items are separated by commas; quote values that contain commas or colons."
    else:
        for needle, msg, hnt in _KNOWN:
            if needle in problem or needle in context:
                message, hint = msg, hnt
                break
    if message is None:
        message = f"this is not valid YAML: {problem or context}"
        hint = "Check the indentation and the quotes on this line and the line above it."
    return Problem(file, line + 1, col + 1, "error", message, hint or "")
