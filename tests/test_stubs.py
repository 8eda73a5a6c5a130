"""The ``.pyi`` stubs say what the compiled modules hold, and import only what tcpfast depends on.

For every compiled module (``tcpfast/*.so`` and ``tcpfast/testing/*.so``) the public names of the
module (classes, functions, constants) and the public methods, properties and attributes of each
class are compared with those its ``.pyi`` declares (read with :mod:`ast`), in both directions.
A difference that is meant is in :data:`ALLOWED`, with the reason. The stubs' imports are checked
against the standard library, ``typing``'s companion ``_typeshed``, tcpfast itself and the
dependencies declared in ``pyproject.toml``.
"""
from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.metadata
import pathlib
import re
import sys
import types
from typing import Dict, Optional, Set

import pytest

import tcpfast

PACKAGE = pathlib.Path(tcpfast.__file__).resolve().parent
ROOT = PACKAGE.parent

# (module, name or Class.member) -> why the stub and the module differ there on purpose.
ALLOWED: Dict[tuple, str] = {
    # A Python class (not a cdef class) keeps this on the instance (set in __init__), where the
    # class object cannot show it; the stub declares it for type checkers.
    ("tcpfast._wire", "WireError.reason"): "instance attribute of a Python exception class",
}

# Module-level names Cython puts in every module, that are not the module's API.
CYTHON_NAMES = {"__test__"}


def _suffix_free(path: pathlib.Path) -> pathlib.Path:
    name = path.name
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def compiled_modules() -> Dict[str, pathlib.Path]:
    """module name -> path without suffix, for every extension module in the package."""
    found = {}
    for pkg in (PACKAGE, PACKAGE / "testing"):
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            for so in pkg.glob(f"*{suffix}"):
                base = _suffix_free(so)
                found[".".join(("tcpfast",) + base.relative_to(PACKAGE).parts)] = base
    return dict(sorted(found.items()))


MODULES = compiled_modules()


def test_there_are_compiled_modules_to_check():
    assert "tcpfast._wire" in MODULES and "tcpfast.testing._simlink" in MODULES, sorted(MODULES)


# --- what the module holds ---------------------------------------------------------------------

def _pyx_imported_names(pyx: pathlib.Path) -> Set[str]:
    """Names a .pyx binds at module level by a Python import (not its own API)."""
    src = pyx.read_text()
    names: Set[str] = set()
    for m in re.finditer(r"^from\s+\S+\s+import\s+(\([^)]*\)|[^\n]*)", src, re.M):
        for part in m.group(1).strip("()").replace("\n", " ").split(","):
            part = part.split("#")[0].strip()
            if part:
                names.add(part.split(" as ")[-1].strip())
    for m in re.finditer(r"^import\s+([^\n#]*)", src, re.M):
        for part in m.group(1).split(","):
            names.add(part.strip().split(" as ")[-1].split(".")[0])
    return names


def _public(name: str) -> bool:
    return not name.startswith("_")


def runtime_api(modname: str, pyx: pathlib.Path):
    """({public name: object}, {class name: set of its public members}) of the loaded module."""
    mod = importlib.import_module(modname)
    imported = _pyx_imported_names(pyx)
    names = {}
    for name, value in vars(mod).items():
        if not _public(name) or name in imported or name in CYTHON_NAMES:
            continue
        if isinstance(value, types.ModuleType):
            continue
        owner = getattr(value, "__module__", modname) if isinstance(value, type) else modname
        if owner != modname:
            continue
        names[name] = value
    classes = {}
    for name, value in names.items():
        if isinstance(value, type):
            members: Set[str] = set()
            for klass in value.__mro__:
                if klass.__module__.startswith("tcpfast"):
                    members |= {m for m in vars(klass) if _public(m)}
            classes[name] = members
    return names, classes


# --- what the stub declares --------------------------------------------------------------------

def _body_names(body) -> Set[str]:
    out: Set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.If):           # sys.version_info branches
            out |= _body_names(node.body) | _body_names(node.orelse)
    return out


def _stub_tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def stub_api(stub: pathlib.Path):
    """(set of public top-level names, {class name: set of its public members, bases included})."""
    tree = _stub_tree(stub)
    defs = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def members(cls: ast.ClassDef) -> Set[str]:
        out = {m for m in _body_names(cls.body) if _public(m)}
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in defs:
                out |= members(defs[base.id])
        return out

    top = {n for n in _body_names(tree.body) if _public(n)}
    return top, {name: members(cls) for name, cls in defs.items() if _public(name)}


def _allowed(modname: str, names: Set[str], prefix: str = "") -> Set[str]:
    return {n for n in names if (modname, prefix + n) not in ALLOWED}


@pytest.mark.parametrize("modname", sorted(MODULES))
def test_stub_exists(modname):
    stub = MODULES[modname].with_suffix(".pyi")
    assert stub.exists(), f"{modname} has no stub {stub.relative_to(ROOT)}"


@pytest.mark.parametrize("modname", sorted(MODULES))
def test_stub_declares_what_the_module_holds(modname):
    base = MODULES[modname]
    stub = base.with_suffix(".pyi")
    if not stub.exists():
        pytest.fail(f"{modname} has no stub")
    names, classes = runtime_api(modname, base.with_suffix(".pyx"))
    top, stub_classes = stub_api(stub)
    problems = []
    missing = _allowed(modname, set(names) - top)
    extra = _allowed(modname, top - set(names))
    if missing:
        problems.append(f"in the module, not in the stub: {sorted(missing)}")
    if extra:
        problems.append(f"in the stub, not in the module: {sorted(extra)}")
    for cls in sorted(set(classes) & set(stub_classes)):
        missing = _allowed(modname, classes[cls] - stub_classes[cls], cls + ".")
        extra = _allowed(modname, stub_classes[cls] - classes[cls], cls + ".")
        if missing:
            problems.append(f"{cls}: in the class, not in the stub: {sorted(missing)}")
        if extra:
            problems.append(f"{cls}: in the stub, not in the class: {sorted(extra)}")
    assert not problems, f"{stub.relative_to(ROOT)} is out of step with {modname}:\n  " + \
        "\n  ".join(problems)


def test_allow_list_entries_are_still_needed():
    """An allowance that no longer covers a difference is stale: delete it."""
    for (modname, qualname), _why in ALLOWED.items():
        base = MODULES[modname]
        names, classes = runtime_api(modname, base.with_suffix(".pyx"))
        top, stub_classes = stub_api(base.with_suffix(".pyi"))
        cls, _, member = qualname.rpartition(".")
        if cls:
            in_module, in_stub = member in classes.get(cls, ()), member in stub_classes.get(cls, ())
        else:
            in_module, in_stub = qualname in names, qualname in top
        assert in_module != in_stub, f"{modname} {qualname}: the allowance covers no difference"


# --- what the stubs import ---------------------------------------------------------------------

def _declared_distributions() -> Set[str]:
    text = (ROOT / "pyproject.toml").read_text() if (ROOT / "pyproject.toml").exists() else None
    if text is None:                        # an installed copy: its metadata says the same
        requires = importlib.metadata.requires("tcpfast") or []
        deps = [r for r in requires if "extra ==" not in r]
    else:
        try:
            import tomllib
            deps = tomllib.loads(text)["project"]["dependencies"]
        except ImportError:                 # Python 3.10: no tomllib
            m = re.search(r"^dependencies\s*=\s*\[([^\]]*)\]", text, re.M)
            deps = re.findall(r'"([^"]+)"', m.group(1)) if m else []
    return {re.split(r"[<>=!~;\[ ]", d, 1)[0].lower() for d in deps}


def _top_module_allowed(top: str, distributions: Set[str],
                        import_to_dist: Dict[str, list]) -> Optional[str]:
    """None when stubs may import ``top``, else why not."""
    if top in sys.stdlib_module_names or top in ("tcpfast", "_typeshed"):
        # _typeshed: the stub-only module every type checker has (ReadableBuffer, ...).
        return None
    dists = {d.lower() for d in import_to_dist.get(top, [])}
    if dists & distributions:
        return None
    return (f"{top} is neither the standard library nor a declared dependency "
            f"({sorted(distributions)})")


def test_stubs_import_only_dependencies():
    distributions = _declared_distributions()
    import_to_dist = importlib.metadata.packages_distributions()
    problems = []
    for stub in sorted(PACKAGE.rglob("*.pyi")):
        for node in ast.walk(_stub_tree(stub)):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                why = _top_module_allowed(top, distributions, import_to_dist)
                if why:
                    problems.append(f"{stub.relative_to(ROOT)}:{node.lineno}: {why}")
    assert not problems, "\n".join(problems)
