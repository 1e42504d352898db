"""The import graph of ``usageledger``: no cycles, and every import runs down the layers.

Every module under ``src/usageledger`` is parsed with :mod:`ast` (nothing is imported) and
each of its imports of our own modules becomes an edge: module-level ones and the lazy ones
inside functions alike, because a lazy import is still a dependency (it only moves the cost to
the first call). So is an import string, ``"usageledger.server:app_from_environment"``,
which uvicorn imports by name. Two rules hold over that graph:

1. **No cycles**: no set of modules imports each other round (strongly connected components
   of more than one module, or a module importing itself).
2. **Layers**: each module belongs to one layer of :data:`LAYERS`, and may import only its own
   layer and the layers :data:`MAY_IMPORT` lists for it, all of them lower. The same table,
   as a map, is in docs/architecture.md.

Outside the package: ``src`` never imports ``bench``, ``scripts`` or ``tests``; ``bench``
(the shared harness and the benchmarks) never imports ``scripts`` or ``tests``; ``scripts``
may import ``bench``.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "usageledger"

#: Layer → its modules, lowest layer first. A name stands for that module and every module
#: below it (``usageledger.store`` is the whole ``store/`` folder); the package itself,
#: ``usageledger`` (its ``__init__``, the version), stands for itself only.
LAYERS: dict[str, tuple[str, ...]] = {
    # Pure code: no database, no web framework, no files of ours to read.
    "core": (
        "usageledger",
        "usageledger.errors",
        "usageledger.buckets",
        "usageledger.wire",
        "usageledger.config",
        "usageledger.settings_rules",
        "usageledger.source_registry",
        "usageledger.confusables",
        "usageledger.attribution",
    ),
    # The assistants' log parsers.
    "sources": ("usageledger.sources",),
    # Tables, engines, migrations.
    "store": ("usageledger.store",),
    # The server's domain (ingest, rollups, queries, prices, accounts) and the evidence log.
    "ledger": ("usageledger.ledger", "usageledger.evidence"),
    # The local tracker: scan, report, status line, push.
    "tracker": ("usageledger.tracker",),
    # Operator jobs over the server's database (replay, verify, backfill, copy, retention).
    "ops": ("usageledger.ops", "usageledger.demo"),
    # The HTTP API's routers.
    "api": ("usageledger.api",),
    # The dashboard's pages.
    "web": ("usageledger.web",),
    # The composition root: builds the app from api/ and web/.
    "server": ("usageledger.server",),
    # The command line.
    "cli": ("usageledger.cli", "usageledger.__main__"),
}

#: Layer → the other layers it may import (its own is always allowed).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "sources": frozenset({"core"}),
    "store": frozenset({"core"}),
    "ledger": frozenset({"core", "store"}),
    "tracker": frozenset({"core", "sources", "store", "ledger"}),
    "ops": frozenset({"core", "store", "ledger"}),
    "api": frozenset({"core", "store", "ledger"}),
    "web": frozenset({"core", "store", "ledger", "api"}),
    "server": frozenset({"core", "store", "ledger", "api", "web"}),
    # The CLI reaches the server only by name: ``serve`` hands uvicorn the app factory as
    # "usageledger.server:app_from_environment", an import string (see :class:`_Collector`).
    "cli": frozenset({"core", "sources", "store", "ledger", "tracker", "ops", "server"}),
}


#: ``"package.module:attribute"``: a module named in a string, imported by name later.
IMPORT_STRING = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Import:
    """One import of one of our modules by another: where it is, and whether it is lazy."""

    source: str
    target: str
    path: Path
    line: int
    lazy: bool
    by_name: bool = False

    def where(self, root: Path) -> str:
        """``path:line`` relative to ``root``, saying how an import that is not at module
        level is made: inside a function, or by name in a string."""
        path = self.path.relative_to(root) if self.path.is_relative_to(root) else self.path
        how = " (by name, in a string)" if self.by_name else " (lazy, inside a function)"
        return f"{path}:{self.line}" + (how if self.lazy else "")


def modules(src: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (the folder of that name in ``src``) by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The module of ours that ``name`` (a module, or an attribute of one) stands for."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


class _Collector(ast.NodeVisitor):
    """The imports of one module, each marked lazy when it sits inside a function."""

    def __init__(self, module: str, path: Path, known: Mapping[str, Path], package: str) -> None:
        self.module = module
        self.path = path
        self.known = known
        self.root = package
        self.here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.depth = 0
        self.found: list[Import] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._nested(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._nested(node)

    def _nested(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_Constant(self, node: ast.Constant) -> None:
        # "package.module:attribute", as uvicorn takes an app: a lazy import of that module.
        if isinstance(node.value, str) and (match := IMPORT_STRING.fullmatch(node.value)):
            self._add(match.group(1), node.lineno, by_name=True)  # ours only, as any import

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.here.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            # ``from a import b``: b may be a module of ours or a name defined in a.
            self._add(f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno)

    def _add(self, name: str, line: int, *, by_name: bool = False) -> None:
        if name != self.root and not name.startswith(self.root + "."):
            return
        target = _resolve(name, self.known)
        if target is not None and (target, line) not in {(i.target, i.line) for i in self.found}:
            lazy = by_name or self.depth > 0
            self.found.append(Import(self.module, target, self.path, line, lazy, by_name))


def imports(src: Path, package: str) -> list[Import]:
    """Every import of our own modules in ``package``, module-level and lazy."""
    known = modules(src, package)
    found: list[Import] = []
    for module, path in known.items():
        collector = _Collector(module, path, known, package)
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        found.extend(collector.found)
    return found


def cycles(edges: Iterable[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module, and self-imports
    (Tarjan's algorithm, iterative)."""
    graph: dict[str, list[str]] = {}
    loops: set[str] = set()
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge.target)
        graph.setdefault(edge.target, [])
        if edge.source == edge.target:
            loops.add(edge.source)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = graph[node]
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in loops:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(found)


def layer_finder(layers: Mapping[str, Iterable[str]], package: str) -> Callable[[str], str | None]:
    """A function giving a module's layer: the one that names its longest prefix."""
    owners = {name: layer for layer, names in layers.items() for name in names}

    def layer_of(module: str) -> str | None:
        name = module
        while name:
            if name in owners and (name == module or name != package):
                return owners[name]
            name = name.rpartition(".")[0]
        return None

    return layer_of


def layer_problems(
    edges: Iterable[Import],
    layers: Mapping[str, Iterable[str]],
    may_import: Mapping[str, frozenset[str]],
    package: str,
    root: Path,
) -> list[str]:
    """Every import that runs from a layer to one it may not import, and every module that
    belongs to no layer, each named with its file and line."""
    layer_of = layer_finder(layers, package)
    problems: list[str] = []
    for edge in edges:
        source, target = layer_of(edge.source), layer_of(edge.target)
        if source is None or target is None:
            unplaced = edge.source if source is None else edge.target
            problems.append(
                f"{edge.where(root)}: {unplaced} belongs to no layer (add it to LAYERS and "
                "to the map in docs/architecture.md)"
            )
        elif source != target and target not in may_import[source]:
            allowed = ", ".join(sorted(may_import[source])) or "nothing but itself"
            problems.append(
                f"{edge.where(root)}: {edge.source} ({source}) imports {edge.target} "
                f"({target}); {source} may import {allowed}"
            )
    return sorted(set(problems))


def cycle_report(found: list[list[str]], edges: Iterable[Import], root: Path) -> list[str]:
    """Each cycle with the imports that close it, file and line."""
    edges = sorted(edges, key=lambda edge: (edge.source, edge.line))
    lines: list[str] = []
    for component in found:
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        lines.extend(
            f"  {edge.where(root)}: {edge.source} imports {edge.target}"
            for edge in edges
            if edge.source in members and edge.target in members
        )
    return lines


def _outside_imports(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    """``path:line: imports X`` for each import of a forbidden top-level name under ``folder``."""
    problems: list[str] = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            problems.extend(
                f"{path.relative_to(ROOT)}:{node.lineno}: imports {name}"
                for name in names
                if name.split(".")[0] in forbidden
            )
    return problems


# --- the checker, on small packages planted in a temporary folder ---------------------------


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path → source) under ``tmp_path/lib``; that folder (``src`` of the
    real package)."""
    src = tmp_path / "lib"
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


PLANTED_LAYERS = {"low": ("pkg.low",), "high": ("pkg.high", "pkg")}
PLANTED_MAY_IMPORT = {"low": frozenset[str](), "high": frozenset({"low"})}


def test_the_checker_names_an_upward_import_and_a_cycle_with_their_lines(tmp_path: Path) -> None:
    """A lower module importing a higher one inside a function, which imports it back: the
    checker reports the upward import (file, line, lazy) and the two-module cycle."""
    src = _plant(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low/__init__.py": "",
            "pkg/low/base.py": '"""Low."""\n\n\ndef f() -> None:\n    from pkg.high import g\n',
            "pkg/high.py": "from pkg.low.base import f\n\n\ndef g() -> None:\n    f()\n",
        },
    )
    edges = imports(src, "pkg")
    assert {(e.source, e.target, e.line, e.lazy) for e in edges} == {
        ("pkg.low.base", "pkg.high", 5, True),
        ("pkg.high", "pkg.low.base", 1, False),
    }
    assert cycles(edges) == [["pkg.high", "pkg.low.base"]]
    assert cycle_report(cycles(edges), edges, tmp_path) == [
        "cycle: pkg.high, pkg.low.base",
        "  lib/pkg/high.py:1: pkg.high imports pkg.low.base",
        "  lib/pkg/low/base.py:5 (lazy, inside a function): pkg.low.base imports pkg.high",
    ]
    assert layer_problems(edges, PLANTED_LAYERS, PLANTED_MAY_IMPORT, "pkg", tmp_path) == [
        "lib/pkg/low/base.py:5 (lazy, inside a function): pkg.low.base (low) imports "
        "pkg.high (high); low may import nothing but itself"
    ]


def test_the_checker_resolves_relative_imports_and_flags_a_module_of_no_layer(
    tmp_path: Path,
) -> None:
    """``from ..high import g`` is an import of ``pkg.high``; a module outside every layer is
    named, and the package ``pkg`` does not swallow its sub-modules."""
    src = _plant(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low/__init__.py": "from ..high import g\n",
            "pkg/high.py": "X = 1\n",
            "pkg/stray.py": "from pkg import high\n",
        },
    )
    edges = imports(src, "pkg")
    assert {(e.source, e.target) for e in edges} == {
        ("pkg.low", "pkg.high"),
        ("pkg.stray", "pkg.high"),
    }
    assert cycles(edges) == []
    assert layer_problems(edges, PLANTED_LAYERS, PLANTED_MAY_IMPORT, "pkg", tmp_path) == [
        "lib/pkg/low/__init__.py:1: pkg.low (low) imports pkg.high (high); "
        "low may import nothing but itself",
        "lib/pkg/stray.py:1: pkg.stray belongs to no layer (add it to LAYERS and to the map "
        "in docs/architecture.md)",
    ]


def test_an_import_string_is_a_lazy_import(tmp_path: Path) -> None:
    """``"pkg.high:g"`` (how uvicorn is told which app to build) is an import of
    ``pkg.high``; a string of another package or of another shape is not."""
    src = _plant(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": 'APP = "pkg.high:g"\nOTHER = "uvicorn.main:run"\nTEXT = "pkg.high: g"\n',
            "pkg/high.py": "def g() -> None:\n    pass\n",
        },
    )
    edges = imports(src, "pkg")
    assert {(e.source, e.target, e.line, e.lazy) for e in edges} == {
        ("pkg.low", "pkg.high", 1, True)
    }
    assert layer_problems(edges, PLANTED_LAYERS, PLANTED_MAY_IMPORT, "pkg", tmp_path) == [
        "lib/pkg/low.py:1 (by name, in a string): pkg.low (low) imports pkg.high (high); "
        "low may import nothing but itself"
    ]


def test_a_clean_planted_package_passes(tmp_path: Path) -> None:
    """Imports that run down the layers, lazy or not, are no problem and no cycle."""
    src = _plant(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "X = 1\n",
            "pkg/high.py": "import pkg.low\n\n\ndef g() -> int:\n    from pkg import low\n"
            "    return low.X + pkg.low.X\n",
        },
    )
    edges = imports(src, "pkg")
    assert len(edges) == 2
    assert cycles(edges) == []
    assert layer_problems(edges, PLANTED_LAYERS, PLANTED_MAY_IMPORT, "pkg", tmp_path) == []


# --- the real package -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    """Every import of our own modules under src/usageledger."""
    return imports(ROOT / "src", PACKAGE)


def test_the_layer_table_runs_one_way() -> None:
    """Each layer may import only layers listed before it, so the layers form no cycle."""
    order = list(LAYERS)
    assert set(MAY_IMPORT) == set(order)
    for i, layer in enumerate(order):
        assert MAY_IMPORT[layer] <= set(order[:i]), layer


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in the table (and the map) before it can be imported."""
    layer_of = layer_finder(LAYERS, PACKAGE)
    assert [m for m in modules(ROOT / "src", PACKAGE) if layer_of(m) is None] == []


def test_the_graph_is_read(edges: list[Import]) -> None:
    """The parse finds the imports it should: a module-level and a lazy one known to exist."""
    found = {(e.source, e.target, e.lazy) for e in edges}
    assert ("usageledger.server", "usageledger.web.routes", False) in found
    assert any(e.lazy for e in edges)


def test_no_module_imports_itself_round_a_cycle(edges: list[Import]) -> None:
    """No strongly connected component of more than one module."""
    assert cycle_report(cycles(edges), edges, ROOT) == []


def test_every_import_runs_down_the_layers(edges: list[Import]) -> None:
    """No lower layer imports a higher one (see :data:`LAYERS` and :data:`MAY_IMPORT`)."""
    assert layer_problems(edges, LAYERS, MAY_IMPORT, PACKAGE, ROOT) == []


def test_the_package_and_the_harness_import_nothing_above_them() -> None:
    """``src`` imports none of the repository's folders; ``bench`` imports neither
    ``scripts`` nor ``tests`` (``scripts`` may import ``bench``)."""
    assert _outside_imports(ROOT / "src", ("bench", "scripts", "tests")) == []
    assert _outside_imports(ROOT / "bench", ("scripts", "tests")) == []


def test_each_layer_the_cli_may_import_is_one_it_does_import(edges: list[Import]) -> None:
    """The CLI's row is no wider than what it uses, so a new dependency is a decision."""
    layer_of = layer_finder(LAYERS, PACKAGE)
    used = {
        layer_of(edge.target)
        for edge in edges
        if layer_of(edge.source) == "cli" and layer_of(edge.target) != "cli"
    }
    assert used == MAY_IMPORT["cli"]


def test_the_app_factory_serve_names_is_a_callable(edges: list[Import]) -> None:
    """The import string ``usageledger serve`` hands uvicorn names a function that exists
    (a rename would otherwise fail only when the server starts)."""
    serve = ROOT / "src" / "usageledger" / "cli" / "serve.py"
    named = [
        node.value
        for node in ast.walk(ast.parse(serve.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and IMPORT_STRING.fullmatch(node.value)
    ]
    assert named == ["usageledger.server:app_from_environment"]
    module, _, attribute = named[0].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert ("usageledger.cli.serve", "usageledger.server", True) in {
        (e.source, e.target, e.lazy) for e in edges
    }
