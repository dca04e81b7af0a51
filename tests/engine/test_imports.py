"""The engine's rooms: no import circle among engine modules, and no long function in the painter.

Every import of an engine module counts, wherever it stands: at the top of a file, inside a
function (a lazy import that dodges a loop is still a loop in the design) and under
`TYPE_CHECKING` (a type that must be imported from above is in the wrong room). Importing
`engine.a.b` also runs `engine/a/__init__.py`, so it counts as importing the package `engine.a`
too, unless the importer lives inside that package (its package is already being imported).
bot/ is left out: its delivery <-> follow circle is another change's work (issue 26, item 7).
"""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
# The painter, whose functions stay under MAX_LINES (issue 26, item 4); argparse declarations
# live in engine/commands, outside this list.
PAINTER = (
    "style_transfer.py",
    "objective.py",
    "tiling.py",
    "losses.py",
    "lbfgs.py",
    "optimize.py",
    "schedule.py",
    "job.py",
    "style_cache.py",
    "model.py",
)
MAX_LINES = 60


def _modules() -> dict[str, Path]:
    """Every engine module by dotted name (a package by its own name, not `.__init__`)."""
    found = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """The dotted names `tree` imports, wherever the import statement stands."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports (and the packages those run)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for target in _imported(ast.parse(path.read_text()), name, is_package):
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                prefix = ".".join(parts[:i])
                inside = name == prefix or name.startswith(prefix + ".")
                if prefix in modules and not inside:
                    edges.add(prefix)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a cycle
    found in it, sorted; a module importing itself counts too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(c)) for c in sorted(components)]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    return [start]


def test_no_import_cycle_in_engine() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles in engine/:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_long_function_in_the_painter() -> None:
    long = []
    for file in PAINTER:
        path = ENGINE / file
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"engine/{file}:{node.lineno} {node.name}: {lines} lines")
    assert not long, f"painter functions over {MAX_LINES} lines:\n" + "\n".join(long)
