"""The layers of the runtime package are sealed: no import cycle among its modules, and no import
of the test machinery (``tcpfast.testing``, the simulated link ``_simlink``).

The graph is read from the sources: every ``import`` and ``from ... import`` of each ``.py`` file
(at any depth: an import inside a function is an edge too), and every ``cimport`` and ``import``
line of each ``.pyx`` and of its ``.pxd`` (one module). ``from tcpfast import x`` is an edge to
the module ``tcpfast.x`` when there is one, else to the package ``tcpfast`` (its ``__init__``).
Importing ``tcpfast.a.b`` also runs ``tcpfast/__init__.py`` and ``tcpfast/a/__init__.py`` first;
that is how packages work, not an edge of the graph. A module's ``include`` is part of it.

The runtime package is ``tcpfast`` and its subpackages except ``tcpfast.testing``.
"""
from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys
from typing import Dict, FrozenSet, Iterator, List, Optional, Set

import tcpfast

PACKAGE = pathlib.Path(tcpfast.__file__).resolve().parent
TESTING = "tcpfast.testing"

# Cycles known and being removed (none left: the engine branch of issue 11 removed stack.py <->
# socket.py); any other cycle fails the test.
KNOWN_CYCLES_BEING_REMOVED: Set[FrozenSet[str]] = set()


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def runtime_sources() -> Dict[str, List[pathlib.Path]]:
    """module name -> its source files (.py; or .pyx with its .pxd), test machinery left out."""
    found: Dict[str, List[pathlib.Path]] = {}
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".pyx", ".pxd") or "__pycache__" in path.parts:
            continue
        name = _module_name(path)
        if name == TESTING or name.startswith(TESTING + "."):
            continue
        found.setdefault(name, []).append(path)
    return found


SOURCES = runtime_sources()


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of tcpfast (runtime or testing)."""
    rel = pathlib.Path(*name.split("."))
    base = PACKAGE.parent / rel
    return any(base.with_suffix(s).exists() for s in (".py", ".pyx", ".pxd")) or \
        (base / "__init__.py").exists()


def _target(module: str, names: List[str]) -> Iterator[str]:
    """The modules that ``from module import names`` reaches."""
    hit_package = False
    for n in names:
        if n != "*" and _is_module(f"{module}.{n}"):
            yield f"{module}.{n}"
        else:
            hit_package = True
    if hit_package:
        yield module


def _resolve(current: str, is_package: bool, level: int, module: str) -> str:
    if not level:
        return module
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of_py(name: str, path: pathlib.Path) -> Set[str]:
    """Every module an .py file imports, at any depth of its code."""
    out: Set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, path.name == "__init__.py", node.level, node.module or "")
            out |= set(_target(module, [a.name for a in node.names]))
    return out


_INCLUDE = re.compile(r"""^[ \t]*include[ \t]+["']([^"']+)["']""", re.M)
_FROM = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+c?import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
_IMPORT = re.compile(r"^[ \t]*c?import[ \t]+([^\n#]+)", re.M)


def imports_of_cython(path: pathlib.Path, seen: Optional[Set[pathlib.Path]] = None) -> Set[str]:
    """Every module a .pyx or .pxd file imports or cimports, at any indentation, with the files it
    ``include``s (they are part of it)."""
    seen = set() if seen is None else seen
    seen.add(path)
    src = path.read_text()
    src = re.sub(r'"""(?:.|\n)*?"""', "", src)          # docstrings are not code
    src = re.sub(r"#[^\n]*", "", src)
    out: Set[str] = set()
    for m in _INCLUDE.finditer(src):
        included = (path.parent / m.group(1)).resolve()
        if included not in seen and included.exists():
            out |= imports_of_cython(included, seen)
    for m in _FROM.finditer(src):
        names = [n.strip().split(" as ")[0].strip()
                 for n in m.group(2).strip("()").replace("\n", " ").split(",") if n.strip()]
        out |= set(_target(m.group(1), names))
    for m in _IMPORT.finditer(src):
        out |= {n.strip().split(" as ")[0].strip() for n in m.group(1).split(",") if n.strip()}
    return out


def import_graph() -> Dict[str, Set[str]]:
    """module -> the tcpfast modules it imports (runtime and testing alike)."""
    graph: Dict[str, Set[str]] = {}
    for name, paths in SOURCES.items():
        edges: Set[str] = set()
        for path in paths:
            edges |= imports_of_py(name, path) if path.suffix == ".py" else imports_of_cython(path)
        graph[name] = {e for e in edges
                       if (e == "tcpfast" or e.startswith("tcpfast.")) and e != name}
    return graph


def strongly_connected(graph: Dict[str, Set[str]]) -> List[Set[str]]:
    """Tarjan's algorithm: the components with more than one module (the import cycles)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[Set[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_path(graph: Dict[str, Set[str]], component: Set[str]) -> str:
    """One cycle through the component, written a -> b -> a, for the failure message."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in component)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return " -> ".join(path + [start])
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return " <-> ".join(sorted(component))
        path.append(fresh[0])
        seen.add(fresh[0])


GRAPH = import_graph()


def test_the_graph_sees_the_package():
    # A reader that found nothing would pass every check below: make sure it reads.
    assert {"tcpfast", "tcpfast.socket", "tcpfast._engine", "tcpfast._wire",
            "tcpfast.cli.up", "tcpfast.bench.runner"} <= set(GRAPH)
    assert "tcpfast._wire" in GRAPH["tcpfast._engine"]          # a cimport
    assert "tcpfast._wire_convert" in GRAPH["tcpfast._wire_views"]
    assert "tcpfast.netns" in GRAPH["tcpfast.bench.runner"]     # from tcpfast import netns
    assert not any(name.startswith(TESTING) for name in GRAPH)


def test_no_import_cycle_in_the_runtime_package():
    cycles = [c for c in strongly_connected(GRAPH)
              if frozenset(c) not in KNOWN_CYCLES_BEING_REMOVED]
    assert not cycles, "import cycles:\n  " + "\n  ".join(_cycle_path(GRAPH, c) for c in cycles)


def test_known_cycles_are_still_there():
    """A cycle in KNOWN_CYCLES_BEING_REMOVED that is gone must leave the list."""
    components = {frozenset(c) for c in strongly_connected(GRAPH)}
    for known in KNOWN_CYCLES_BEING_REMOVED:
        assert known in components, f"{sorted(known)} is no longer a cycle: remove it from the list"


def test_runtime_imports_no_test_machinery():
    bad = sorted(f"{module} imports {target}" for module, targets in GRAPH.items()
                 for target in targets if target == TESTING or target.startswith(TESTING + "."))
    assert not bad, "\n".join(bad)
    # _simlink by any path (it used to be tcpfast._simlink).
    mentions = []
    for paths in SOURCES.values():
        for path in paths:
            src = path.read_text()
            for line in src.splitlines():
                if re.search(r"\b(c?import)\b", line) and "_simlink" in line:
                    mentions.append(f"{path.relative_to(PACKAGE.parent)}: {line.strip()}")
    assert not mentions, "\n".join(mentions)


def test_importing_every_runtime_module_loads_no_test_machinery():
    """Import every module of the runtime package in a fresh interpreter: each one loads, and
    none of them brings in tcpfast.testing."""
    modules = sorted(name for name, paths in SOURCES.items() if name != "tcpfast.__main__"
                     and any(p.suffix in (".py", ".pyx") for p in paths))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'tcpfast.testing' or "
        "m.startswith('tcpfast.testing.') or m.endswith('_simlink')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(PACKAGE.parent))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
