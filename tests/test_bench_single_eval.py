"""bench/single_eval.py: a tiny run's measurements, tables and dipole comparison."""
import copy
import json
import math
import statistics

import pytest


@pytest.fixture(scope="module")
def single_eval(load_bench):
    return load_bench("single_eval")


def _cells(text, first):
    """The cells of the markdown row whose first cell is ``first``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


def test_dipole_difference(single_eval):
    top, rel = single_eval.dipole_difference([0.0, 1.0, 2.0], [0.0, 1.0, 1.0])
    assert top == 1.0
    assert rel == pytest.approx(math.sqrt(1 / 3) / math.sqrt(2 / 3))
    assert single_eval.dipole_difference([1.0, -2.0], [1.0, -2.0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="dipoles of 2 and 3 samples"):
        single_eval.dipole_difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_the_reference_writer_sets_what_the_parameter_space_sets(single_eval):
    # the baseline process writes hnnfit's dotted names into hnn-core's
    # network; the same writer on hnnfit's network (same layout) must agree
    # with ParameterSpace.apply, connection by connection
    from hnnfit import jones_2009_model
    from hnnfit.fit.space import Parameter, ParameterSpace

    net = jones_2009_model(add_drives_from_params=True, mesh_shape=(3, 3))
    space = ParameterSpace([Parameter(n, 0.0, 1e6) for n, _ in single_eval._WARM_CHANGES])
    point = single_eval.make_points(space.current_values(net), 3)[2]
    assert point != single_eval.make_points(space.current_values(net), 1)[0]
    ours = space.apply(net, point)
    theirs = copy.deepcopy(net)
    single_eval.apply_to_hnn_core(theirs, point)
    for a, b in zip(ours.connectivity, theirs.connectivity):
        assert (a["src_type"], a["target_type"], a["receptor"]) == \
            (b["src_type"], b["target_type"], b["receptor"])
        assert a["nc_dict"] == b["nc_dict"]
    for name in ("evprox1", "evdist1", "evprox2"):
        assert ours.external_drives[name]["dynamics"] == \
            theirs.external_drives[name]["dynamics"]
    with pytest.raises(ValueError, match="no ampa connection of 'evdist1' onto "
                                         "'L5_basket'"):
        single_eval.apply_to_hnn_core(theirs, {"evdist1.ampa.L5_basket": 1.0})


def test_a_tiny_run(single_eval, capsys):
    # 3x3 network, 40 ms (evprox1 arrives near 26 ms), one round, NEURON only
    single_eval.main(["--mesh", "3", "--tstop", "40", "--rounds", "2",
                      "--no-coreneuron"])
    text = capsys.readouterr().out
    recs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    first, *rounds = recs
    assert first["mode"] == "hnnfit warm (first: build)" and first["point"] == 0
    assert [(r["round"], r["point"], r["mode"]) for r in rounds] == [
        (0, 1, "cold"), (0, 1, "hnnfit warm"), (1, 2, "cold"), (1, 2, "hnnfit warm")]
    for r in recs:
        # build and run split the same way for every mode
        assert r["run_s"] == pytest.approx(r["wall_s"] - r["build_s"])
        assert 0 <= r["build_s"] <= r["wall_s"]
    cold = [r for r in rounds if r["mode"] == "cold"]
    warm = [r for r in rounds if r["mode"] == "hnnfit warm"]
    # the warm model is kept: its build happened once, in the first evaluation
    assert all(w["reused"] for w in warm) and not first["reused"]
    assert max(w["build_s"] for w in warm) < first["build_s"]
    # same points in both modes: the same dipoles; other points, other dipoles
    for c, w in zip(cold, warm):
        assert w["peak_nAm"] == pytest.approx(c["peak_nAm"], rel=1e-9)
    assert len({round(r["peak_nAm"], 12) for r in (first, *warm)}) == 3
    # the time table shows the medians of the records
    row = _cells(text, "hnnfit cold")
    assert row[1:4] == [f"{statistics.median(r[k] for r in cold):.3f}"
                        for k in ("build_s", "run_s", "wall_s")]
    assert row[6] == "2" and row[7] == "n/a"
    row = _cells(text, "hnnfit warm, first evaluation (builds)")
    assert row[1:4] == [f"{first[k]:.3f}" for k in ("build_s", "run_s", "wall_s")]
    # the dipole table: warm against cold, largest over both rounds
    row = _cells(text[text.index("| mode vs"):], "hnnfit warm")
    assert len(row) == 4 and row[3] == "2"
    assert float(row[1]) < 1e-9 and float(row[2]) < 1e-9
    assert "| mode vs hnnfit cold | max abs difference (nAm) |" in text


def test_a_missing_baseline_interpreter_is_named(single_eval, tmp_path, capsys):
    missing = str(tmp_path / "nopython")
    with pytest.raises(SystemExit):
        single_eval.main(["--mesh", "3", "--rounds", "1", "--baseline-python", missing])
    assert f"--baseline-python must be an interpreter, got {missing!r}" in \
        capsys.readouterr().err

