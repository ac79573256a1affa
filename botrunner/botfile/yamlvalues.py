"""Plain Python values built from PyYAML's nodes, the way bot files need them.

On top of what PyYAML's safe loader does:

- a key repeated in the same mapping is an error (PyYAML silently keeps the last one);
- mapping keys are always the text the author wrote (`on:` stays "on", not True);
- timestamps stay text (JSON has no dates);
- the scalars YAML 1.1 turns into surprises can be told apart, so the loader can warn where a
  string was expected (see `surprise`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Protocol

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from botrunner.botfile.problems import Problem

__all__ = ["NULL", "Builder", "Path", "TooBig", "plain_text", "start_pos", "surprise"]

# Where a value sits in a document: the keys and indexes from the root.
Path = tuple[str | int, ...]


class Source(Protocol):
    """What the builder records into (`botrunner.botfile.yamlsrc.Source`)."""

    nodes: dict[Path, Node]
    key_nodes: dict[Path, Node]
    problems: list[Problem]

    def problem(self, pos: tuple[int, int], message: str, hint: str = "") -> Problem: ...


_STR = "tag:yaml.org,2002:str"
NULL = "tag:yaml.org,2002:null"
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
# A bot file nests about 6 levels; the builder (and the checks after it) recurse per level.
MAX_DEPTH = 64
# Python refuses to convert longer digit strings to int (sys.get_int_max_str_digits).
_MAX_INT_DIGITS = 4000


def start_pos(node: Node) -> tuple[int, int]:
    """1-based (line, column) where `node` starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


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


class TooBig(Exception):
    """More than `_MAX_NODES` values: aliases nested to blow up the document."""


class Builder:
    """Builds a document's plain value, recording in `src` the node at every path, the node of
    every key, and each problem found."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.count = 0
        self.stack: set[int] = set()

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise TooBig
        self.src.nodes[path] = node
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if len(path) >= MAX_DEPTH:
            self.error(
                node,
                f"the values here are nested more than {MAX_DEPTH} levels deep",
                "A bot file needs only a few levels: flatten the lists and mappings here.",
            )
            return None
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
                first = start_pos(first_seen[key])[0]
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

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag in _TEXT_TAGS:
            return node.value
        if tag == NULL:
            return None
        if tag == _BOOL:
            return _constructor.construct_yaml_bool(node)
        if tag == _INT:
            if sum(c.isdigit() for c in node.value) > _MAX_INT_DIGITS:
                self.error(
                    node,
                    f"this number has more than {_MAX_INT_DIGITS} digits",
                    "Use a smaller number, or put it in quotes if it is meant as text.",
                )
                return None
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
        self.unknown_tag(node)
        return node.value

    def check_tag(self, node: Node, expected: str) -> None:
        if node.tag != expected:
            self.unknown_tag(node)

    def unknown_tag(self, node: Node) -> None:
        self.error(
            node,
            f"unknown YAML tag {node.tag}",
            "Remove the !tag; bot files only use plain values.",
        )

    def error(self, node: Node, message: str, hint: str) -> None:
        self.src.problems.append(self.src.problem(start_pos(node), message, hint))
