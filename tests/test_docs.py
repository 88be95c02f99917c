"""The documentation's sources, checked without building them.

The API reference is written from the package by ``docs/_ext/apiref.py``
when Sphinx starts; here the same pages are written to a temporary folder
and compared with the public names found independently, by importing each
public module. ``.ci/run`` builds the site itself, warnings as errors.
"""
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import hnnfit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load_apiref():
    spec = importlib.util.spec_from_file_location("apiref", DOCS / "_ext" / "apiref.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def api_pages(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    _load_apiref().write_api_pages(out)
    return out


def _documented(page):
    """Full names a module page gives their own page (autosummary with a toctree)."""
    names, in_table, toctree = [], False, False
    for line in page.read_text().splitlines():
        if line.startswith(".. autosummary::"):
            in_table, toctree = True, False
            continue
        stripped = line.strip()
        if in_table and stripped and not line.startswith("   "):
            in_table = False
        if in_table and stripped.startswith(":toctree:"):
            toctree = True
        elif in_table and toctree and stripped and not stripped.startswith(":"):
            names.append(f"{page.stem}.{stripped}")
    return names


def _listed(page):
    """Names a module page lists: autosummary rows and links, by last dotted part."""
    names = {full.rsplit(".", 1)[-1] for full in _documented(page)}
    for name, target in re.findall(r":obj:`(\w+) <([\w.]+)>`", page.read_text()):
        assert target.rsplit(".", 1)[-1] == name
        names.add(name)
    return names


def _public_modules():
    names = ["hnnfit"]
    for info in pkgutil.walk_packages(hnnfit.__path__, "hnnfit."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _expected_names(modname):
    """A module's ``__all__``, else its public functions and classes defined there."""
    module = importlib.import_module(modname)
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {name for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == modname}


def test_all_lists_the_lazy_names():
    # hnnfit.__all__ names every lazily imported name, each of which resolves
    assert set(hnnfit.__all__) >= set(hnnfit._LAZY)
    assert hnnfit.__all__ == sorted(hnnfit.__all__)
    for name in hnnfit.__all__:
        assert getattr(hnnfit, name) is not None


def test_api_reference_lists_every_public_name(api_pages):
    index = (api_pages / "index.rst").read_text()
    for modname in _public_modules():
        page = api_pages / f"{modname}.rst"
        assert page.is_file(), f"no API page for {modname}"
        assert f"   {modname}\n" in index, f"{modname} missing from the API index"
        missing = _expected_names(modname) - _listed(page)
        assert not missing, f"{modname}: not in the API reference: {sorted(missing)}"
    assert set(hnnfit.__all__) <= _listed(api_pages / "hnnfit.rst")


def test_api_reference_documents_each_object_once(api_pages):
    # a name with its own page appears in one autosummary table only; the
    # other modules holding it link there (Sphinx refuses duplicates)
    documented = [full for page in api_pages.glob("hnnfit*.rst") for full in _documented(page)]
    assert len(documented) == len(set(documented))
    objects = {}
    for full in documented:
        modname, name = full.rsplit(".", 1)
        value = getattr(importlib.import_module(modname), name)
        if inspect.isclass(value) or inspect.isroutine(value):
            assert id(value) not in objects, f"{full} and {objects.get(id(value))} are one object"
            objects[id(value)] = full


def test_docs_sources_name_no_machine_paths():
    # the docs and the README describe the project, not one machine or its history
    sources = [ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
    sources += [p for p in DOCS.rglob("*") if p.suffix in {".rst", ".py", ".md"}
                and not {"_build", "generated", "auto_examples", "api"} & set(p.parts)]
    sources += list((ROOT / "examples").glob("*.py"))
    pattern = re.compile(r"/work/|/tmp/|/root/|/home/|this VM|\bissue \d|\bstop \d")
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.name}:{number}: {line.strip()}"


def test_user_guide_pages_are_in_the_toctree():
    index = (DOCS / "index.rst").read_text() + (DOCS / "guide" / "index.rst").read_text()
    pages = sorted(p.stem for p in (DOCS / "guide").glob("*.rst") if p.stem != "index")
    assert pages
    for page in pages:
        assert re.search(rf"^\s+{page}$", index, re.M), f"guide/{page}.rst not in a toctree"
    for name in ("install", "benchmarks", "architecture", "api/index", "auto_examples/index",
                 "guide/index"):
        assert re.search(rf"^\s+{re.escape(name)}$", index, re.M), name


def _prose_and_scripts():
    """The README, the docs' own sources, the examples and the bench scripts."""
    sources = [ROOT / "README.md"]
    sources += [p for p in DOCS.rglob("*") if p.suffix in {".rst", ".py", ".md"}
                and not {"_build", "generated", "auto_examples", "api"} & set(p.parts)]
    sources += list((ROOT / "examples").glob("*.py")) + list((ROOT / "bench").glob("*.py"))
    return sources


def test_docs_use_the_current_names():
    # Study's table is `evaluations` and its held-out scoring `score_held_out`;
    # the facade module and the private trial runner are gone
    old = re.compile(r"\.trials\b|\.validate\(|fit\.api\b|\b_simulate\b")
    for path in _prose_and_scripts():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not old.search(line), f"{path.name}:{number}: {line.strip()}"


def test_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "pip install -e . && hnnfit fit" in first_block
    assert "python -m pytest -ra" in first_block
    # every subcommand of the CLI has a row in the commands table
    from hnnfit.cli import make_parser

    parser = make_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in sub.choices:
        assert f"| `hnnfit {command}" in text, f"hnnfit {command} missing from the README"
    assert "--json" in text and "--debug" in text
