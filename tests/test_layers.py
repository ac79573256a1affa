"""The package's layers import one way (docs/architecture.md): bot file -> engine -> transports,
with the store, providers, memory and tools below the engine. A new import pointing back up, or
a cycle between two modules, fails here with the line to look at; so does a module grown past
one noun (300 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "botrunner"

# A layer may import only layers of a lower rank (and itself). A new subpackage gets a rank here.
RANKS = {
    "templating": 0,
    "events": 0,
    "bot": 1,
    "store": 2,
    "providers": 2,
    "tools": 2,
    "memory": 3,
    "engine": 4,
    "botfile": 4,
    "testing": 5,
    "server": 5,
    "commands": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 8,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, list[tuple[str, int]]]:
    """Every module's botrunner imports (TYPE_CHECKING and function-level ones included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    found: dict[str, list[tuple[str, int]]] = {}
    for name, path in modules.items():
        deps: list[tuple[str, int]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] != "botrunner":
                    continue
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    deps.append((target if target in modules else node.module, node.lineno))
            elif isinstance(node, ast.Import):
                deps += [
                    (a.name, node.lineno) for a in node.names if a.name.startswith("botrunner")
                ]
        found[name] = [(d, line) for d, line in deps if d in modules and d != name]
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_layer_has_a_rank():
    layers = {_layer(m) for m in _imports()}
    assert layers <= RANKS.keys(), f"give these a rank in RANKS: {sorted(layers - RANKS.keys())}"


def test_layers_import_only_layers_below_them():
    wrong = []
    for module, deps in _imports().items():
        for dep, line in deps:
            a, b = _layer(module), _layer(dep)
            if a != b and RANKS[b] >= RANKS[a]:
                wrong.append(f"{module}:{line} imports {dep} ({a} may not depend on {b})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules():
    graph = {m: {d for d, _ in deps} for m, deps in _imports().items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


# A module per noun: past this, split it by noun (docs/architecture.md) before adding more.
MAX_MODULE_LINES = 300


def test_no_module_outgrows_one_noun():
    long = [
        f"{path.relative_to(PACKAGE.parent)}: {n} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"split these by noun (at most {MAX_MODULE_LINES} lines):\n" + "\n".join(long)
