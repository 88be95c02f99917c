"""Write the API reference's sources from the package itself.

The reference lists every name of ``hnnfit.__all__`` and the public names
of every public submodule: a module's ``__all__`` where it has one,
otherwise the names it defines at its top level (functions, classes,
constants) that do not start with ``_``. Modules whose dotted path has a
part starting with ``_`` are private and left out.

Each object is documented once, at its home: the top-level ``hnnfit``
namespace for the names it exports, else the module that defines it.
Other modules that list the same object link to that page, so no object
is described twice. The pages are plain reStructuredText with
``autosummary`` tables; Sphinx's autosummary writes one page per object.

No Sphinx import here: the tests read the same pages without building.
"""
import ast
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "hnnfit"


@dataclass
class ModuleEntry:
    """The public names of one module and where each is documented."""

    name: str
    summary: str
    documented: list = field(default_factory=list)   # names whose page is here
    linked: dict = field(default_factory=dict)        # name -> full target name


def public_modules(package=PACKAGE):
    """Dotted names of the package and its public submodules, sorted."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def _defined_at_top(module):
    """Names a module's own source binds at its top level (not imports)."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def public_names(module):
    """The public names of an imported module, in its ``__all__`` order or sorted."""
    listed = getattr(module, "__all__", None)
    if listed is not None:
        return list(listed)
    own = _defined_at_top(module)
    names = []
    for name in sorted(own):
        if name.startswith("_") or not hasattr(module, name):
            continue
        if inspect.ismodule(getattr(module, name)):
            continue
        names.append(name)
    return names


def _summary(module):
    doc = inspect.getdoc(module) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def collect(package=PACKAGE):
    """One :class:`ModuleEntry` per public module, objects assigned to their home."""
    modules = {name: importlib.import_module(name) for name in public_modules(package)}
    top = modules[package]
    entries = {name: ModuleEntry(name, _summary(mod)) for name, mod in modules.items()}

    home = {}                          # id(object) -> full documented name
    for name in public_names(top):
        value = getattr(top, name)
        if inspect.isclass(value) or inspect.isroutine(value):
            home[id(value)] = f"{package}.{name}"
        entries[package].documented.append(name)

    # a class or function is at home where it is defined; a constant where
    # its module's source binds it
    for modname, module in modules.items():
        if modname == package:
            continue
        own = _defined_at_top(module)
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isroutine(value):
                if getattr(value, "__module__", None) == modname and id(value) not in home:
                    home[id(value)] = f"{modname}.{name}"
            elif name in own:
                home.setdefault(("const", modname, name), f"{modname}.{name}")

    for modname, module in modules.items():
        if modname == package:
            continue
        own = _defined_at_top(module)
        for name in public_names(module):
            value = getattr(module, name)
            full = f"{modname}.{name}"
            if inspect.isclass(value) or inspect.isroutine(value):
                target = home.setdefault(id(value), full)
            elif name in own:
                target = full
            else:
                target = _constant_home(modules, module, name, home) or full
                home.setdefault(("const", modname, name), target)
            if target == full:
                entries[modname].documented.append(name)
            else:
                entries[modname].linked[name] = target
    return [entries[name] for name in sorted(entries)]


def _constant_home(modules, module, name, home):
    """The module that defines the constant ``module.name`` holds, if public."""
    value = getattr(module, name)
    for modname, other in modules.items():
        if other is module or name not in _defined_at_top(other):
            continue
        if getattr(other, name, None) is value:
            return home.get(("const", modname, name), f"{modname}.{name}")
    return None


def _module_page(entry):
    title = f"``{entry.name}``"
    # the module's one-line summary, not its whole docstring: module
    # docstrings hold notes for maintainers as much as for users
    lines = [title, "=" * len(title), "", f".. module:: {entry.name}", "",
             entry.summary, ""]
    if entry.documented:
        lines += [".. autosummary::", "   :toctree: ../generated", "   :nosignatures:", ""]
        lines += [f"   {name}" for name in entry.documented]
        lines.append("")
    if entry.linked:
        lines += ["Also available here, documented at their home:", ""]
        lines += [f"- :obj:`{name} <{target}>`" for name, target in sorted(entry.linked.items())]
        lines.append("")
    if not entry.documented and not entry.linked:
        lines += ["This module exports no public names of its own.", ""]
    return "\n".join(lines)


def write_api_pages(out_dir, package=PACKAGE):
    """Write ``index.rst`` and one page per public module into ``out_dir``.

    Returns the list of :class:`ModuleEntry` written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = collect(package)
    index = ["API reference", "=============", "",
             "Every public name of hnnfit, one page per module. The names most",
             "scripts need are importable from the top-level ``hnnfit``",
             "namespace; the submodules hold the rest.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    for entry in entries:
        index.append(f"   {entry.name}")
        _write(out_dir / f"{entry.name}.rst", _module_page(entry) + "\n")
    index.append("")
    _write(out_dir / "index.rst", "\n".join(index) + "\n")
    # pages of modules that no longer exist would be orphans (a warning)
    current = {f"{entry.name}.rst" for entry in entries} | {"index.rst"}
    for path in out_dir.glob("*.rst"):
        if path.name not in current:
            path.unlink()
    return entries


def remove_stale_stubs(stub_dir, entries):
    """Delete autosummary pages of names no module page lists any more."""
    expected = {f"{entry.name}.{name}" for entry in entries for name in entry.documented}
    for path in Path(stub_dir).glob("*.rst"):
        if path.stem not in expected:
            path.unlink()


def _write(path, text):
    # rewrite only on change, so Sphinx does not re-read unchanged pages
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def missing_in_build(html_dir, package=PACKAGE):
    """Public names without a page (or a link to one) in a built HTML site."""
    html_dir = Path(html_dir)
    missing = []
    for entry in collect(package):
        page = html_dir / "api" / f"{entry.name}.html"
        if not page.is_file():
            missing.append(entry.name)
            continue
        text = page.read_text()
        for name in entry.documented:
            if not (html_dir / "generated" / f"{entry.name}.{name}.html").is_file():
                missing.append(f"{entry.name}.{name}")
        for name, target in entry.linked.items():
            if f"#{target}" not in text:
                missing.append(f"{entry.name}.{name} -> {target}")
    return missing


if __name__ == "__main__":
    # python docs/_ext/apiref.py docs/_build/html: fail if the built site
    # lacks a page for any public name
    import sys

    gaps = missing_in_build(sys.argv[1])
    if gaps:
        sys.exit(f"API reference: no page for {', '.join(gaps)}")
    print("API reference: every public name has a page")
