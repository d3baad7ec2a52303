"""The shape of the package: no import cycle among searchrl modules, and no source file over 400 lines.

The import graph is read from the source with ``ast``, never by importing: an edge ``a -> b`` is an
import that runs when ``a`` is imported (module level, including class bodies, ``try`` and ``if``
blocks), so imports inside functions and under ``if TYPE_CHECKING:`` do not count. ``import a.b.c``
depends on ``a.b.c``; ``from p import x`` depends on ``p.x`` when that is a module, else on ``p``;
relative forms are resolved against the importing module's package. A second, stricter graph also
counts imports inside functions: deferring an import hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import searchrl

ROOT = Path(searchrl.__file__).parent
MAX_LINES = 400


def walk_modules(root: Path, package: str) -> Iterator[tuple[str, Path, bool]]:
    """(module name, file, is package) for every ``.py`` file under ``root``, without importing any.

    Files, not ``pkgutil.walk_packages``: that skips folders without ``__init__.py`` (a namespace package
    would be missed) and imports every package it enters (the CLI package pulls in torch).
    """
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        yield ".".join((package, *(parts[:-1] if is_pkg else parts))), path, is_pkg


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_in(body: list[ast.stmt], deferred: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of ``body`` that run when the module is imported (``deferred``: also
    those inside functions); never those under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not deferred:
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports_in(node.orelse, deferred)
        else:
            for field in ("body", "orelse", "finalbody"):
                yield from _imports_in(getattr(node, field, []), deferred)
            for handler in getattr(node, "handlers", []):
                yield from _imports_in(handler.body, deferred)


def module_imports(source: str, name: str, is_pkg: bool, known: set[str], *, deferred: bool = False) -> set[str]:
    """The ``known`` modules that module ``name`` (source ``source``) imports at import time
    (``deferred``: or later, from inside its functions)."""
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports_in(ast.parse(source).body, deferred):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            anchor = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return out & known


def import_graph(*, deferred: bool = False) -> dict[str, set[str]]:
    """searchrl module -> the searchrl modules it imports at import time (``deferred``: or in functions)."""
    modules = list(walk_modules(ROOT, "searchrl"))
    known = {name for name, _, _ in modules}
    return {
        name: module_imports(path.read_text(encoding="utf-8"), name, pkg, known, deferred=deferred)
        for name, path, pkg in modules
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(min(c), c, graph) for c in sorted(components, key=min)]


def _cycle_through(start: str, component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``component`` (breadth first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is on no cycle of its component")  # a component with a cycle has one


def test_import_rules_on_a_hand_written_module() -> None:
    source = """
from __future__ import annotations
import pkg.a
from . import b
from .c import thing
from .. import top
from pkg.sub import d as dee
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from pkg.e import E
else:
    import pkg.f
try:
    import pkg.g
except ImportError:
    import pkg.h
class K:
    import pkg.i
def f():
    import pkg.j
"""
    known = {f"pkg.{m}" for m in "abefghij"} | {"pkg", "pkg.sub", "pkg.sub.c", "pkg.sub.d", "pkg.sub.b"}
    got = module_imports(source, "pkg.sub.x", False, known)
    assert got == {"pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg", "pkg.sub.d", "pkg.f", "pkg.g", "pkg.h", "pkg.i"}
    assert module_imports(source, "pkg.sub.x", False, known, deferred=True) == got | {"pkg.j"}
    assert module_imports("from . import b", "pkg.sub", True, known) == {"pkg.sub.b"}


def test_find_cycles_reports_each_cycle_once() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["d", "d"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_searchrl_modules() -> None:
    graph = import_graph()
    assert "searchrl.retrieval.base" in graph["searchrl.trainer.sft"]  # the parser sees real imports
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (module level):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycle_even_through_imports_inside_functions() -> None:
    cycles = find_cycles(import_graph(deferred=True))
    assert not cycles, "import cycles (counting imports in functions):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_source_file_over_400_lines() -> None:
    lengths = {
        path.relative_to(ROOT): len(path.read_text(encoding="utf-8").splitlines()) for path in ROOT.rglob("*.py")
    }
    long = {str(path): n for path, n in sorted(lengths.items()) if n > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


ENTRY_POINTS = ("searchrl.cli", "searchrl.demo", "searchrl.experiment", "searchrl.engines", "searchrl.export")


def test_only_entry_points_import_the_trainer() -> None:
    """The trainer is glue-free: what it needs comes from builders beside their objects, and only entry
    points (and export/, which reads checkpoints) import it, counting imports inside functions."""
    graph = import_graph(deferred=True)
    users = {
        mod
        for mod, deps in graph.items()
        if any(d == "searchrl.trainer" or d.startswith("searchrl.trainer.") for d in deps)
        and not mod.startswith("searchrl.trainer")
    }
    assert all(any(u == e or u.startswith(e + ".") for e in ENTRY_POINTS) for u in users), sorted(users)
