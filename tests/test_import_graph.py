"""hnnfit's import graph, read from the source: no cycles, no private reach-ins.

Every ``import`` and ``from ... import`` statement counts, wherever it sits
(module level, inside functions, under ``if``): a function-level import that
closes a circle still ties the modules' designs together. Relative imports are
resolved to module names, and ``from pkg import name`` where ``name`` is a
submodule counts as importing that submodule. Importing a submodule is not
counted as importing its parent packages (Python initialises a package before
its submodules, so those edges cannot form a harmful cycle).

A private name (one leading underscore, not a dunder) belongs to its module:
no other module imports it. A private submodule belongs to its package: only
modules inside that package import it.
"""
import ast
from pathlib import Path

import pytest

import hnnfit

PACKAGE_DIR = Path(hnnfit.__file__).resolve().parent


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def package_modules(package_dir):
    """Map each module name of the package at ``package_dir`` to its file."""
    package_dir = Path(package_dir)
    root = package_dir.name
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([root, *parts])] = path
    return modules


def _resolve_from(module, is_package, node):
    """Absolute name of the module a ``from ... import`` reads from."""
    if node.level == 0:
        return node.module
    # a package's own __init__ is its own base for level 1
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    if node.module:
        base = base + node.module.split(".")
    return ".".join(base)


def import_edges(package_dir):
    """Every import between the package's modules.

    Returns
    -------
    edges : list of tuple
        ``(importer, imported_module, name_or_None, file, line)``; ``name`` is
        the imported name for a ``from`` import of a non-module, else None.
    """
    modules = package_modules(package_dir)
    root = Path(package_dir).name
    top = Path(package_dir).parent
    edges = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        path = path.relative_to(top).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        edges.append((module, alias.name, None, path, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                source = _resolve_from(module, is_package, node)
                if source != root and not source.startswith(root + "."):
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        edges.append((module, submodule, None, path, node.lineno))
                    else:
                        name = None if alias.name == "*" else alias.name
                        edges.append((module, source, name, path, node.lineno))
    return edges


def find_cycles(edges):
    """Import cycles, one per strongly connected component of the graph.

    Returns
    -------
    cycles : list of tuple
        ``(modules, cycle)``: the component's modules (sorted) and one
        concrete cycle ``[a, b, ..., a]`` through its first module.
    """
    graph = {}
    for importer, target, _, _, _ in edges:
        if importer != target:
            graph.setdefault(importer, set()).add(target)
            graph.setdefault(target, set())
    # Tarjan's algorithm, iterative
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return [(component, _cycle_through(graph, component)) for component in components]


def _cycle_through(graph, component):
    """A shortest cycle from the component's first module back to it."""
    members = set(component)
    start = component[0]
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    return component   # unreachable for a strongly connected component


def private_imports(edges):
    """Imports of another module's private name or another package's private
    submodule, as ``"file:line: importer imports what"`` strings."""
    found = []
    for importer, target, name, path, line in edges:
        if name is not None and _is_private(name) and importer != target:
            found.append(f"{path}:{line}: {importer} imports {target}.{name}")
        parts = target.split(".")
        for depth in range(1, len(parts)):
            if not _is_private(parts[depth]):
                continue
            owner = ".".join(parts[:depth])
            if importer != owner and not importer.startswith(owner + "."):
                found.append(f"{path}:{line}: {importer} imports private module "
                             f"{'.'.join(parts[:depth + 1])}")
                break
    return sorted(found)


# -- the checker itself, on a small package with known faults ------------------

def _write(root, relpath, text):
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def faulty_package(tmp_path):
    pkg = tmp_path / "toypkg"
    _write(pkg, "__init__.py", "from .sub import _impl  # sub's private module, from outside sub\n")
    _write(pkg, "a.py", "from .b import helper\n")
    _write(pkg, "b.py", "def helper():\n    from . import c\n    return c\n")
    # c closes the circle a -> b -> c -> a from inside a function, relatively
    _write(pkg, "c.py", "def f():\n    from .a import helper\n    return helper\n")
    _write(pkg, "d.py", "from .b import _secret\nimport toypkg.sub._impl\n"
                        "from .sub import _impl\n")
    _write(pkg, "sub/__init__.py", "from . import _impl\nfrom ._impl import run\n")
    _write(pkg, "sub/_impl.py", "from ..a import helper\n_x = 1\ndef run():\n    pass\n")
    _write(pkg, "sub/user.py", "from ._impl import run  # same package: fine\n"
                               "from .. import sub\n")
    return pkg


def test_edges_resolve_relative_and_submodule_imports(faulty_package):
    edges = {(a, b, n) for a, b, n, _, _ in import_edges(faulty_package)}
    assert ("toypkg.b", "toypkg.c", None) in edges            # from . import c
    assert ("toypkg.c", "toypkg.a", "helper") in edges        # function-level
    assert ("toypkg.d", "toypkg.b", "_secret") in edges
    assert ("toypkg.d", "toypkg.sub._impl", None) in edges    # import a.b.c
    assert ("toypkg.sub._impl", "toypkg.a", "helper") in edges  # from .. import
    assert ("toypkg.sub.user", "toypkg.sub", None) in edges   # from .. import sub
    assert ("toypkg", "toypkg.sub._impl", None) in edges      # from .sub import _impl


def test_checker_finds_the_cycle(faulty_package):
    cycles = find_cycles(import_edges(faulty_package))
    assert cycles == [(["toypkg.a", "toypkg.b", "toypkg.c"],
                       ["toypkg.a", "toypkg.b", "toypkg.c", "toypkg.a"])]


def test_checker_finds_private_imports(faulty_package):
    found = private_imports(import_edges(faulty_package))
    text = "\n".join(found)
    assert len(found) == 4, text
    assert "d.py:1: toypkg.d imports toypkg.b._secret" in text
    assert "d.py:2: toypkg.d imports private module toypkg.sub._impl" in text
    assert "d.py:3: toypkg.d imports private module toypkg.sub._impl" in text
    # the top-level package reaching into sub's private module is a violation too
    assert "__init__.py:1: toypkg imports private module toypkg.sub._impl" in text
    assert "sub/user.py" not in text and "sub/__init__.py" not in text


def test_clean_package_passes(tmp_path):
    pkg = tmp_path / "cleanpkg"
    _write(pkg, "__init__.py", "")
    _write(pkg, "a.py", "from .b import run\n")
    _write(pkg, "b.py", "import os\nfrom ._util import helper\ndef run():\n    return helper()\n")
    _write(pkg, "_util.py", "def helper():\n    return 1\n")
    edges = import_edges(pkg)
    assert len(edges) == 2
    assert find_cycles(edges) == []
    assert private_imports(edges) == []


# -- hnnfit itself -------------------------------------------------------------

def test_hnnfit_has_no_import_cycle():
    cycles = find_cycles(import_edges(PACKAGE_DIR))
    assert not cycles, "import cycles:\n" + "\n".join(
        f"{', '.join(modules)} (e.g. {' -> '.join(cycle)})" for modules, cycle in cycles)


def test_hnnfit_imports_no_private_names():
    found = private_imports(import_edges(PACKAGE_DIR))
    assert not found, "imports of private names:\n" + "\n".join(found)
