"""Read YAML while remembering where every value came from.

PyYAML composes a node graph (each node carries its line and column); we build the plain Python
value ourselves from those nodes so that every value, and every mapping key, can be traced back
to `line:col` for error messages. On top of what PyYAML does:

- a key repeated in the same mapping is an error (PyYAML silently keeps the last one);
- mapping keys are always the text the author wrote (`on:` stays "on", not True);
- timestamps stay text (JSON has no dates);
- the scalars YAML 1.1 turns into surprises are remembered so the loader can warn where a
  string was expected (see `surprise`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from botrunner.problems import Problem

try:  # libyaml is several times faster at scanning and composing.
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

Path = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_TEXT_TAGS = {_STR, _TIMESTAMP, "tag:yaml.org,2002:binary", "tag:yaml.org,2002:value"}

_constructor = yaml.constructor.SafeConstructor()
_MAX_NODES = 200_000  # guards against alias bombs ("billion laughs")


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
            self._lines = self.text.splitlines()
        return self._lines

    # -- locations ---------------------------------------------------------------------------

    def node_pos(self, path: Path) -> tuple[int, int]:
        """1-based (line, column) of the value at `path`, or of its closest ancestor."""
        while path not in self.nodes and path:
            path = path[:-1]
        node = self.nodes.get(path)
        if node is None:
            return 1, 1
        return node.start_mark.line + 1, node.start_mark.column + 1

    def key_pos(self, path: Path) -> tuple[int, int]:
        """Where the key naming the value at `path` is written; the value itself for list items."""
        node = self.key_nodes.get(path)
        if node is None:
            return self.node_pos(path)
        return node.start_mark.line + 1, node.start_mark.column + 1

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


def surprise(node: Node | None) -> str | None:
    """If a plain scalar is one YAML 1.1 reads differently from its text, say how it reads."""
    if not isinstance(node, ScalarNode) or node.style:  # libyaml marks plain style as ""
        return None
    text = node.value
    if node.tag == _BOOL and text.lower() not in ("true", "false"):
        return "the boolean " + ("true" if _constructor.construct_yaml_bool(node) else "false")
    if node.tag in (_INT, _FLOAT) and (
        ":" in text or "_" in text or re.fullmatch(r"[-+]?0[0-7]+", text)
    ):
        value = (
            _constructor.construct_yaml_int(node)
            if node.tag == _INT
            else _constructor.construct_yaml_float(node)
        )
        return f"the number {value}"
    return None


def plain_text(node: Node | None) -> str | None:
    """The written text of an unquoted scalar YAML turned into a non-string, else None."""
    if isinstance(node, ScalarNode) and not node.style and node.tag in (_BOOL, _INT, _FLOAT):
        return node.value
    return None


# -- parsing -------------------------------------------------------------------------------------

_SYNTAX = [
    (
        "mapping values are not allowed",
        'unexpected ":" here: this line is not indented like the lines around it',
        'Keys of the same section must start in the same column. If the value itself contains ": ", put the value in quotes.',
    ),
    (
        "did not find expected key",
        "this line is not indented like the lines above it",
        "Keys of the same section must start in the same column; indent with spaces, not tabs.",
    ),
    (
        "expected <block end>",
        "this line is not indented like the lines above it",
        "Keys of the same section must start in the same column; indent with spaces, not tabs.",
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


def _syntax_problem(file: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line, mark.column) if mark else (0, 0)
    problem = exc.problem or ""
    context = exc.context or ""
    message, hint = None, None
    if "cannot start any token" in problem:
        lines = text.splitlines()
        char = lines[line][col] if line < len(lines) and col < len(lines[line]) else ""
        if char == "\t":
            message = "tabs cannot be used for indentation in YAML"
            hint = "Replace the tab with spaces."
        else:
            message = f"a value cannot start with {char!r} unless it is in quotes"
            hint = f'Put the whole value in quotes, e.g. "{char}..."'
    elif "quoted scalar" in context and exc.context_mark is not None:
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
        for needle, msg, hnt in _SYNTAX:
            if needle in problem or needle in context:
                message, hint = msg, hnt
                break
    if message is None:
        message = f"this is not valid YAML: {problem or context}"
        hint = "Check the indentation and the quotes on this line and the line above it."
    return Problem(file, line + 1, col + 1, "error", message, hint or "")


def parse(text: str, file: str) -> Source:
    """Parse one YAML document. Problems (syntax, duplicate keys, bad tags) land in `.problems`."""
    src = Source(file=file, text=text)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        src.problems.append(_syntax_problem(file, text, exc))
        return src
    except yaml.YAMLError as exc:  # pragma: no cover - e.g. reader errors without a mark
        src.problems.append(Problem(file, 1, 1, "error", f"this is not valid YAML: {exc}", ""))
        return src
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL):
        src.problems.append(
            Problem(
                file,
                1,
                1,
                "error",
                "the file is empty",
                "A bot file needs at least name:, model: and system:. See docs/bot-reference.md.",
            )
        )
        return src
    try:
        src.data = _Builder(src).build(root, ())
    except _TooBig:
        src.data = None
        src.problems.append(
            Problem(
                file,
                1,
                1,
                "error",
                "this file expands to too many values (aliases used in a loop?)",
                "Write the values out instead of nesting *aliases.",
            )
        )
    return src


class _Builder:
    def __init__(self, src: Source) -> None:
        self.src = src
        self.count = 0
        self.stack: set[int] = set()

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise _TooBig
        self.src.nodes[path] = node
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.stack:
            self.error(node, "this alias refers to a value that contains it", "Remove the loop.")
            return None
        self.stack.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                self.check_tag(node, _SEQ)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            self.check_tag(node, _MAP)
            return self.mapping(node, path)
        finally:
            self.stack.discard(id(node))

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Node] = {}
        for key_node, value_node in self._pairs(node):
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, "a key must be plain text", "Write the key as simple text.")
                continue
            key = key_node.value
            if key in first_seen:
                first = first_seen[key].start_mark.line + 1
                self.error(
                    key_node,
                    f'the key "{key}" appears twice in the same section (first on line {first})',
                    "Delete one of them: YAML would silently keep only the last one.",
                )
                continue
            first_seen[key] = key_node
            self.src.key_nodes[(*path, key)] = key_node
            result[key] = self.build(value_node, (*path, key))
        return result

    def _pairs(self, node: MappingNode) -> Iterator[tuple[Node, Node]]:
        # `<<: *defaults` merges: explicit keys first, merged ones only if not written out.
        explicit = [(k, v) for k, v in node.value if k.tag != _MERGE]
        yield from explicit
        written = {k.value for k, _ in explicit if isinstance(k, ScalarNode)}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for merged in sources:
                if not isinstance(merged, MappingNode):
                    self.error(merged, "only a mapping can be merged with <<", "")
                    continue
                for k, v in merged.value:
                    if isinstance(k, ScalarNode) and k.value not in written:
                        written.add(k.value)
                        yield k, v

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        tag = node.tag
        if tag in _TEXT_TAGS:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return _constructor.construct_yaml_bool(node)
        if tag == _INT:
            return _constructor.construct_yaml_int(node)
        if tag == _FLOAT:
            value = _constructor.construct_yaml_float(node)
            if value != value or value in (float("inf"), float("-inf")):
                self.error(
                    node,
                    f"{node.value} is not a number botrunner can use",
                    "Write an ordinary number such as 0.5, or put the text in quotes.",
                )
            return value
        self.error(
            node, f"unknown YAML tag {tag}", "Remove the !tag; bot files only use plain values."
        )
        return node.value

    def check_tag(self, node: Node, expected: str) -> None:
        if node.tag != expected:
            self.error(
                node,
                f"unknown YAML tag {node.tag}",
                "Remove the !tag; bot files only use plain values.",
            )

    def error(self, node: Node, message: str, hint: str) -> None:
        self.src.problems.append(
            Problem(
                self.src.file,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                "error",
                message,
                hint,
            )
        )


class _TooBig(Exception):
    pass
