"""The documentation's sources, checked without building them.

The API reference is written from the package by ``docs/_ext/apiref.py``
when Sphinx starts; here the same pages are written to a temporary folder
and compared with the public names found independently, by importing each
public module. ``.ci/run`` builds the site itself, warnings as errors.
"""
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import shlex
import subprocess
import sys
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


# -- every published figure names the command that prints it -----------------
# A figure block is a table or a ``.. code-block:: text`` block holding a
# decimal number; the first paragraph after it must start "Reproduce with"
# and name the command(s). Commands are checked against the repository: the
# bench script exists and accepts the flags named, a file named exists, and
# an ``hnnfit`` command parses with the CLI's own parser.
_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")
_MD_RULE = re.compile(r"^\s*\|(\s*:?-+:?\s*\|)+\s*$")
_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\d.])")      # 4.45, 4.45x, 1.1e-10
_INLINE_CMD = re.compile(r"`{1,2}((?:python bench/|hnnfit )[^`]*)`{1,2}")
_MEASURED = re.compile(r"\d(?:\s?(?:ms|s|min|MB|kB|nAm)\b|\s?%|x\b)")


def _figure_blocks(lines):
    """(first, last) line indices of the tables and text blocks holding figures."""
    blocks, i = [], 0
    while i < len(lines):
        line = lines[i]
        if _BORDER.match(line):                  # rst simple table: three borders
            end, borders = i, 1
            while borders < 3 and end + 1 < len(lines):
                end += 1
                borders += bool(_BORDER.match(lines[end]))
        elif _MD_RULE.match(line) and i > 0:     # markdown table: header, rule, rows
            start, end = i - 1, i
            while end + 1 < len(lines) and lines[end + 1].lstrip().startswith("|"):
                end += 1
            i, line = start, None
        elif line.strip() == ".. code-block:: text":
            end = i + 1
            while end + 1 < len(lines) and (not lines[end + 1].strip()
                                            or lines[end + 1].startswith(" ")):
                end += 1
        else:
            i += 1
            continue
        if any(_DECIMAL.search(text) for text in lines[i:end + 1]):
            blocks.append((i, end))
        i = end + 1
    return blocks


def _paragraph_after(lines, end):
    """The paragraph after line ``end`` joined in one string, with the literal
    block it introduces (``::``) if any."""
    i = end + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    para = []
    while i < len(lines) and lines[i].strip():
        para.append(lines[i].strip())
        i += 1
    text = " ".join(para)
    if text.endswith("::"):
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            para.append(lines[i].strip())
            i += 1
        text = "\n".join(para)
    return text


def _commands_in(text):
    """Commands in backticks, and ``python bench/...`` lines of literal blocks
    (backslash continuations joined)."""
    found = [m.group(1).strip() for m in _INLINE_CMD.finditer(text)]
    joined = re.sub(r"\\\n\s*", " ", text)
    found += [line.strip() for line in joined.splitlines()
              if line.strip().startswith("python bench/") and "`" not in line]
    return found


_HELP = {}


def _script_options(script):
    """Option strings a bench script's ``--help`` lists."""
    if script not in _HELP:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        _HELP[script] = (proc.returncode, proc.stdout + proc.stderr)
    code, text = _HELP[script]
    return None if code else set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text))


def _command_problems(command):
    try:
        tokens = shlex.split(command)
    except ValueError as err:
        return [f"`{command}`: {err}"]
    if tokens[0] == "hnnfit":
        from hnnfit.cli import make_parser

        try:
            make_parser().parse_args(tokens[1:])
        except SystemExit:
            return [f"`{command}`: the hnnfit command line refuses it"]
        return []
    if len(tokens) < 2 or tokens[0] != "python" or not tokens[1].startswith("bench/"):
        return [f"`{command}`: not a `python bench/...` or `hnnfit` command"]
    problems = []
    script = tokens[1]
    if not (ROOT / script).is_file():
        return [f"`{command}`: no script {script}"]
    options = _script_options(script)
    if options is None:
        return [f"`{command}`: `python {script} --help` fails"]
    for token in tokens[2:]:
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in options:
            problems.append(f"`{command}`: {script} has no option {flag}")
        elif ("/" in token or token.endswith(".toml")) and not (ROOT / token).exists():
            problems.append(f"`{command}`: no file {token}")
    return problems


def figure_problems(text, name="text"):
    """What is wrong with the figures of one README or docs source.

    Every figure block must be followed by a "Reproduce with" paragraph
    naming a valid command; every ``python bench/...`` command anywhere must
    be valid; in a page of measurements (``name`` ending in
    ``benchmarks.rst``) every section stating a measured value must name a
    command too.
    """
    lines = text.splitlines()
    problems = []
    for first, last in _figure_blocks(lines):
        after = _paragraph_after(lines, last)
        commands = _commands_in(after)
        if not after.startswith("Reproduce with") or not commands:
            problems.append(f"{name}:{first + 1}: a figure with no 'Reproduce with' "
                            f"command after it")
        for command in commands:
            problems += [f"{name}:{first + 1}: {p}" for p in _command_problems(command)]
    for command in _commands_in(text):
        if command.startswith("python bench/"):
            problems += [f"{name}: {p}" for p in _command_problems(command)]
    if name.endswith("benchmarks.rst"):
        heads = [i for i in range(1, len(lines))
                 if re.fullmatch(r"[-=~^]{3,}", lines[i]) and lines[i - 1].strip()
                 and len(lines[i]) >= len(lines[i - 1].rstrip())]
        bounds = [h - 1 for h in heads] + [len(lines)]
        for start, stop in zip(bounds, bounds[1:]):
            section = "\n".join(lines[start:stop])
            if _MEASURED.search(section) and "Reproduce with" not in section:
                problems.append(f"{name}:{start + 1}: section '{lines[start].strip()}' "
                                f"states measured values but names no command")
    return sorted(set(problems))


def _figure_sources():
    sources = [ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
    sources += [p for p in DOCS.rglob("*.rst")
                if not {"_build", "generated", "auto_examples", "api"} & set(p.parts)]
    return sources


def test_every_figure_names_the_command_that_prints_it():
    problems = []
    for path in _figure_sources():
        problems += figure_problems(path.read_text(), str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)


_GOOD = """\
Speed
-----

==========  ========
mode        median s
==========  ========
warm        4.45
==========  ========

Reproduce with: ``python bench/coreneuron_memory.py --trials 30 --mesh 3`` and
``hnnfit show studies/demo.sqlite --json``.
"""


def test_figure_check_accepts_a_figure_with_its_command():
    assert figure_problems(_GOOD, "benchmarks.rst") == []
    # a literal block after "Reproduce with::" names its command too
    good = _GOOD.split("Reproduce")[0] + (
        "Reproduce with::\n\n   python bench/coreneuron_memory.py \\\n       --trials 30\n")
    assert figure_problems(good, "benchmarks.rst") == []


@pytest.mark.parametrize("change, expected", [
    (("Reproduce with: ", "Measured with: "), "no 'Reproduce with' command"),
    (("``python bench/coreneuron_memory.py --trials 30 --mesh 3`` and\n``hnnfit show "
      "studies/demo.sqlite --json``", "a script"), "no 'Reproduce with' command"),
    (("coreneuron_memory.py", "no_such_script.py"), "no script bench/no_such_script.py"),
    (("--trials 30", "--trails 30"), "has no option --trails"),
    (("hnnfit show studies", "hnnfit shwo studies"), "the hnnfit command line refuses it"),
    (("--mesh 3``", "--mesh 3 bench/configs/gone.toml``"), "no file bench/configs/gone.toml"),
])
def test_figure_check_finds_a_figure_without_a_valid_command(change, expected):
    bad = _GOOD.replace(*change)
    assert bad != _GOOD
    problems = figure_problems(bad, "benchmarks.rst")
    assert any(expected in p for p in problems), problems


def test_figure_check_finds_sections_and_markdown_tables_without_commands():
    prose = "Threads\n-------\n\nTwo threads took 4.40 s.\n"
    assert any("states measured values" in p for p in figure_problems(prose, "benchmarks.rst"))
    table = "| n_jobs | wall s |\n| ---: | ---: |\n| 2 | 174.2 |\n\nFast.\n"
    assert any("no 'Reproduce with'" in p for p in figure_problems(table, "README.md"))
    text = "```text\nkills 30\n```\n\n.. code-block:: text\n\n   uninterrupted run 16.7 s\n"
    assert any("no 'Reproduce with'" in p for p in figure_problems(text, "guide.rst"))
    # a ratio is a figure too; a table without measured values (an
    # exit-status table, version numbers) is none
    ratio = "====  =====\nmode  ratio\n====  =====\nwarm  4.45x\n====  =====\n"
    assert any("no 'Reproduce with'" in p for p in figure_problems(ratio, "guide.rst"))
    statuses = "======  =======\nStatus  Meaning\n======  =======\n0       success\n" \
               "2       needs hnn-core 0.6.1\n======  =======\n"
    assert figure_problems(statuses, "guarantees.rst") == []
