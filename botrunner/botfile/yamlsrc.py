"""Read YAML while remembering where every value came from.

PyYAML composes a node graph (each node carries its line and column); we build the plain Python
value ourselves from those nodes (`botrunner.botfile.yamlvalues`) so that every value, and every mapping
key, can be traced back to `line:col` for error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import Node, ScalarNode

from botrunner.botfile.problems import Problem
from botrunner.botfile.yamlsyntax import reader_problem, syntax_problem, yaml_lines
from botrunner.botfile.yamlvalues import (
    NULL,
    Builder,
    Path,
    TooBig,
    plain_text,
    start_pos,
    surprise,
)

__all__ = ["Path", "Source", "parse", "plain_text", "surprise"]

try:  # libyaml is several times faster at scanning and composing.
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(slots=True)
class Source:
    """A parsed YAML document: the plain value plus a node for each path in it."""

    file: str
    text: str
    data: Any = None
    nodes: dict[Path, Node] = field(default_factory=dict)
    key_nodes: dict[Path, Node] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    _lines: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = yaml_lines(self.text)
        return self._lines

    # -- locations ---------------------------------------------------------------------------

    def node_pos(self, path: Path) -> tuple[int, int]:
        """1-based (line, column) of the value at `path`, or of its closest ancestor."""
        while path not in self.nodes and path:
            path = path[:-1]
        node = self.nodes.get(path)
        if node is None:
            return 1, 1
        return start_pos(node)

    def key_pos(self, path: Path) -> tuple[int, int]:
        """Where the key naming the value at `path` is written; the value itself for list items."""
        node = self.key_nodes.get(path)
        if node is None:
            return self.node_pos(path)
        return start_pos(node)

    def parent_pos(self, path: Path) -> tuple[int, int]:
        """For "this mapping is missing a key": the mapping's own key, or its first line."""
        if path in self.key_nodes:
            return self.key_pos(path)
        return self.node_pos(path)

    def text_pos(self, path: Path, line: int, col: int) -> tuple[int, int]:
        """Map a 1-based line and 0-based column inside a scalar's text to the file position."""
        node = self.nodes.get(path)
        if not isinstance(node, ScalarNode):
            return self.node_pos(path)
        value = node.value
        offset = sum(len(text) + 1 for text in value.split("\n")[: line - 1]) + col
        if 0 < offset == len(value):  # just past the end: after the last character
            mapped = _align(self.text, node, offset - 1)
            if mapped is not None:
                return mapped[0], mapped[1] + 1
        mapped = _align(self.text, node, offset) if 0 <= offset < len(value) else None
        if mapped is not None:
            return mapped
        start_line, start_col = node.start_mark.line, node.start_mark.column
        if node.style in ("|", ">"):
            # The text starts on the line after the `|` indicator, at the block's indentation.
            file_line = start_line + line  # 0-based
            indent = self._block_indent(start_line + 1, node.end_mark.line)
            return file_line + 1, indent + col + 1
        file_line = start_line + line - 1
        if line == 1:
            quote = 1 if node.style in ("'", '"') else 0
            return file_line + 1, start_col + quote + col + 1
        return file_line + 1, self._indent(file_line) + col + 1

    def _indent(self, index: int) -> int:
        if 0 <= index < len(self.lines):
            text = self.lines[index]
            return len(text) - len(text.lstrip(" "))
        return 0

    def _block_indent(self, first: int, end: int) -> int:
        for index in range(first, min(end + 1, len(self.lines))):
            if self.lines[index].strip():
                return self._indent(index)
        return 0

    def problem(
        self, pos: tuple[int, int], message: str, hint: str = "", severity: str = "error"
    ) -> Problem:
        return Problem(self.file, pos[0], pos[1], severity, message, hint)  # type: ignore[arg-type]


_BREAKS = "\r\n\x85\u2028\u2029"


def _align(text: str, node: ScalarNode, offset: int) -> tuple[int, int] | None:
    """Where character `offset` of a scalar's value is written in the file, 1-based.

    YAML folds what is written (a `>` block or a multi-line plain or quoted scalar joins lines
    with spaces, drops indentation, undoes `''` and escapes), so the value's lines are not the
    file's. Walk the written text and the value together: each value character is the next
    matching written one; a space or line break in the value may stand for any written white
    space. None when they do not line up (e.g. escapes), and the caller estimates instead.
    """
    value = node.value
    raw_start, raw_end = node.start_mark.index, node.end_mark.index
    line, col = node.start_mark.line, node.start_mark.column
    i = raw_start
    if node.style in ("|", ">"):  # skip the indicator line: `|-  # a comment`
        while i < raw_end and text[i] not in _BREAKS:
            i += 1
            col += 1
    elif node.style in ("'", '"'):
        i += 1
        col += 1
    for index in range(offset + 1):
        want = value[index] if index < len(value) else None
        while i < raw_end:
            ch = text[i]
            if want is not None and (ch == want or (want in " \n" and ch in " \t" + _BREAKS)):
                break
            if want is None and ch not in " \t" + _BREAKS + "'\"":
                break
            if ch in _BREAKS:
                if ch == "\r" and i + 1 < raw_end and text[i + 1] == "\n":
                    i += 1
                line, col = line + 1, 0
            else:
                col += 1
            i += 1
        else:
            return (line + 1, col + 1) if want is None else None
        if index == offset:
            return line + 1, col + 1
        if text[i] in _BREAKS:
            if text[i] == "\r" and i + 1 < raw_end and text[i + 1] == "\n":
                i += 1
            line, col = line + 1, 0
        else:
            col += 1
        i += 1
    return None


EMPTY_BOT_HINT = "A bot file needs at least name:, model: and system:. See docs/bot-reference.md."


def parse(text: str, file: str, *, empty_hint: str | None = None) -> Source:
    """Parse one YAML document. Problems (syntax, duplicate keys, bad tags) land in `.problems`.
    `empty_hint` says what an empty file should hold (a bot file's keys by default)."""
    src = Source(file=file, text=text)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        src.problems.append(syntax_problem(file, text, exc))
        return src
    except yaml.reader.ReaderError as exc:
        src.problems.append(reader_problem(file, text, exc))
        return src
    except yaml.YAMLError as exc:  # pragma: no cover - e.g. reader errors without a mark
        src.problems.append(src.problem((1, 1), f"this is not valid YAML: {exc}"))
        return src
    if root is None or (isinstance(root, ScalarNode) and root.tag == NULL):
        src.problems.append(
            src.problem(
                (1, 1),
                "the file is empty",
                empty_hint or EMPTY_BOT_HINT,
            )
        )
        return src
    try:
        src.data = Builder(src).build(root, ())
    except TooBig:
        src.data = None
        src.problems.append(
            src.problem(
                (1, 1),
                "this file expands to too many values (aliases used in a loop?)",
                "Write the values out instead of nesting *aliases.",
            )
        )
    return src
