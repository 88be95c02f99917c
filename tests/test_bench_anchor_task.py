"""bench/anchor_task.py: a tiny run of the anchor task, its table and verdicts."""
import json

import pytest


@pytest.fixture(scope="module")
def anchor(load_bench):
    return load_bench("anchor_task")


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _rows(text, prefix):
    return [_cells(line) for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module")
def tiny(anchor, tmp_path_factory):
    # 3x3 column, the target to 130 ms (evprox2 acts from 100 ms on), two
    # evaluations per solver
    import contextlib
    import io

    out = tmp_path_factory.mktemp("anchor")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        anchor.main(["--mesh", "3", "--tmax", "130", "--n-evals", "2", "--seeds", "0",
                     "--quiet", "--out", str(out)])
    return out, buf.getvalue()


def test_a_tiny_run_reports_its_studies(anchor, tiny, capsys):
    from hnnfit.fit import Study

    out, text = tiny
    recs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [(r["solver"], r["seed"], r["n_evals"]) for r in recs] == [
        ("bayesian", 0, 2), ("cobyla", 0, 2)]
    for r in recs:
        with Study.load(r["study"]) as study:
            values = study.evaluations.sort_values("id")["value"].tolist()
            assert study.space.names == [n for n, _, _ in anchor.SPACE]
            assert study.target.times[-1] <= 130.0
            # the first evaluation is the example's hand-tuned start
            first = study.evaluations.sort_values("id").iloc[0]
            assert {n: first[n] for n in anchor.X0} == anchor.X0
        assert r["start_rmse"] == values[0] and r["best"] == min(values)
    # both solvers start from the same point: the same score
    assert recs[0]["start_rmse"] == recs[1]["start_rmse"]
    rows = _rows(text, "| hnnfit ")
    assert [row[0] for row in rows] == ["hnnfit bayesian, seed 0", "hnnfit cobyla, seed 0",
                                        "hnnfit bayesian, median of 1"]
    for row, r in zip(rows, recs):
        assert row[1:5] == [f"{r['start_rmse']:.2f}", f"{r['best_early']:.2f}",
                            f"{r['best']:.2f}", "2"]
        assert row[6] == f"{r['wall_s'] / 2:.2f}"
    # no baseline and a shrunk task: no verdict, no published figures
    assert "PASS" not in text and "FAIL" not in text and "published" not in text
    # --report re-reads the same studies: the same scores
    anchor.main(["--report", "--out", str(out)])
    again = capsys.readouterr().out
    assert [row[1:5] for row in _rows(again, "| hnnfit ")] == [row[1:5] for row in rows]


def test_verdicts_against_a_baseline_of_the_same_run(anchor, tiny):
    # the report judges hnnfit against the baseline's measured scores and
    # times; a baseline record as hnn_core_optimize returns it
    _, text = tiny
    runs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    bayes, cobyla = runs
    worse = {"implementation": "hnn-core 0.6.1, NEURON 8.2.7", "solver": "bayesian",
             "n_evals": 2, "start_rmse": bayes["start_rmse"], "best_early": bayes["best"] + 1,
             "best": bayes["best"] + 1, "wall_s": 4 * bayes["wall_s"]}
    better = {**worse, "solver": "cobyla", "best": cobyla["best"] - 1,
              "best_early": cobyla["best"] - 1, "wall_s": cobyla["wall_s"]}
    lines = anchor.report(runs, [worse, better], 2)
    assert "measured in this run: bayesian wall time per evaluation, hnn-core " \
           f"{2 * bayes['wall_s']:.2f} s / hnnfit {bayes['wall_s'] / 2:.2f} s = 4.00x" in lines
    assert any(line.startswith("PASS: hnnfit Bayesian median best within 2 evaluations") for line in lines)
    assert any(line.startswith("PASS: hnnfit Bayesian median best after 2") for line in lines)
    assert any(line.startswith(f"FAIL: hnnfit COBYLA best within 2 evaluations "
                               f"{cobyla['best']:.2f}") for line in lines)
    assert "| hnn-core 0.6.1, NEURON 8.2.7 bayesian (this run) |" in "\n".join(lines)
    # published figures only as context of the full task without a baseline
    assert not any("published" in line for line in lines)
    full = anchor.report(runs, [], 30, published=True)
    assert any(line.startswith("published, not measured here") for line in full)


def test_a_missing_baseline_interpreter_is_named(anchor, tmp_path):
    missing = str(tmp_path / "nopython")
    with pytest.raises(SystemExit, match=f"--baseline-python must be an interpreter, "
                                         f"got {missing!r}"):
        anchor.run_baseline(type("Args", (), {"baseline_python": missing, "mesh": 3,
                                               "solvers": ["bayesian"], "n_evals": 2}),
                            _target(), tmp_path)


def _target():
    from hnnfit.fit.targets import read_target

    return read_target([[float(t), 1.0] for t in range(6)])


def test_design_report_compares_the_designs_by_seed(anchor):
    runs = [{"design": "lhs", "best_early": v} for v in (14.4, 14.9, 14.3)]
    runs += [{"design": "random", "best_early": v} for v in (15.4, 14.3, 14.5)]
    lines = anchor.design_report(runs, goal=14.61)
    rows = {row[0]: row for row in (_cells(line) for line in lines if line.startswith("| l")
                                    or line.startswith("| r"))}
    assert rows["lhs"][1:] == ["14.40 / 14.90 / 14.30", "14.40", "14.90", "2 of 3"]
    assert rows["random"][1:] == ["15.40 / 14.30 / 14.50", "14.50", "15.40", "2 of 3"]


def test_designs_run_the_bayesian_seeds_once_per_design(anchor, tmp_path, capsys):
    from hnnfit.fit import Study

    anchor.main(["--mesh", "3", "--tmax", "130", "--n-evals", "2", "--seeds", "0",
                 "--solvers", "bayesian", "--designs", "lhs", "random", "--quiet",
                 "--out", str(tmp_path)])
    text = capsys.readouterr().out
    recs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [r["design"] for r in recs] == ["lhs", "random"]
    designs = []
    for r in recs:
        with Study.load(r["study"], readonly=True) as study:
            designs.append(study.solver_settings["options"]["initial_design"])
    assert designs == ["lhs", "random"]
    assert [row[0] for row in _rows(text, "| lhs") + _rows(text, "| random")] == [
        "lhs", "random"]
