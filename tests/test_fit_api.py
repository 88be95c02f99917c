"""hnnfit.Study on a small (3x3) network: create, optimise, resume, export, plots,
reproducibility of the objective, and recovery of known drive parameters."""
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hnnfit import Network
from hnnfit.exceptions import StudyError
from hnnfit.fit import DipoleObjective, Parameter, ParameterSpace, Study, Target
from hnnfit.fit.assess import score_points
from hnnfit.fit.plots import convergence_data, fit_data, params_data, plot_convergence
from hnnfit.fit.runner import ProgressBar
from hnnfit.fit.objective import fit_scale
from hnnfit.network import jones_2009_model
from hnnfit.params import read_params
from hnnfit.simulation import simulate_trials

TSTOP = 40.0
TIMES = np.arange(0.0, TSTOP + 1e-9, 0.5)
TRUTH = {"evprox1.mu": 15.0, "evprox1.ampa.L5_pyramidal": 0.02}
PROX_DELAYS = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0, "L5_pyramidal": 1.0}
OBJECTIVE = {"smooth_window": 5.0, "scale": 3000.0}
# the recovery test's tolerances were measured on this solver stream (seed 0,
# random initial points)
FAST_BAYES = {"n_initial_points": 5, "acq_optimizer": "sampling", "n_points": 2000,
              "initial_design": "random"}


def make_net(mu=15.0, w_l5=0.02):
    """3x3 Jones 2009 network with one early proximal evoked drive."""
    net = jones_2009_model(mesh_shape=(3, 3))
    ampa = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.2, "L5_pyramidal": w_l5}
    net.add_evoked_drive("evprox1", mu=mu, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa=ampa, weights_nmda={k: 0.0 for k in ampa},
                         synaptic_delays=dict(PROX_DELAYS), event_seed=4)
    return net


def make_space():
    return ParameterSpace([Parameter("evprox1.mu", 8.0, 25.0),
                           Parameter("evprox1.ampa.L5_pyramidal", 0.005, 0.06, log=True)])


def synthetic_target(noise=0.01):
    """The processed dipole of TRUTH (nAm) plus Gaussian noise (fraction of its range)."""
    net = make_net()
    obj = DipoleObjective(net, Target(TIMES, np.zeros_like(TIMES)), make_space(), **OBJECTIVE)
    values = obj(TRUTH)["dipole"]
    rng = np.random.RandomState(0)
    values = values + rng.normal(0.0, noise * np.ptp(values), len(values))
    return Target(TIMES, values, source="<synthetic>")


@pytest.fixture(scope="module")
def target():
    return synthetic_target()


@pytest.fixture(scope="module")
def cobyla_study(tmp_path_factory, target):
    """An uninterrupted 6-evaluation COBYLA study started away from the truth."""
    path = tmp_path_factory.mktemp("study") / "full.sqlite"
    study = Study.create(path, make_net(mu=11.0, w_l5=0.035), target, make_space(),
                         objective=OBJECTIVE, solver="cobyla", seed=0)
    study.optimize(6, progress=False)
    return study


def _rows(study):
    return [(r["params"], r["value"], r["status"]) for r in study.storage.rows()]


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("solver,options", [("cobyla", {}), ("bayesian", FAST_BAYES)])
def test_resumed_study_proposes_what_an_uninterrupted_one_would(tmp_path, target, solver,
                                                                options):
    net = make_net(mu=11.0, w_l5=0.035)
    full = Study.create(tmp_path / "full.sqlite", net, target, make_space(),
                        objective=OBJECTIVE, solver=solver, solver_options=options)
    full.optimize(7, progress=False)

    part = Study.create(tmp_path / "part.sqlite", net, target, make_space(),
                        objective=OBJECTIVE, solver=solver, solver_options=options)
    summary = part.optimize(3, progress=False)
    assert summary.n_evaluated == 3 and part.n_complete == 3
    part.close()

    again = Study.load(tmp_path / "part.sqlite")
    # everything is rebuilt from the file alone
    assert again.net == net
    assert again.space == make_space()
    assert again.target.hash() == target.hash()
    assert again.objective.settings() == full.objective.settings()
    assert again.solver_settings == full.solver_settings
    assert again.x0 == make_space().current_values(net)
    summary = again.optimize(7, progress=False)
    assert summary.n_replayed == 3 and summary.n_evaluated == 4
    assert again.n_complete == 7 and again.n_failed == 0
    # same points, bit-identical values, in the same order
    assert _rows(again) == _rows(full)
    assert again.best_value == full.best_value
    assert again.best_params == full.best_params
    evals = again.evaluations
    assert list(evals["evprox1.mu"]) == [r[0]["evprox1.mu"] for r in _rows(full)]
    # the budget is a total: asking again for 7 runs nothing
    assert again.optimize(7, progress=False).n_evaluated == 0
    assert again.n_complete == 7


def test_progress_line_and_callback(tmp_path, target, capsys):
    study = Study.create(tmp_path / "p.sqlite", make_net(mu=11.0), target, make_space(),
                         objective=OBJECTIVE, solver="cobyla")
    seen = []
    study.optimize(2, callback=seen.append)
    err = capsys.readouterr().err
    assert "2/2" in err and "best" in err and "ETA" in err
    assert [r["status"] for r in seen] == ["complete", "complete"]
    study.optimize(3, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_is_a_callback_writing_one_line_per_evaluation():
    out = io.StringIO()
    bar = ProgressBar(3, 1, best=2.0, stream=out)
    bar({"status": "complete", "value": 1.5})
    bar({"status": "failed", "value": None})
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[" + "#" * 16 + "-" * 8 + "] 2/3 eval  best 1.5  elapsed ")
    assert lines[1].startswith("[" + "#" * 24 + "] 3/3 eval  best 1.5 failed 1  elapsed ")
    assert lines[1].endswith("ETA 0:00")
    # disabled, it still counts but writes nothing
    quiet = ProgressBar(2, stream=out, enabled=False)
    quiet({"status": "complete", "value": 3.0})
    assert (quiet.n_done, quiet.best) == (1, 3.0)
    assert len(out.getvalue().splitlines()) == 2


# --------------------------------------------------------------------------- refusals
def test_create_refuses_a_mismatching_study(tmp_path, target):
    path = tmp_path / "s.sqlite"
    net = make_net()
    Study.create(path, net, target, make_space(), objective=OBJECTIVE).close()
    with pytest.raises(StudyError, match="already exists"):
        Study.create(path, net, target, make_space(), objective=OBJECTIVE)
    other_target = Target(TIMES, target.values + 1.0)
    with pytest.raises(StudyError, match="different target"):
        Study.create(path, net, other_target, make_space(), objective=OBJECTIVE,
                     exist_ok=True)
    other_space = [("evprox1.mu", 8.0, 26.0),
                   ("evprox1.ampa.L5_pyramidal", 0.005, 0.06, {"log": True})]
    with pytest.raises(StudyError, match="different space"):
        Study.create(path, net, target, other_space, objective=OBJECTIVE, exist_ok=True)
    with pytest.raises(StudyError, match="different objective"):
        Study.create(path, net, target, make_space(),
                     objective=dict(OBJECTIVE, smooth_window=10.0), exist_ok=True)
    # the same definition (space given as tuples) reopens it
    same_space = [("evprox1.mu", 8.0, 25.0),
                  ("evprox1.ampa.L5_pyramidal", 0.005, 0.06, {"log": True})]
    with Study.create(path, net, target, same_space, objective=OBJECTIVE,
                      exist_ok=True) as study:
        assert study.n_complete == 0


def test_create_names_the_datasets_for_a_target_it_cannot_find(tmp_path):
    path = tmp_path / "s.sqlite"
    expected = (r"target must be a Target, a data file or one of the datasets "
                r"\(S1_SupraT, .*yes_trial_S1_ERP_all_avg\), got 'S1_Supra'")
    with pytest.raises(ValueError, match=expected):
        Study.create(path, make_net(), "S1_Supra", make_space(), objective=OBJECTIVE)
    assert not path.exists()


def test_load_refuses_non_study_and_newer_schema_without_touching_the_file(tmp_path,
                                                                           target):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database\n" * 100)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (x INTEGER)")
    conn.execute("INSERT INTO things VALUES (1)")
    conn.commit()
    conn.close()
    newer = tmp_path / "newer.sqlite"
    Study.create(newer, make_net(), target, make_space(), objective=OBJECTIVE).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE hnnfit_schema SET version = version + 1")
    conn.commit()
    conn.close()
    for path, match in ((text, "not an hnnfit study"), (other, "not an hnnfit study"),
                        (newer, "newer than this hnnfit")):
        before = path.read_bytes()
        with pytest.raises(StudyError, match=match):
            Study.load(path)
        assert path.read_bytes() == before
        assert not Path(str(path) + "-wal").exists() or path == newer


# --------------------------------------------------------------------------- results
def test_optimize_records_its_budget_for_resume_and_list(cobyla_study, tmp_path):
    from hnnfit.fit import list_studies
    from hnnfit.fit.runner import BUDGET_KEY, JOBS_KEY

    meta = cobyla_study.storage.metadata
    assert (meta[BUDGET_KEY], meta[JOBS_KEY]) == ("6", "1")
    copy = tmp_path / "copy.sqlite"
    with sqlite3.connect(cobyla_study.path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    assert list(list_studies(tmp_path)["state"]) == ["done"]
    with Study.load(copy) as study:
        # a budget already reached runs nothing and leaves the recorded one
        summary = study.optimize(4, n_jobs=2, progress=False)
        assert summary.n_evaluated == 0 and study.n_complete == 6
        assert study.storage.metadata[JOBS_KEY] == "1"
        assert study.storage.metadata[BUDGET_KEY] == "6"
        # a run towards 8 that stopped before its first evaluation
        study.storage.set_metadata(BUDGET_KEY, "8")
    listed = list_studies(tmp_path).iloc[0]
    assert (listed["state"], listed["evaluations"], listed["budget"]) == ("stopped", 6, 8)


def test_bad_optimize_and_seed_arguments_are_refused_before_anything_changes(
        cobyla_study, tmp_path):
    copy = tmp_path / "copy.sqlite"
    with sqlite3.connect(cobyla_study.path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with Study.load(copy) as study:
        for kwargs, exc, match in [
                (dict(backend="threads"), ValueError, "backend"),
                (dict(scheduler="tcp://127.0.0.1:1"), ValueError,
                 "scheduler is only used with backend='dask'"),
                (dict(callback=5), TypeError, "callback must be callable or None, got int 5")]:
            with pytest.raises(exc, match=match):
                study.optimize(8, progress=False, **kwargs)
        assert study.n_complete == 6
        for call in (lambda: study.score_held_out(50), lambda: study.rescore(50),
                     lambda: study.error_budget(50)):
            with pytest.raises(TypeError, match=r"seeds must be a sequence of trial seeds, "
                                                r"e.g. \[50\], got the int 50"):
                call()
        with pytest.raises(ValueError, match="k must be >= 1, got 0"):
            study.error_budget([200, 201], k=0)
    with Study.load(copy) as study:
        assert study.storage.metadata["cli_n_evals"] == "6"
        assert study.n_complete == 6


def test_explicit_start_point_outside_the_bounds_is_refused(tmp_path, target):
    path = tmp_path / "x0.sqlite"
    with pytest.raises(ValueError, match=r"'evprox1.mu' must be within \[.*got 99.0"):
        Study.create(path, make_net(), target, make_space(), objective=OBJECTIVE,
                     solver="cobyla", x0={"evprox1.mu": 99.0, "evprox1.ampa.L5_pyramidal": 0.02})
    assert not path.exists()
    inside = {"evprox1.mu": 12.0, "evprox1.ampa.L5_pyramidal": 0.02}
    with Study.create(path, make_net(), target, make_space(), objective=OBJECTIVE,
                      solver="cobyla", x0=inside) as study:
        assert study.x0 == pytest.approx(inside)


def test_best_net_is_the_network_with_the_best_parameters(cobyla_study):
    best = cobyla_study.best_params
    net = cobyla_study.best_net()
    assert net == make_space().apply(make_net(mu=11.0, w_l5=0.035), best)
    assert net.external_drives["evprox1"]["dynamics"]["mu"] == best["evprox1.mu"]
    assert cobyla_study.best_value == min(r["value"] for r in cobyla_study.storage.rows())
    assert cobyla_study.net.external_drives["evprox1"]["dynamics"]["mu"] == 11.0


def test_polish_starts_from_the_best_point_with_its_own_space_and_trials(cobyla_study,
                                                                        tmp_path):
    best = cobyla_study.best_params
    n_rows = len(cobyla_study.storage.rows())
    path = tmp_path / "polish.sqlite"
    polish = cobyla_study.create_polish(
        path, overrides={"evprox1.mu": (10.0, 20.0),
                         "evprox1.nmda.L5_pyramidal": (0.0, 0.05)},
        objective={"seeds": [1000, 1001], "resample": True},
        solver_options={"sigma0": 0.1, "popsize": 2})
    # the range replaced keeps its place; the absent synapse is appended and
    # starts from the network's 0 uS
    assert polish.space.names == ["evprox1.mu", "evprox1.ampa.L5_pyramidal",
                                  "evprox1.nmda.L5_pyramidal"]
    assert (polish.space["evprox1.mu"].low, polish.space["evprox1.mu"].high) == (10.0, 20.0)
    assert polish.x0 == {**best, "evprox1.nmda.L5_pyramidal": 0.0}
    assert polish.net == cobyla_study.best_net()
    assert polish.objective.seeds == [1000, 1001] and polish.objective.n_trials == 2
    assert polish.objective.resample
    assert polish.objective.smooth_window == cobyla_study.objective.smooth_window
    assert polish.solver_settings["name"] == "cma"
    assert polish.solver_settings["seed"] == cobyla_study.solver_settings["seed"]
    assert str(cobyla_study.path) in polish.description
    polish.optimize(4, progress=False)
    rows = polish.storage.rows()
    assert [r["seeds"] for r in rows] == [[1000, 1001]] * 2 + [[1002, 1003]] * 2
    # the first CMA-ES batch is centred on the start point: the polish
    # searches around the best point, not anywhere in the space
    assert all(abs(r["params"]["evprox1.mu"] - best["evprox1.mu"]) < 5.0 for r in rows)
    polish.close()
    # the polished study is only read
    assert len(cobyla_study.storage.rows()) == n_rows
    # reopening the same polish resumes it; other settings are refused
    again = cobyla_study.create_polish(
        path, overrides={"evprox1.mu": (10.0, 20.0),
                         "evprox1.nmda.L5_pyramidal": (0.0, 0.05)},
        objective={"seeds": [1000, 1001], "resample": True},
        solver_options={"sigma0": 0.1, "popsize": 2}, exist_ok=True)
    assert again.n_complete == 4
    again.close()
    with pytest.raises(StudyError):
        cobyla_study.create_polish(path, exist_ok=True)

    # only: the other parameter is fixed at the best value in the network
    only = cobyla_study.create_polish(tmp_path / "only.sqlite", only=["evprox1.mu"],
                                      solver="cobyla", objective={"n_trials": 2})
    assert only.space.names == ["evprox1.mu"] and only.x0 == {"evprox1.mu": best["evprox1.mu"]}
    w = only.net.external_drives["evprox1"]["weights_ampa"]["L5_pyramidal"]
    assert w == best["evprox1.ampa.L5_pyramidal"]
    assert only.objective.seeds == [0, 1]
    only.close()
    # a whole drive's parameters by its name; dropping one fixes it too
    whole = cobyla_study.create_polish(tmp_path / "drive.sqlite", only=["evprox1"])
    assert whole.space.names == cobyla_study.space.names
    whole.close()
    dropped = cobyla_study.create_polish(tmp_path / "drop.sqlite",
                                         overrides={"evprox1.mu": None})
    assert dropped.space.names == ["evprox1.ampa.L5_pyramidal"]
    assert dropped.net.external_drives["evprox1"]["dynamics"]["mu"] == best["evprox1.mu"] != 11.0
    dropped.close()

    for kwargs, err, match in [
            ({"only": ["evprox9", "evprox1.mu"]}, ValueError,
             r"only must name parameters or drives .* got 'evprox9'"),
            ({"only": "evprox1"}, TypeError, "only must be a sequence"),
            ({"overrides": {"evprox1.sigma": None}}, ValueError,
             "override 'evprox1.sigma' must name a parameter of the space of full.sqlite"),
            ({"overrides": {"evprox1.mu": (1.0,)}}, ValueError,
             r"override 'evprox1.mu' must be \(low, high\)"),
            ({"overrides": {"evprox1.ampa.L9_cell": (0.0, 1.0)}}, ValueError, "L9_cell"),
            ({"objective": {"n_trails": 3}}, ValueError,
             "objective must only hold DipoleObjective settings"),
            ({"objective": {"seeds": [1, 2], "n_trials": 3}}, ValueError,
             r"seeds must have n_trials \(3\) entries, got 2")]:
        with pytest.raises(err, match=match):
            cobyla_study.create_polish(tmp_path / "bad.sqlite", **kwargs)
        assert not (tmp_path / "bad.sqlite").exists()


def test_pattern_polish_from_a_given_start_point_resumes_exactly(cobyla_study, tmp_path):
    best = cobyla_study.best_params
    kwargs = {"solver": "pattern", "start": {"evprox1.mu": 12.5},
              "solver_options": {"step": 0.1, "line": [1.0]},
              "objective": {"seeds": [5, 6]}}
    full = cobyla_study.create_polish(tmp_path / "full.sqlite", **kwargs)
    # the start replaces the best value of the one parameter it names
    assert full.x0 == {**best, "evprox1.mu": 12.5}
    full.optimize(7, progress=False)
    rows = full.storage.rows()
    assert rows[0]["params"] == full.x0 and all(r["seeds"] == [5, 6] for r in rows)
    # one stencil (the centre and a step of 1.7 ms or 0.108 log10 units
    # either side), then the line search along the gradient
    assert [r["params"]["evprox1.mu"] for r in rows[:5]] == pytest.approx(
        [12.5, 14.2, 10.8, 12.5, 12.5])
    # after the first iteration (6 points) the centre is its best point;
    # the seventh opens the next stencil
    assert full.solver_.centre_value == min(r["value"] for r in rows[:6])
    assert full.solver_.centre == rows[int(np.argmin([r["value"] for r in rows[:6]]))]["params"]
    full.close()

    part = cobyla_study.create_polish(tmp_path / "part.sqlite", **kwargs)
    part.optimize(4, progress=False)
    part.close()
    part = cobyla_study.create_polish(tmp_path / "part.sqlite", exist_ok=True, **kwargs)
    summary = part.optimize(7, progress=False)
    assert summary.n_evaluated == 3
    assert [(r["params"], r["value"]) for r in part.storage.rows()] == \
        [(r["params"], r["value"]) for r in rows]
    part.close()

    for start, err, match in [
            ({"evprox9.mu": 10.0}, ValueError,
             r"start must give values of the parameters of full.sqlite .* got 'evprox9.mu'"),
            ({"evprox1.mu": "late"}, TypeError, r"start\['evprox1.mu'\] must be a number"),
            ([12.5], TypeError, "start must be an instance of dict, got list")]:
        with pytest.raises(err, match=match):
            cobyla_study.create_polish(tmp_path / "bad.sqlite", start=start)
        assert not (tmp_path / "bad.sqlite").exists()


def test_polish_needs_a_complete_evaluation(tmp_path, target):
    empty = Study.create(tmp_path / "empty.sqlite", make_net(), target, make_space(),
                         objective=OBJECTIVE, solver="cobyla")
    with pytest.raises(StudyError, match="has no complete evaluation to polish"):
        empty.create_polish(tmp_path / "polish.sqlite")
    assert not (tmp_path / "polish.sqlite").exists()
    empty.close()


def test_export_reproduces_the_best_network(cobyla_study, tmp_path):
    path = tmp_path / "best.json"
    cobyla_study.export(path)
    with open(path) as f:
        flat = json.load(f)
    best = cobyla_study.best_params
    assert flat["t_evprox_1"] == best["evprox1.mu"]
    assert flat["gbar_evprox_1_L5Pyr_ampa"] == best["evprox1.ampa.L5_pyramidal"]
    rebuilt = Network(read_params(path), add_drives_from_params=True, mesh_shape=(3, 3))
    best_net = cobyla_study.best_net()
    assert list(rebuilt.external_drives) == ["evprox1"]
    assert rebuilt.gid_ranges == best_net.gid_ranges
    dpl_best = simulate_trials(best_net, TSTOP, 0.025, [0, 1])
    dpl_file = simulate_trials(rebuilt, TSTOP, 0.025, [0, 1])
    assert rebuilt.external_drives["evprox1"]["events"] == \
        best_net.external_drives["evprox1"]["events"]
    for a, b in zip(dpl_best, dpl_file):
        for layer in ("agg", "L2", "L5"):
            assert np.array_equal(a.data[layer], b.data[layer])


def test_plots_render_to_png(cobyla_study, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    figs = {"convergence": cobyla_study.plot_convergence(show=False),
            "fit": cobyla_study.plot_fit(show=False),
            "params": cobyla_study.plot_params(show=False)}
    assert len(figs["fit"].axes[0].get_lines()) == 3   # target, initial, best
    assert len(figs["params"].axes) == 2
    for name, fig in figs.items():
        out = tmp_path / f"{name}.png"
        fig.savefig(out)
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # the recorded dipoles were used: the best curve is the best row's dipole
    best_row = cobyla_study.storage.best()
    line = figs["fit"].axes[0].get_lines()[2]
    assert np.array_equal(line.get_ydata(), np.asarray(best_row["info"]["dipole"]))


def test_plot_data_are_the_study_s_evaluations(cobyla_study):
    import matplotlib.pyplot as plt

    rows = cobyla_study.storage.rows()
    assert [r["status"] for r in rows] == ["complete"] * 6
    values = [r["value"] for r in rows]
    conv = convergence_data(cobyla_study)
    assert list(conv["evaluation"]) == [1, 2, 3, 4, 5, 6]
    assert list(conv["value"]) == values
    assert list(conv["best"]) == list(np.minimum.accumulate(values))
    assert len(conv["failed"]) == 0
    par = params_data(cobyla_study)
    assert list(par["values"]["evprox1.mu"]) == [r["params"]["evprox1.mu"] for r in rows]
    assert par["complete"].all() and par["best"] == cobyla_study.best_params
    fit = fit_data(cobyla_study)
    assert fit["best_value"] == cobyla_study.best_value == min(values)
    np.testing.assert_array_equal(fit["best"], cobyla_study.storage.best()["info"]["dipole"])
    np.testing.assert_array_equal(fit["target"], cobyla_study.target.values)
    # the convergence plot draws on the axes it is given
    fig, ax = plt.subplots()
    assert plot_convergence(cobyla_study, ax=ax, show=False) is fig
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), conv["best"])
    plt.close("all")


def test_score_held_out_scores_on_other_seeds(cobyla_study):
    out = cobyla_study.score_held_out([5, 6])
    assert out["seeds"] == [5, 6] and out["n_trials"] == 2
    assert out["fit_value"] == cobyla_study.best_value
    assert np.isfinite(out["value"]) and out["value"] != cobyla_study.best_value


def test_deprecated_validate_warns_and_returns_what_score_held_out_does(cobyla_study):
    with pytest.warns(DeprecationWarning, match="score_held_out"):
        old = cobyla_study.validate([5, 6], dt=0.05)
    new = cobyla_study.score_held_out([5, 6], dt=0.05)
    assert old["value"] == new["value"] and old["fit_value"] == new["fit_value"]
    np.testing.assert_array_equal(old["dipole"], new["dipole"])


def test_deprecated_trials_warns_and_returns_the_evaluations(cobyla_study):
    import pandas as pd

    with pytest.warns(DeprecationWarning, match="Study.evaluations"):
        old = cobyla_study.trials
    new = cobyla_study.evaluations
    assert len(new) == 6 and list(new["status"]) == ["complete"] * 6
    pd.testing.assert_frame_equal(old, new)


def test_score_points_gives_the_objective_s_values(cobyla_study):
    objective = cobyla_study.objective
    points = [dict(TRUTH), {"evprox1.mu": 20.0, "evprox1.ampa.L5_pyramidal": 0.01}]
    direct = [objective(p, [5, 6])["value"] for p in points]
    assert direct[0] != direct[1]
    np.testing.assert_array_equal(score_points(objective, points, [5, 6]), direct)
    # in two worker processes: the same values, in the order given
    np.testing.assert_array_equal(score_points(objective, points, [5, 6], n_jobs=2), direct)
    # a point the objective cannot simulate is NaN, the others still scored
    bad = {"evprox1.mu": 20.0}
    values = score_points(objective, [bad, points[0]], [5, 6])
    assert np.isnan(values[0]) and values[1] == direct[0]
    with pytest.raises(TypeError, match="points must be dicts"):
        score_points(objective, [[15.0, 0.02]], [5])
    with pytest.raises(TypeError, match="a sequence of trial seeds"):
        score_points(objective, points, 5)
    with pytest.raises(ValueError, match="backend"):
        score_points(objective, points, [5], backend="threads")


def test_held_out_trials_at_another_time_step(cobyla_study):
    # a fit that searched at a coarse step is judged at a fine one (and back)
    coarse = cobyla_study.score_held_out([5, 6], dt=0.05)
    assert coarse["value"] == pytest.approx(cobyla_study.objective.with_settings(
        dt=0.05).score_held_out(cobyla_study.best_params, [5, 6])["value"], rel=1e-12)
    fine = cobyla_study.score_held_out([5, 6])
    assert coarse["value"] != pytest.approx(fine["value"], rel=1e-6)
    budget = cobyla_study.error_budget([5, 6], k=2, dt=0.05)
    assert budget["expected"] == pytest.approx(coarse["value"], rel=1e-9)
    assert cobyla_study.objective.dt == 0.025
    with pytest.raises(ValueError, match="dt"):
        cobyla_study.error_budget([5, 6], dt=0.0)


def test_error_budget_on_held_out_trials(cobyla_study):
    # k defaults to the objective's n_trials (1): single held-out trials
    out = cobyla_study.error_budget([5, 6, 7])
    assert out["k"] == 1 and out["n_trials"] == 3 and out["seeds"] == [5, 6, 7]
    assert out["var"] > 0.0
    # three trials in averages of three: what score_held_out scores on them
    three = cobyla_study.error_budget([5, 6, 7], k=3)
    held_out = cobyla_study.score_held_out([5, 6, 7])
    assert three["expected"] == pytest.approx(held_out["value"], rel=1e-9)
    assert three["expected"] < out["expected"]
    # trials simulated in two workers: the same numbers
    two = cobyla_study.error_budget([5, 6, 7], k=3, n_jobs=2)
    np.testing.assert_array_equal(two["var_t"], three["var_t"])
    assert two["expected"] == three["expected"]
    # another point, and the fit's own trials refused
    other = dict(cobyla_study.best_params, **{"evprox1.mu": 18.0})
    assert cobyla_study.error_budget([5, 6], params=other)["bias2"] != pytest.approx(
        cobyla_study.error_budget([5, 6])["bias2"])
    with pytest.raises(ValueError, match=r"did not use \(its seeds are 0\), got \[0\]"):
        cobyla_study.error_budget([0, 5])
    with pytest.raises(ValueError, match="seeds must hold at least 2 seeds, got 1"):
        cobyla_study.error_budget([5])


def test_rescore_scores_the_leading_points_on_other_seeds(cobyla_study):
    table = cobyla_study.rescore([5, 6], top=3, n_jobs=2)
    evals = cobyla_study.evaluations.sort_values("value")
    # the three best evaluations, each scored again by the objective itself
    assert sorted(table["id"]) == sorted(evals["id"].head(3).astype(int))
    assert list(table["rescored"]) == sorted(table["rescored"])
    names = make_space().names
    for _, row in table.iterrows():
        params = {n: float(row[n]) for n in names}
        assert row["value"] == evals.set_index("id").loc[row["id"], "value"]
        assert row["rescored"] == cobyla_study.objective.score_held_out(params, [5, 6])["value"]
    # nothing was written to the study
    assert len(cobyla_study.evaluations) == len(evals)
    with pytest.raises(ValueError, match="seeds must hold at least 1 seed, got 0"):
        cobyla_study.rescore([])
    with pytest.raises(ValueError, match="top"):
        cobyla_study.rescore([5], top=0)



def test_resampled_study_runs_each_generation_on_new_trials(tmp_path, target):
    # CMA-ES with new seeds per generation: stored with the objective, used on
    # resume, reported by used_seeds, and refused as re-scoring seeds
    objective = dict(OBJECTIVE, seeds=[20], resample=True)
    path = tmp_path / "resampled.sqlite"
    study = Study.create(path, make_net(mu=11.0, w_l5=0.035), target, make_space(),
                         objective=objective, solver="cma",
                         solver_options={"popsize": 2, "sigma0": 0.2}, seed=0)
    study.optimize(4, progress=False)
    rows = study.storage.rows()
    assert [(r["batch"], r["seeds"]) for r in rows] == [(0, [20]), (0, [20]), (1, [21]),
                                                       (1, [21])]
    for r in rows:
        assert r["value"] == study.objective.score_held_out(r["params"], r["seeds"])["value"]
    assert study.used_seeds() == [20, 21]
    means = study.solver_.means
    assert len(means) == 2
    study.close()
    again = Study.load(path)
    assert again.objective.resample and again.objective.settings()["resample"] is True
    # the solver's state comes back from the log alone
    assert again.replay_solver().means == means
    # and its averaged mean can be written as a parameter file
    mean = again.replay_solver().averaged_mean()
    written = again.export(tmp_path / "mean.json", mean)
    assert written["t_evprox_1"] == pytest.approx(mean["evprox1.mu"], rel=1e-12)
    with pytest.raises(ValueError, match="missing 'evprox1.ampa.L5_pyramidal'"):
        again.export(tmp_path / "bad.json", {"evprox1.mu": 12.0})
    with pytest.raises(ValueError, match="evprox1.mu"):
        again.export(tmp_path / "bad.json", dict(mean, **{"evprox1.mu": 99.0}))
    assert not (tmp_path / "bad.json").exists()
    summary = again.optimize(6, progress=False)
    assert summary.n_replayed == 4 and summary.n_evaluated == 2
    assert again.storage.rows()[-1]["seeds"] == [22]
    with pytest.raises(ValueError, match=r"its seeds are 20-22\), got \[21\]"):
        again.rescore([21, 30])
    assert len(again.rescore([30], top=1)) == 1
    # the pooled waveform model: 2 parameters have 5 features, which 6
    # evaluations in 3 batches cannot fit; 14 in 7 batches can
    with pytest.raises(ValueError, match="needs more than 5 evaluations beyond one per "
                                         "group, got 3"):
        again.surrogate_point()
    again.optimize(14, progress=False)
    point, rmse = again.surrogate_point(radius=1.0)
    assert set(point) == set(again.space.names) and np.isfinite(rmse) and rmse > 0
    for p in again.space:
        assert p.low <= point[p.name] <= p.high
    # what it predicts is a waveform near those evaluated: not far off the
    # RMSE of an evaluation at that point
    value = again.objective.score_held_out(point, [40])["value"]
    assert abs(value - rmse) < 0.5 * max(value, rmse)
    again.close()
    with pytest.raises(TypeError, match="resample"):
        Study.create(tmp_path / "bad.sqlite", make_net(), target, make_space(),
                     objective=dict(OBJECTIVE, resample="yes"), solver="cma")
    fitted = Study.create(tmp_path / "fitscale.sqlite", make_net(), target, make_space(),
                          objective=dict(OBJECTIVE, scale="fit"), solver="cma")
    with pytest.raises(ValueError, match="surrogate_point needs a fixed scale"):
        fitted.surrogate_point()
    fitted.close()


def test_study_with_trial_groups_stores_the_mean_of_the_groups(tmp_path, target):
    # two trials scored one by one: the logged value is the mean of the two
    # single-trial scores, and the setting survives a reload
    objective = dict(OBJECTIVE, n_trials=2, seeds=[3, 7], group_size=1)
    study = Study.create(tmp_path / "groups.sqlite", make_net(mu=11.0, w_l5=0.035), target,
                         make_space(), objective=objective, solver="cobyla", seed=0)
    study.optimize(2, progress=False)
    study.close()
    again = Study.load(tmp_path / "groups.sqlite")
    assert again.objective.group_size == 1
    row = again.evaluations.iloc[-1]
    params = {name: float(row[name]) for name in make_space().names}
    singles = [again.objective.score_held_out(params, [s])["value"] for s in (3, 7)]
    assert row["value"] == pytest.approx(np.mean(singles), rel=1e-12)
    both = DipoleObjective(make_net(), target, make_space(), n_trials=2, seeds=[3, 7],
                           **OBJECTIVE)(params)["value"]
    assert row["value"] > both
    # held-out seeds are scored in groups of one too
    assert len(again.score_held_out([5, 6])["group_values"]) == 2


# --------------------------------------------------------------------------- reproducibility
def _objective():
    return DipoleObjective(make_net(), synthetic_target(), make_space(), n_trials=2,
                           seeds=[3, 7], **OBJECTIVE)


POINT = {"evprox1.mu": 16.5, "evprox1.ampa.L5_pyramidal": 0.025}


def _score_in_worker(point):
    return os.getpid(), _objective()(point)["value"]


def test_objective_is_bit_identical_in_process_workers_and_new_interpreters():
    obj = _objective()
    first = obj(POINT)
    second = obj(POINT)
    assert first["value"] == second["value"]
    assert np.array_equal(first["dipole"], second["dipole"])
    assert first["seeds"] == [3, 7]

    from joblib import Parallel, delayed

    results = Parallel(n_jobs=2, backend="loky")(
        delayed(_score_in_worker)(POINT) for _ in range(2))
    for pid, value in results:
        assert pid != os.getpid()
        assert value == first["value"]

    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_fit_api import _objective, POINT
        print(_objective()(POINT)["value"].hex())
    """)
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=True, timeout=300)
        assert float.fromhex(out.stdout.strip().splitlines()[-1]) == first["value"]

    other = obj(POINT, seeds=[4, 8])
    assert other["value"] != first["value"]
    assert not np.array_equal(other["dipole"], first["dipole"])


def _brute_force_scale(sim, target, weights):
    lo, hi = 0.0, 10.0 * max(1.0, float(np.max(np.abs(target))) / float(np.max(np.abs(sim))))
    for _ in range(60):
        grid = np.linspace(lo, hi, 201)
        cost = [np.sum(weights * (s * sim - target) ** 2) for s in grid]
        i = int(np.argmin(cost))
        step = grid[1] - grid[0]
        lo, hi = max(0.0, grid[i] - step), grid[i] + step
        if step < 1e-10:
            break
    return grid[i]


def test_fit_scale_matches_brute_force():
    rng = np.random.RandomState(1)
    t = np.linspace(0.0, 1.0, 300)
    sim = np.sin(6 * t) + 0.1 * rng.randn(len(t))
    for true_scale in (0.37, 5.0, 1234.5):
        target = true_scale * np.sin(6 * t) + 0.2 * true_scale * rng.randn(len(t))
        for weights in (np.ones_like(t), rng.uniform(0.0, 2.0, len(t))):
            s = fit_scale(sim, target, weights)
            assert abs(s - _brute_force_scale(sim, target, weights)) <= 1e-6 * max(1.0, s)
    # anti-correlated data: the best non-negative factor is 0
    assert fit_scale(sim, -sim) == 0.0
    assert _brute_force_scale(sim, -sim, np.ones_like(t)) <= 1e-6


def test_fitted_scale_of_a_simulation_matches_brute_force(target):
    obj = DipoleObjective(make_net(), target, make_space(), smooth_window=5.0, scale="fit")
    res = obj(POINT)
    raw = res["dipole"] / res["scale"]
    brute = _brute_force_scale(raw, target.values, np.ones_like(raw))
    assert abs(res["scale"] - brute) <= 1e-6 * res["scale"]
    assert res["value"] == pytest.approx(
        np.sqrt(np.mean((brute * raw - target.values) ** 2)), rel=1e-9)


# --------------------------------------------------------------------------- recovery
def test_bayesian_fit_recovers_known_drive_parameters(tmp_path, target):
    """A 25-evaluation Bayesian fit of a synthetic target (1% noise).

    Tolerances: mu within 0.5 ms (the target's sampling step, and where the
    objective's valley is flat at this noise level); the L5 pyramidal AMPA
    weight within 25% (a 3x3 network's dipole changes by only about the noise
    level for a 25% weight change); the best RMSE below 5% of the target's
    range (the truth itself scores about 1% of it, the noise).
    """
    study = Study.create(tmp_path / "rec.sqlite", make_net(mu=11.0, w_l5=0.035), target,
                         make_space(), objective=OBJECTIVE, solver="bayesian",
                         solver_options=FAST_BAYES, seed=0)
    study.optimize(25, progress=False)
    best = study.best_params
    assert abs(best["evprox1.mu"] - TRUTH["evprox1.mu"]) <= 0.5
    rel = abs(best["evprox1.ampa.L5_pyramidal"] / TRUTH["evprox1.ampa.L5_pyramidal"] - 1)
    assert rel <= 0.25
    assert study.best_value <= 0.05 * np.ptp(target.values)
    # the start point was far off
    first = study.storage.rows()[0]
    assert first["value"] > 5 * study.best_value


def test_parallel_study_records_the_values_a_sequential_evaluation_gives(tmp_path, target):
    study = Study.create(tmp_path / "par.sqlite", make_net(mu=11.0), target, make_space(),
                         objective=OBJECTIVE, solver="bayesian", solver_options=FAST_BAYES)
    summary = study.optimize(4, n_jobs=2, progress=False)
    assert summary.n_complete == 4 and summary.n_failed == 0
    rows = study.storage.rows()
    # pipelined: batch is the point's index, position the points pending
    # when it was proposed (two in flight at once)
    assert sorted((r["batch"], r["position"]) for r in rows) == [(0, 0), (1, 1), (2, 1),
                                                                 (3, 1)]
    for row in rows[1:3]:
        assert study.objective(row["params"])["value"] == row["value"]


def test_objective_validate_is_a_deprecated_name_of_score_held_out(cobyla_study):
    point = cobyla_study.best_params
    with pytest.warns(DeprecationWarning, match="score_held_out"):
        old = cobyla_study.objective.validate(point, [5])
    assert old["value"] == cobyla_study.objective.score_held_out(point, [5])["value"]
