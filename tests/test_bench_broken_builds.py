"""bench/broken_builds.py: its mutations break a copy, exactly as they claim.

The full check (every mutation's tests on a mutated copy, the demo fit
among them) takes minutes and is run by hand; these tests check its
mechanics cheaply.
"""
import difflib
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bb(load_bench):
    return load_bench("broken_builds")


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _changed_lines(before, after):
    """Lines removed from and lines added to ``before``."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return ([ln[2:] for ln in diff if ln.startswith("- ")],
            [ln[2:] for ln in diff if ln.startswith("+ ")])


@pytest.fixture(scope="module")
def mutated(bb, tmp_path_factory):
    """A copy of the repository with every mutation applied (one at a time, one copy)."""
    originals = {m.path: _digest(REPO / m.path) for m in bb.MUTATIONS}
    root = bb.copy_tree(tmp_path_factory.mktemp("broken") / "tree")
    copied = {m.path: (root / m.path).read_text() for m in bb.MUTATIONS}
    for m in bb.MUTATIONS:
        m.apply(root)
    return root, originals, copied


def test_list_names_every_mutation_and_its_tests(bb, capsys):
    assert bb.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert [m.name for m in bb.MUTATIONS] == ["channel_constant", "connection_rule",
                                              "demo_solver_start"]
    for m in bb.MUTATIONS:
        assert f"{m.name}: {m.claim}" in out
        assert (REPO / m.tests[0]).is_file(), m.tests
    assert "pytest tests/test_network.py -k 'reference_gid_ranges_and_rules or 38_rules'" in out
    assert "pytest tests/test_cli.py -k demo_fit" in out


def test_copy_holds_the_tracked_files(bb, mutated):
    root, _, copied = mutated
    tracked = bb.tracked_files()
    assert "hnnfit/network.py" in tracked and "tests/conftest.py" in tracked
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == \
        sorted(tracked)
    for rel, text in copied.items():
        assert text == (REPO / rel).read_text()
    assert _digest(root / "pyproject.toml") == _digest(REPO / "pyproject.toml")


def test_mutations_change_exactly_what_they_claim(bb, mutated):
    root, originals, copied = mutated
    # the repository itself is untouched
    assert {p: _digest(REPO / p) for p in originals} == originals

    # 1% on the km channel's Ra, nothing else
    removed, added = _changed_lines(copied["mod/km.mod"], (root / "mod/km.mod").read_text())
    assert len(removed) == len(added) == 1
    old = float(removed[0].split("=")[1].split()[0])
    new = float(added[0].split("=")[1].split()[0])
    assert removed[0].split()[0] == added[0].split()[0] == "Ra"
    assert new == pytest.approx(old * 1.01, rel=1e-12)

    # one line less: the L5 basket -> L5 pyramidal GABA-A rule
    removed, added = _changed_lines(copied["hnnfit/network.py"],
                                    (root / "hnnfit/network.py").read_text())
    assert added == [] and len(removed) == 1
    assert removed[0].strip().startswith('("L5_basket", "L5_pyramidal", "soma", "gabaa",')

    # the solvers' module is kept and only added to
    text = (root / "hnnfit/fit/solvers.py").read_text()
    assert text.startswith(copied["hnnfit/fit/solvers.py"].rstrip("\n"))
    assert text.endswith(bb.START_POINT_PATCH)


def test_mutated_copy_behaves_broken(bb, mutated, tmp_path):
    """The copy's own hnnfit is imported, with one rule fewer and a stuck solver."""
    root, _, _ = mutated
    code = """
import json
import hnnfit
from hnnfit import jones_2009_model
from hnnfit._resources import mod_dir
from hnnfit.fit import ParameterSpace
from hnnfit.fit.solvers import BayesianSolver

solver = BayesianSolver(ParameterSpace([("a", 0.0, 1.0), ("b", 0.0, 1.0)]),
                        x0={"a": 0.2, "b": 0.7}, n_initial_points=2)
asked = solver.ask(3)
solver.tell(asked, [1.0, 2.0, 3.0])
asked += solver.ask(2) + [solver.ask_with_pending(asked[-2:], 0.5)]
print(json.dumps({"file": hnnfit.__file__, "mod": str(mod_dir()),
                  "rules": len(jones_2009_model(mesh_shape=(3, 3)).connectivity),
                  "asked": asked}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env=bb.copy_env(root, tmp_path / "cache"), timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve() == (root / "hnnfit" / "__init__.py").resolve()
    assert Path(got["mod"]).resolve() == (root / "mod").resolve()
    assert got["rules"] == 15   # of the column's 16
    assert got["asked"] == [{"a": 0.2, "b": 0.7}] * 6


def test_an_anchor_that_moved_is_an_error(bb):
    for m in bb.MUTATIONS:
        with pytest.raises(bb.MutationError, match=f"^{m.path}: "):
            m.apply_to_text("nothing to mutate here\n")
    rule = bb.mutation("connection_rule")
    text = (REPO / rule.path).read_text()
    with pytest.raises(bb.MutationError, match="found 2"):
        rule.apply_to_text(text + text)
    with pytest.raises(ValueError, match="mutation must be one of"):
        bb.mutation("no_such_mutation")


def test_run_tests_reports_pass_fail_and_errors(bb, mutated, tmp_path):
    root, _, _ = mutated
    plain = bb.copy_tree(tmp_path / "plain")
    status, seconds, tail = bb.run_tests(plain, ["tests/test_network.py", "-k", "38_rules"],
                                         tmp_path / "c1")
    assert status == "pass" and seconds > 0, tail
    # the mutated copy's network lost a rule: the same test notices
    status, _, tail = bb.run_tests(root, ["tests/test_network.py", "-k", "38_rules"],
                                   tmp_path / "c2")
    assert status == "fail: test_network.py::test_erp_default_has_38_rules_drives_first", tail
    status, _, _ = bb.run_tests(root, ["tests/test_network.py", "-k", "no_such_test"],
                                tmp_path / "c3")
    assert status == "error (5)"
    m = bb.MUTATIONS[0]
    assert bb.Outcome(m, "pass", "fail: x", 1.0).caught
    assert bb.Outcome(m, "not run", "fail: x", 1.0).caught
    assert not bb.Outcome(m, "pass", "pass", 1.0).caught
    assert not bb.Outcome(m, "fail: x", "fail: x", 1.0).caught
    assert not bb.Outcome(m, "pass", "error (5)", 1.0).caught
    table = bb.format_table([bb.Outcome(m, "pass", "fail: x", 1.0)])
    assert table.splitlines()[2].endswith("| pass | fail: x | yes |")


def test_every_mutation_selects_tests_that_exist(bb):
    """A renamed test would leave a mutation's selection empty (pytest exit status 5)."""
    for m in bb.MUTATIONS:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                              "-p", "no:cacheprovider", *m.tests], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (m.name, out.stdout[-2000:], out.stderr[-2000:])
        selected = [ln for ln in out.stdout.splitlines() if "::" in ln]
        assert selected, m.name
        if m.name == "demo_solver_start":
            assert all("test_cli.py::test_demo_fit" in ln for ln in selected), selected
