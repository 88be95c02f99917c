"""The ``hnnfit`` command: every subcommand on a small (3x3) network, and bad input.

The target of the fits is the dipole of a 3x3 network simulated by
``hnnfit simulate`` (40 ms), so each evaluation takes about a second.
"""
import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from hnnfit import cli
from hnnfit._resources import data_dir
from hnnfit.config import build_fit, load_config
from hnnfit.demo import demo_metadata
from hnnfit.dipole import read_dipole
from hnnfit.fit.runner import BUDGET_KEY, STAGE_EVALS_KEY
from hnnfit.fit.study import Study
from hnnfit.network import Network
from hnnfit.params import read_params
from hnnfit.sysinfo import machine_summary, sys_info

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TSTOP = 40.0


def run(argv, capsys):
    """Run the command in-process; return (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def toml_text(sections):
    """A TOML file from {section: {key: value}} (values given as TOML text)."""
    lines = []
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
        lines.append("")
    return "\n".join(lines)


def base_sections(target):
    return {
        "network": {"params": '"default.json"', "mesh_shape": "[3, 3]"},
        "target": {"file": f'"{target}"', "tmin": "0.0", "tmax": str(TSTOP),
                   "columns": '["agg"]'},
        "objective": {"n_trials": "1", "seeds": "[0]", "smooth_window": "10.0",
                      "scale": "3000.0", "metric": '"rmse"'},
        "space": {"evprox1.mu": "[20.0, 35.0]",
                  '"evprox1.sigma"': "{ low = 1.0, high = 6.0, log = true }"},
        "solver": {"name": '"bayesian"', "seed": "0",
                   "options": "{ n_initial_points = 2 }"},
        "run": {"n_evals": "3", "n_jobs": "1"},
    }


def write_config(path, sections):
    path.write_text(toml_text(sections))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A simulated 3x3 target, a config fitting it, and a 3-evaluation study."""
    root = tmp_path_factory.mktemp("cli")
    target = root / "target.txt"
    status = cli.main(["simulate", "default.json", "--out", str(target), "--tstop",
                       str(TSTOP), "--mesh", "3", "3", "--smooth", "10", "--scale", "3000"])
    assert status == 0
    config = write_config(root / "small.toml", base_sections(target.name))
    study = root / "small.sqlite"
    assert cli.main(["fit", str(config), "--study", str(study)]) == 0
    return {"root": root, "target": target, "config": config, "study": study}


@pytest.fixture
def study_copy(small, tmp_path):
    path = tmp_path / "copy.sqlite"
    shutil.copy(small["study"], path)
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _direct_dipoles(n_trials, params=None, tstop=TSTOP):
    """Trials of the 3x3 default network (drives of ``default.json``) simulated
    through the API, optionally with drive timings set (``{'evprox1.mu': ms}``)."""
    from hnnfit import jones_2009_model, simulate_dipole

    net = jones_2009_model(read_params("default.json"), add_drives_from_params=True,
                           mesh_shape=(3, 3))
    for name, value in (params or {}).items():
        drive, key = name.split(".")
        net.external_drives[drive]["dynamics"][key] = value
    return simulate_dipole(net, tstop=tstop, dt=0.025, n_trials=n_trials, verbose=False)


# --------------------------------------------------------------------------
# the subcommands
# --------------------------------------------------------------------------
def test_simulate_writes_readable_dipole(small, tmp_path, capsys):
    dpl = read_dipole(small["target"])
    assert dpl.times[0] == 0.0 and dpl.times[-1] == pytest.approx(TSTOP)
    assert dpl.scale_applied == 3000.0
    assert set(dpl.data) == {"agg", "L2", "L5"}
    # the file holds the simulation of the parameter file's network, smoothed
    # and scaled: the same numbers as a direct simulation through the API
    (direct,) = _direct_dipoles(1)
    direct.smooth(10).scale(3000)
    np.testing.assert_array_equal(dpl.times, direct.times)
    for layer in ("agg", "L2", "L5"):
        np.testing.assert_allclose(dpl.data[layer], direct.data[layer], rtol=1e-12,
                                   atol=1e-12 * np.abs(direct.data[layer]).max())
    assert np.ptp(dpl.data["agg"]) > 1.0
    # two trials, raw (no smoothing or scaling); the drives start within 40 ms
    out = tmp_path / "two.txt"
    status, stdout, err = run(["simulate", "default.json", "--out", out, "--tstop", TSTOP,
                               "--n-trials", 2, "--mesh", 3, 3], capsys)
    assert status == 0, err
    assert stdout.startswith("simulating 2 trial(s) of 40 ms on 1 job(s)\n")
    assert "2 trial(s)" in stdout and str(out) in stdout
    # the trials in two worker processes: the same file
    para = tmp_path / "two_jobs.txt"
    status, stdout, err = run(["simulate", "default.json", "--out", para, "--tstop", TSTOP,
                               "--n-trials", 2, "--mesh", 3, 3, "--n-jobs", 2], capsys)
    assert status == 0, err
    assert "on 2 job(s)" in stdout
    assert para.read_bytes() == out.read_bytes()
    two = read_dipole(out)
    assert two.nave == 2 and two.scale_applied == 1.0
    assert two.times[-1] == pytest.approx(TSTOP)
    # the average of the two trials a direct simulation gives, unprocessed
    trials = _direct_dipoles(2)
    np.testing.assert_array_equal(two.times, trials[0].times)
    for layer in ("agg", "L2", "L5"):
        mean = (trials[0].data[layer] + trials[1].data[layer]) / 2
        np.testing.assert_allclose(two.data[layer], mean, rtol=1e-12,
                                   atol=1e-12 * np.abs(mean).max())
    # the average of two trials is not the first trial alone
    one = tmp_path / "one.txt"
    status, stdout, err = run(["simulate", "default.json", "--out", one, "--tstop", TSTOP,
                               "--n-trials", 1, "--mesh", 3, 3], capsys)
    assert status == 0, err
    single = read_dipole(one)
    assert single.nave == 1
    np.testing.assert_array_equal(single.times, two.times)
    assert np.abs(single.data["agg"] - two.data["agg"]).max() > 1e-6


def test_fit_records_and_resumes(small, tmp_path, capsys):
    study_path = tmp_path / "s.sqlite"
    status, out, err = run(["fit", small["config"], "--study", study_path, "--n-evals", 2],
                           capsys)
    assert status == 0, err
    assert f"created study {study_path}" in out
    assert "best value:" in out and "evprox1.mu" in out
    # the progress line: evaluations, best so far, ETA
    assert "2/2 eval" in err and "best" in err and "ETA" in err
    with Study.load(study_path) as study:
        assert study.n_complete == 2
        first = study.evaluations[["evprox1.mu", "evprox1.sigma", "value"]].to_numpy()

    status, out, err = run(["resume", study_path, "--n-evals", 3], capsys)
    assert status == 0, err
    assert "resuming study" in out and "3 complete" in out
    with Study.load(study_path) as study:
        rows = study.evaluations
        assert len(rows) == 3 and (rows["status"] == "complete").all()
        np.testing.assert_array_equal(
            rows[["evprox1.mu", "evprox1.sigma", "value"]].to_numpy()[:2], first)
        resumed = rows[["evprox1.mu", "evprox1.sigma", "value"]].to_numpy()

    # the same points as an uninterrupted 3-evaluation run (the module's study)
    with Study.load(small["study"]) as study:
        full = study.evaluations[["evprox1.mu", "evprox1.sigma", "value"]].to_numpy()
    np.testing.assert_array_equal(resumed, full)

    # 'resume' without --n-evals runs to the recorded budget (3): nothing to do
    status, out, err = run(["resume", study_path], capsys)
    assert status == 0, err
    assert "budget 3" in out
    assert (f"{study_path} already has 3 evaluations: the budget of 3 is reached (a larger "
            f"--n-evals continues it)") in out
    # a smaller budget runs nothing and leaves the recorded one alone
    status, out, err = run(["resume", study_path, "--n-evals", 2], capsys)
    assert status == 0, err
    assert "already has 3 evaluations: the budget of 2 is reached" in out
    with Study.load(study_path) as study:
        assert study.storage.metadata[BUDGET_KEY] == "3" and study.n_complete == 3
    # 'fit' on the existing study with the same config continues it
    status, out, err = run(["fit", small["config"], "--study", study_path, "--n-evals", 4],
                           capsys)
    assert status == 0, err
    assert f"resuming study {study_path} (3 evaluations so far)" in out
    with Study.load(study_path) as study:
        assert study.n_complete == 4


def test_fit_default_study_path(small, tmp_path, capsys, monkeypatch):
    config = tmp_path / "myfit.toml"
    sections = base_sections(small["target"])
    sections["run"]["n_evals"] = "1"
    write_config(config, sections)
    monkeypatch.chdir(tmp_path)
    status, out, err = run(["fit", config], capsys)
    assert status == 0, err
    assert (tmp_path / "studies" / "myfit.sqlite").is_file()
    # [run] study is relative to the working directory
    sections["run"]["study"] = '"elsewhere/x.sqlite"'
    write_config(config, sections)
    status, out, err = run(["fit", config], capsys)
    assert status == 0, err
    assert (tmp_path / "elsewhere" / "x.sqlite").is_file()


def test_show(small, capsys):
    before = digest(small["study"])
    status, out, err = run(["show", small["study"]], capsys)
    assert status == 0, err
    with Study.load(small["study"]) as study:
        best, value, trials = study.best_params, study.best_value, study.evaluations
    assert f"best value: {value:.6g}" in out
    assert "evaluations: 3 complete" in out
    assert "trial seeds used: 0\n" in out
    assert f"description: hnnfit fit {small['config']}\n" in out
    assert f"created on: {machine_summary(sys_info())}\n" in out
    assert "evprox1.mu in [20, 35], evprox1.sigma in [1, 6] (log)" in out
    assert f"{best['evprox1.mu']:.6g}" in out
    listed = out.split("last 3 evaluations:")[1].strip().splitlines()
    assert listed[0].split() == ["id", "status", "value", "evprox1.mu", "evprox1.sigma"]
    assert [line.split()[0] for line in listed[1:]] == [str(i) for i in trials["id"]]
    assert digest(small["study"]) == before
    status, out, err = run(["show", small["study"], "--last", 1], capsys)
    assert "last 1 evaluations:" in out and len(out.split("last 1 evaluations:")[1]
                                                   .strip().splitlines()) == 2
    # a Bayesian study has no CMA-ES mean to average
    status, out, err = run(["show", small["study"], "--generations", "2"], capsys)
    _check_error(status, out, err, "--generations 2 needs an unstaged CMA-ES study")
    assert digest(small["study"]) == before


def test_resampled_cma_fit_and_show(small, tmp_path, capsys):
    # a CMA-ES fit with new seeds per generation; `show` reports CMA-ES'
    # averaged mean, rebuilt from the log without writing to the study
    sections = base_sections(small["target"])
    sections["objective"]["resample"] = "true"
    sections["solver"] = {"name": '"cma"', "seed": "0",
                          "options": "{ popsize = 2, sigma0 = 0.2 }"}
    sections["run"]["n_evals"] = "4"
    config = write_config(small["root"] / "resampled.toml", sections)
    path = tmp_path / "resampled.sqlite"
    status, out, err = run(["fit", config, "--study", path], capsys)
    assert status == 0, err
    with Study.load(path) as study:
        assert [r["seeds"] for r in study.storage.rows()] == [[0], [0], [1], [1]]
        mean = study.replay_solver().averaged_mean()
    before = digest(path)
    status, out, err = run(["show", path], capsys)
    assert status == 0, err
    assert "each batch ran on new trials" in out
    assert "trial seeds used: 0-1\n" in out
    assert "averaged over the last 1 of 2 generations" in out
    table = out.split("generations")[1].split("last 4 evaluations:")[0].strip().splitlines()
    assert table[1].split()[:3] == ["parameter", "best", "cma"]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    for name, value in mean.items():
        assert float(rows[name][2]) == pytest.approx(value, rel=1e-5)
    # the mean exported as a parameter file
    out_file = tmp_path / "mean.json"
    status, out, err = run(["export", path, out_file, "--point", "cma-mean"], capsys)
    assert status == 0, err
    assert "averaged over the last 1 of 2 generations" in out
    net = Network(read_params(out_file), add_drives_from_params=True, mesh_shape=(3, 3))
    dyn = net.external_drives["evprox1"]["dynamics"]
    assert dyn["mu"] == pytest.approx(mean["evprox1.mu"], rel=1e-12)
    assert dyn["sigma"] == pytest.approx(mean["evprox1.sigma"], rel=1e-12)
    # another window: --generations averages the last N generation means
    solver = Study.load(path).replay_solver()
    both = solver.averaged_mean(2)
    assert both != mean
    status, out, err = run(["export", path, tmp_path / "both.json", "--point", "cma-mean",
                            "--generations", "2"], capsys)
    assert status == 0, err
    assert "averaged over the last 2 of 2 generations" in out
    net = Network(read_params(tmp_path / "both.json"), add_drives_from_params=True,
                  mesh_shape=(3, 3))
    assert net.external_drives["evprox1"]["dynamics"]["mu"] == pytest.approx(
        both["evprox1.mu"], rel=1e-12)
    status, out, err = run(["show", path, "--generations", "2"], capsys)
    assert status == 0, err
    assert "averaged over the last 2 of 2 generations" in out
    table = out.split("generations")[1].split("last 4 evaluations:")[0].strip().splitlines()
    rows = {line.split()[0]: line.split() for line in table[2:]}
    for name, value in both.items():
        assert float(rows[name][2]) == pytest.approx(value, rel=1e-5)
    status, out, err = run(["show", path, "--generations", "3"], capsys)
    _check_error(status, out, err, "--generations must be at most the 2 completed generations")
    for argv, message in ((["--point", "cma-mean", "--generations", "3"],
                           "--generations must be at most the 2 completed generations"),
                          (["--generations", "2"], "--generations 2 needs --point cma-mean")):
        status, out, err = run(["export", path, tmp_path / "bad.json", *argv], capsys)
        _check_error(status, out, err, message)
        assert not (tmp_path / "bad.json").exists()
    assert digest(path) == before
    # a Bayesian study has no CMA-ES mean: a clear error, no file
    status, out, err = run(["export", small["study"], tmp_path / "no.json", "--point",
                            "cma-mean"], capsys)
    _check_error(status, out, err, "--point cma-mean needs an unstaged CMA-ES study")
    assert not (tmp_path / "no.json").exists()


def test_fit_then_polish(small, tmp_path, capsys):
    # [polish]: once the fit has its budget, a CMA-ES study on new trials
    # refines its best point; the same command again resumes either
    sections = base_sections(small["target"])
    sections["polish"] = {"n_evals": "4", "options": "{ popsize = 2, sigma0 = 0.2 }",
                          "only": '["evprox1"]'}
    sections["polish.objective"] = {"seeds": "[500]", "resample": "true"}
    sections["polish.space"] = {'"evprox1.nmda.L5_pyramidal"': "[0.0, 0.01]"}
    config = write_config(tmp_path / "polish.toml", sections)
    study_path = tmp_path / "fit.sqlite"
    shutil.copy(small["study"], study_path)  # the fit has its 3 evaluations
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    assert status == 0, err
    polish_path = tmp_path / "fit_polish.sqlite"
    assert f"created polish {polish_path} (0 evaluations so far) from the best point" in out
    assert f"hnnfit export {polish_path} OUT.json --point cma-mean" in out
    status, out, err = run(["show", polish_path], capsys)
    assert status == 0, err
    assert f"description: hnnfit fit: polish of {study_path}\n" in out
    with Study.load(small["study"]) as fit, Study.load(polish_path) as polish:
        assert polish.x0 == {**fit.best_params, "evprox1.nmda.L5_pyramidal": 0.0}
        assert [r["seeds"] for r in polish.storage.rows()] == [[500], [500], [501], [501]]
        assert polish.solver_settings["name"] == "cma"
        assert polish.objective.smooth_window == fit.objective.smooth_window == 10.0
        assert fit.storage.rows() == Study.load(study_path).storage.rows()
    # again: both have their budgets, nothing is evaluated
    with Study.load(polish_path) as polish:
        rows = polish.storage.rows()
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    assert status == 0, err
    assert f"resuming polish {polish_path} (4 evaluations so far)" in out
    with Study.load(polish_path) as polish:
        assert polish.storage.rows() == rows
    # a larger budget continues the polish from its log
    sections["polish"]["n_evals"] = "6"
    write_config(config, sections)
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    assert status == 0, err
    with Study.load(polish_path) as polish:
        assert [r["seeds"] for r in polish.storage.rows()][4:] == [[502], [502]]
    # a polish made with other settings is refused, and left as it was
    before = digest(polish_path)
    sections["polish.objective"]["seeds"] = "[600]"
    write_config(config, sections)
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    _check_error(status, out, err, str(polish_path))
    assert digest(polish_path) == before


def test_fit_with_an_added_evoked_drive(small, tmp_path, capsys):
    # [[network.evoked_drives]]: a drive the parameter file does not have
    # joins the network, the automatic space and the study
    sections = base_sections(small["target"])
    sections["network"]["evoked_drives"] = (
        '[{ name = "evprox3", mu = 30.0, sigma = 2.0, location = "proximal", '
        'weights_ampa = { L5_pyramidal = 0.5, L2_basket = 0.01 } }]')
    sections["space"] = {"auto": "true", '"evprox3.mu"': "[26.0, 34.0]"}
    sections["run"]["n_evals"] = "2"
    config = write_config(tmp_path / "four.toml", sections)
    study_path = tmp_path / "four.sqlite"
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    assert status == 0, err
    with Study.load(study_path) as study:
        drive = study.net.external_drives["evprox3"]
        assert drive["dynamics"] == {"mu": 30.0, "sigma": 2.0, "numspikes": 1}
        assert drive["weights_ampa"] == {"L5_pyramidal": 0.5, "L2_basket": 0.01}
        names = study.space.names
        # the given range, and the automatic space's sigma and weights
        assert (study.space["evprox3.mu"].low, study.space["evprox3.mu"].high) == (26.0, 34.0)
        assert {"evprox3.sigma", "evprox3.ampa.L5_pyramidal", "evprox3.ampa.L2_basket",
                "evprox1.mu"} <= set(names)
        assert study.n_complete == 2
        best = study.best_net().external_drives["evprox3"]
        assert best["dynamics"]["mu"] == pytest.approx(study.best_params["evprox3.mu"])
    # the same config again resumes; another drive is another network
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    assert status == 0, err
    assert f"resuming study {study_path} (2 evaluations so far)" in out
    before = digest(study_path)
    sections["network"]["evoked_drives"] = sections["network"]["evoked_drives"].replace(
        "sigma = 2.0,", "sigma = 2.0, synaptic_delays = 0.5,")
    write_config(config, sections)
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    _check_error(status, out, err, "network")
    assert digest(study_path) == before
    # the parameter file's network is unchanged: the drive lives in the config
    assert "evprox3" not in Network(read_params("default.json"),
                                    add_drives_from_params=True).external_drives


def test_stage_evals_set_each_stage_budget_and_resume_keeps_them(small, tmp_path, capsys):
    # an early drive makes two stages before the final one
    sections = base_sections(small["target"])
    sections["network"]["evoked_drives"] = (
        '[{ name = "early", mu = 10.0, sigma = 1.0, location = "proximal", '
        'weights_ampa = { L5_pyramidal = 0.01 } }]')
    sections["space"]['"early.mu"'] = "[8.0, 14.0]"
    sections["run"].update({"staged": "true", "n_evals": "5",
                            "stage_evals": "{ early = 2 }"})
    config = write_config(tmp_path / "staged.toml", sections)
    study_path = tmp_path / "staged.sqlite"
    status, out, err = run(["fit", config, "--study", study_path], capsys)
    assert status == 0, err
    with Study.load(study_path) as study:
        # the default split would give 1, 2 and 2
        assert [st.name for st in study.stages] == ["early", "evprox1", "final"]
        assert [study.storage.counts(name)["complete"] for name in
                ("early", "evprox1", "final")] == [2, 2, 1]
    # a larger budget goes to the stage that is still open
    status, out, err = run(["resume", study_path, "--n-evals", "7"], capsys)
    assert status == 0, err
    with Study.load(study_path) as study:
        assert [study.storage.counts(name)["complete"] for name in
                ("early", "evprox1", "final")] == [2, 2, 3]
    # a fit stopped before its first evaluation: resume follows the stored
    # stage_evals, not the default split
    setup = build_fit(load_config(config))
    fresh = tmp_path / "fresh.sqlite"
    with Study.create(fresh, setup.net, setup.target, setup.space,
                      objective=setup.objective, solver="bayesian",
                      solver_options={"n_initial_points": 2}, stages="evoked") as study:
        study.storage.set_metadata(BUDGET_KEY, "5")
        study.storage.set_metadata(STAGE_EVALS_KEY, '{"early": 2}')
    before = digest(fresh)
    # a budget too small for them is refused before anything runs
    status, out, err = run(["resume", fresh, "--n-evals", "3"], capsys)
    _check_error(status, out, err, "n_evals must cover stage_evals (2) and one evaluation "
                                   "for each other stage (2), got 3")
    assert digest(fresh) == before
    status, out, err = run(["resume", fresh], capsys)
    assert status == 0, err
    with Study.load(fresh) as study:
        assert [study.storage.counts(name)["complete"] for name in
                ("early", "evprox1", "final")] == [2, 2, 1]


def test_budget(small, capsys):
    before = digest(small["study"])
    status, out, err = run(["budget", small["study"], "--seeds", "5-8", "--k", "3",
                            "--segments", "2", "--goal", "20"], capsys)
    assert status == 0, err
    with Study.load(small["study"]) as study:
        groups = [study.score_held_out(g)["value"] for g in ([5, 6, 7], [5, 6, 8], [5, 7, 8],
                                                        [6, 7, 8])]
        singles = [study.score_held_out([s])["value"] for s in (5, 6, 7, 8)]
        budget = study.error_budget([5, 6, 7, 8], k=3)
        t_end = study.target.times[-1]
    lines = out.strip().splitlines()
    assert "on 4 trials (seeds 5-8), averages of 3" in lines[0]
    # the expected score of a 3-trial average is the mean square of the four groups'
    expected = np.sqrt(np.mean(np.square(groups)))
    assert f"expected RMSE of a 3-trial average: {expected:.2f} nAm" in lines[1]
    assert f"bias^2 {budget['bias2']:.1f} + var {budget['var']:.1f} / 3" in lines[1]
    worst = int(np.argmax(singles))
    assert lines[2] == (f"single trials: RMSE median {np.median(singles):.2f} nAm, best "
                        f"{min(singles):.2f}, worst {singles[worst]:.2f} (seed {5 + worst})")
    q = np.percentile(groups, [5, 25, 50, 75, 95])
    assert lines[3] == (f"averages of 3 distinct trials (4 groups): RMSE 5% {q[0]:.2f}, "
                        f"25% {q[1]:.2f}, median {q[2]:.2f}, 75% {q[3]:.2f}, 95% {q[4]:.2f} nAm")
    share = np.mean(np.array(groups) < 20)
    assert lines[4] == f"share of those groups below 20 nAm: {share:.1%}"
    rows = [line.split() for line in lines[6:]]
    assert rows[0] == ["window", "(ms)", "bias^2", "var/3"]
    assert [r[0] for r in rows[1:]] == ["0-" + f"{t_end / 2:.0f}",
                                        f"{t_end / 2:.0f}-{t_end:.0f}"]
    # the windows' shares (rounded to 0.01) add up to the totals
    assert sum(float(r[1]) for r in rows[1:]) == pytest.approx(budget["bias2"], abs=0.011)
    assert sum(float(r[2]) for r in rows[1:]) == pytest.approx(budget["var"] / 3, abs=0.011)
    # another time step
    status, out, err = run(["budget", small["study"], "--seeds", "5-7", "--k", "3",
                            "--dt", "0.05"], capsys)
    assert status == 0, err
    with Study.load(small["study"]) as study:
        coarse = study.score_held_out([5, 6, 7], dt=0.05)["value"]
    lines = out.strip().splitlines()
    assert "on 3 trials (seeds 5-7, time step 0.05 ms), averages of 3" in lines[0]
    assert f"expected RMSE of a 3-trial average: {coarse:.2f} nAm" in lines[1]
    # fewer trials than k: the expected score extrapolates, and says there is no group
    status, out, err = run(["budget", small["study"], "--seeds", "8-9", "--k", "3"], capsys)
    assert status == 0, err
    with Study.load(small["study"]) as study:
        few = study.error_budget([8, 9], k=3)
    lines = out.strip().splitlines()
    assert f"expected RMSE of a 3-trial average: {few['expected']:.2f} nAm" in lines[1]
    assert lines[3] == ("(fewer than 3 trials: no average of 3 distinct trials to score; "
                        "the expected RMSE above extrapolates from the 2 trials)")
    # the fit's own seeds, a single seed, a goal without a group of k trials, and a
    # non-CMA study's mean are refused
    for argv, message in [(["--seeds", "0-2"], "seeds must be trials the fit did not use"),
                          (["--seeds", "9"], "seeds must hold at least 2 seeds, got 1"),
                          (["--seeds", "8-9", "--k", "3", "--goal", "20"],
                           "--goal needs at least 3 seeds (one average of 3 trials), got 2: "
                           "8-9"),
                          (["--seeds", "8-9", "--point", "cma-mean"],
                           "--point cma-mean needs an unstaged CMA-ES study")]:
        status, out, err = run(["budget", small["study"]] + argv, capsys)
        _check_error(status, out, err, message)
    assert digest(small["study"]) == before


def test_rescore(small, capsys):
    before = digest(small["study"])
    status, out, err = run(["rescore", small["study"], "--seeds", "5-6", "--top", 2], capsys)
    assert status == 0, err
    assert "on seeds 5-6 (the fit's: 0)" in out
    assert out.splitlines()[1] == ("value: on the fit's seeds; rescored: the score of the "
                                   "average of all 2 trial(s), as the fit's objective scores")
    listed = out.strip().splitlines()[2:]
    assert listed[0].split() == ["id", "value", "rescored", "evprox1.mu", "evprox1.sigma"]
    with Study.load(small["study"]) as study:
        table = study.rescore([5, 6], top=2)
    assert [line.split()[0] for line in listed[1:]] == [str(i) for i in table["id"]]
    assert listed[1].split()[2] == f"{table['rescored'][0]:.6g}"
    assert digest(small["study"]) == before
    # the fit's own seeds and malformed ranges are refused without a traceback
    status, out, err = run(["rescore", small["study"], "--seeds", "0-2"], capsys)
    assert status == 2 and "seeds must be trials the fit did not use" in err
    assert "Traceback" not in err
    status, out, err = run(["rescore", small["study"], "--seeds", "7-3"], capsys)
    assert status == 2 and "'7-3'" in err and "Traceback" not in err
    assert digest(small["study"]) == before


def test_export(small, tmp_path, capsys):
    out_file = tmp_path / "best.json"
    status, out, err = run(["export", small["study"], out_file], capsys)
    assert status == 0, err
    with Study.load(small["study"]) as study:
        best = study.best_params
    net = Network(read_params(out_file), add_drives_from_params=True, mesh_shape=(3, 3))
    dyn = net.external_drives["evprox1"]["dynamics"]
    assert dyn["mu"] == pytest.approx(best["evprox1.mu"], rel=1e-12)
    assert dyn["sigma"] == pytest.approx(best["evprox1.sigma"], rel=1e-12)
    # simulate reads the exported file: the network at the best point
    status, out, err = run(["simulate", out_file, "--out", tmp_path / "d.txt", "--tstop",
                            TSTOP, "--mesh", 3, 3], capsys)
    assert status == 0, err
    (direct,) = _direct_dipoles(1, best)
    written = read_dipole(tmp_path / "d.txt")
    np.testing.assert_array_equal(written.times, direct.times)
    np.testing.assert_allclose(written.data["agg"], direct.data["agg"], rtol=1e-12,
                               atol=1e-12 * np.abs(direct.data["agg"]).max())
    # the target is the parameter file's network, so the start point (its
    # published values, evaluated first) is the best, at RMSE 0
    with Study.load(small["study"]) as study:
        assert best == study.x0 and study.best_value == pytest.approx(0.0, abs=1e-9)


def test_report(small, tmp_path, capsys):
    outdir = tmp_path / "report"
    status, out, err = run(["report", small["study"], outdir], capsys)
    assert status == 0, err
    names = sorted(p.name for p in outdir.iterdir())
    assert names == ["convergence.png", "fit.png", "params.png"]
    with Study.load(small["study"]) as study:
        rows = study.evaluations
        best, best_value, x0 = study.best_params, study.best_value, study.x0
        figures = {"convergence": study.plot_convergence(show=False),
                   "fit": study.plot_fit(show=False), "params": study.plot_params(show=False)}
    values = rows["value"].to_numpy()
    # convergence: every evaluation's value and the running best
    dots, running = figures["convergence"].axes[0].lines[:2]
    np.testing.assert_array_equal(dots.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(dots.get_ydata(), values)
    np.testing.assert_array_equal(running.get_ydata(), np.minimum.accumulate(values))
    # fit: the target file, and the start and best points' dipoles as a
    # direct simulation gives them (smoothed over 10 ms, scaled x3000)
    target = read_dipole(small["target"])
    lines = figures["fit"].axes[0].lines
    assert [line.get_label() for line in lines] == ["target", "initial",
                                                    f"best ({best_value:.4g})"]
    np.testing.assert_allclose(lines[0].get_xdata(), target.times, rtol=1e-12)
    np.testing.assert_array_equal(lines[0].get_ydata(), target.data["agg"])
    for line, point in zip(lines[1:], (x0, best)):
        (direct,) = _direct_dipoles(1, point)
        expected = direct.smooth(10).scale(3000).data["agg"]
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-9,
                                   atol=1e-9 * np.abs(expected).max())
    # the best value is the RMSE of the best dipole against the target
    rmse = np.sqrt(np.mean((lines[2].get_ydata() - target.data["agg"]) ** 2))
    assert best_value == pytest.approx(rmse, rel=1e-9)
    # params: each parameter's evaluated values, its bounds and its best
    for ax, (name, low, high) in zip(figures["params"].axes,
                                     [("evprox1.mu", 20.0, 35.0), ("evprox1.sigma", 1.0, 6.0)]):
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), rows[name].to_numpy())
        assert [line.get_ydata()[0] for line in ax.lines[1:]] == [low, high, best[name]]
    # the report's images are these figures, pixel for pixel, and not blank
    for name, fig in figures.items():
        data = (outdir / f"{name}.png").read_bytes()
        assert data[:8] == PNG_MAGIC
        fig.savefig(tmp_path / f"{name}.png", dpi=100)
        image = mpimg.imread(outdir / f"{name}.png")
        np.testing.assert_array_equal(image, mpimg.imread(tmp_path / f"{name}.png"))
        assert np.ptp(image[..., :3]) > 0.5
        # the plotted data, in colour, covers more than a few pixels
        coloured = np.ptp(image[..., :3], axis=-1) > 0.2
        assert coloured.sum() > 200, name
        plt.close(fig)


# Budget of the fits interrupted by SIGINT: far more evaluations (about 0.5 s
# each) than fit in the time the test needs to see two of them recorded, so
# the signal always lands mid-fit, even on a slow or busy machine.
N_LONG = 400


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_cleanly(small, tmp_path, signum):
    """SIGINT (Ctrl-C) or SIGTERM (a batch scheduler's time limit) during a
    fit: exit 130, what finished is kept, resume continues."""
    study_path = tmp_path / "int.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hnnfit.cli", "fit", str(small["config"]), "--study",
         str(study_path), "--n-evals", str(N_LONG)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test run started in the background by a non-interactive shell
        # inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: give the child the default a terminal gives
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done < 2:
        time.sleep(0.5)
        if study_path.exists():
            try:
                con = sqlite3.connect(f"file:{study_path}?mode=ro", uri=True, timeout=5)
                done = con.execute("SELECT COUNT(*) FROM evaluations WHERE "
                                   "status='complete'").fetchone()[0]
                con.close()
            except sqlite3.DatabaseError:
                pass   # not created yet, or mid-write
    assert done >= 2, "the fit did not record evaluations in time"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert f"hnnfit resume {study_path}" in err
    with Study.load(study_path) as study:
        counts = study.storage.counts()
        n_done = counts["complete"] + counts["failed"]
        assert 2 <= n_done < N_LONG
        assert counts["running"] == 0
    assert cli.main(["resume", str(study_path), "--n-evals", str(n_done + 1)]) == 0
    with Study.load(study_path) as study:
        assert study.n_complete + study.n_failed == n_done + 1


def test_console_script_help():
    exe = shutil.which("hnnfit")
    cmd = [exe] if exe else [sys.executable, "-m", "hnnfit.cli"]
    proc = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("fit", "resume", "show", "export", "report", "simulate", "info"):
        assert command in proc.stdout


# --------------------------------------------------------------------------
# the demo
# --------------------------------------------------------------------------
def _demo_noise_rmse(meta):
    """RMSE (nAm) of the demo target's noise, made again as hnnfit.demo makes it.

    The target is the clean simulation plus ``default_rng(seed).normal(0, sd)``
    on each of its samples, sd being a fraction of the clean peak-to-peak.
    """
    times, values = np.loadtxt(data_dir() / meta["target_file"], unpack=True)
    noise = np.random.default_rng(meta["noise"]["seed"]).normal(
        0.0, meta["noise"]["sd_nAm"], size=times.size)
    # the recipe holds: what is left without the noise has the recorded spread
    clean = values - noise
    assert meta["noise"]["relative_level"] * np.ptp(clean) == pytest.approx(
        meta["noise"]["sd_nAm"], rel=1e-9)
    return float(np.sqrt(np.mean(noise ** 2)))


def _check_demo_recovery(meta, x0, first, best, value):
    """Assert that a demo study is a fit: ``x0`` its start, ``first`` its
    first evaluation (parameters and value), ``best`` and ``value`` its best."""
    start = meta["published_values"]
    # the fit starts at the published times, the first evaluation there
    assert x0 == start
    assert {name: first[name] for name in start} == start
    start_rmse = first["value"]
    noise_rmse = _demo_noise_rmse(meta)            # 3.28 nAm
    # a fit that did not happen keeps the start, 6.7x the noise's RMSE
    # (21.9 nAm); the fit ends near the noise's (4.57 nAm measured)
    assert start_rmse > 5 * noise_rmse
    assert value < 1.5 * noise_rmse
    assert value < 0.3 * start_rmse
    # evdist1 ends within a third of its starting error (6.53 ms; 1.24 ms
    # measured). evprox1 starts 4.39 ms from the truth and the demo's 24
    # evaluations take it to 3.68 ms: not within a third, so it is held to
    # the strongest bound it meets, nearer than 4 ms
    true = meta["true_values"]
    assert abs(best["evdist1.mu"] - true["evdist1.mu"]) < \
        abs(start["evdist1.mu"] - true["evdist1.mu"]) / 3, best
    assert abs(best["evprox1.mu"] - true["evprox1.mu"]) < 4.0, best


def test_demo_noise_rmse_is_what_the_metadata_records():
    meta = demo_metadata()
    assert _demo_noise_rmse(meta) == pytest.approx(meta["clean_rmse_to_target"], rel=1e-12)


def test_demo_check_rejects_a_solver_that_returns_its_start():
    # a solver that never leaves the start reports the start as its best:
    # rejected on the parameters even with the RMSE the noise alone leaves
    meta = demo_metadata()
    start = meta["published_values"]
    noise = meta["clean_rmse_to_target"]
    first = {**start, "value": 6 * noise}
    with pytest.raises(AssertionError, match="evdist1"):
        _check_demo_recovery(meta, start, first, start, noise)
    # and on the RMSE, at the start's own value, even where the parameters pass
    near = dict(meta["true_values"])
    with pytest.raises(AssertionError):
        _check_demo_recovery(meta, start, first, near, first["value"])
    # the measured fit passes
    _check_demo_recovery(meta, start, first, {"evprox1.mu": 34.68, "evdist1.mu": 55.76},
                         4.571)


@pytest.mark.slow
def test_demo_fit_recovers_the_true_drive_times(tmp_path, monkeypatch, capsys):
    """The README's first command: `hnnfit fit` with no argument (full-size network)."""
    monkeypatch.chdir(tmp_path)
    status, out, err = run(["fit"], capsys)
    assert status == 0, err
    meta = demo_metadata()
    with Study.load(tmp_path / "studies" / "demo.sqlite") as study:
        best, value, counts = study.best_params, study.best_value, study.counts()
        x0, first = study.x0, study.evaluations.iloc[0]
    assert counts["complete"] == 24 and counts["failed"] == 0
    _check_demo_recovery(meta, x0, first, best, value)
    assert "recovery of the demo's generating parameters:" in out


# --------------------------------------------------------------------------
# bad input: exit status 2, one line, no traceback, study files untouched
# --------------------------------------------------------------------------
def _edit(sections, *changes):
    for (section, key), value in zip(changes[::2], changes[1::2]):
        if value is None:
            del sections[section][key]
        else:
            sections.setdefault(section, {})[key] = value


CONFIG_CASES = {
    "unknown parameter name": ([("space", "evprox9.mu"), "[1.0, 2.0]"], "evprox9"),
    "unknown cell type": ([("space", '"evprox1.ampa.L9_pyramidal"'), "[0.1, 1.0]"],
                          "L9_pyramidal"),
    "low >= high": ([("space", "evprox1.mu"), "[35.0, 20.0]"], "evprox1.mu"),
    "low == high": ([("space", "evprox1.mu"), "[20.0, 20.0]"], "evprox1.mu"),
    "log with low <= 0": ([("space", '"evprox1.sigma"'),
                           "{ low = 0.0, high = 6.0, log = true }"], "evprox1.sigma"),
    "unknown key in section": ([("objective", "smoothing"), "30.0"], "smoothing"),
    "unknown key in parameter": ([("space", '"evprox1.sigma"'),
                                  "{ low = 1.0, high = 6.0, logscale = true }"], "logscale"),
    "unknown solver": ([("solver", "name"), '"simplex"'], "simplex"),
    "unknown solver option": ([("solver", "options"), "{ n_random = 2 }"], "n_random"),
    "unknown metric": ([("objective", "metric"), '"mae"'], "mae"),
    "bad scale": ([("objective", "scale"), '"auto"'], "auto"),
    "group_size not dividing n_trials": ([("objective", "group_size"), "2"],
                                         "multiple of group_size (2), got 1"),
    "resample not true or false": ([("objective", "resample"), '"yes"'],
                                   "resample must be a bool, got str 'yes'"),
    "target shorter than the window": ([("target", "tmax"), "200.0"], "tmax"),
    "window before the target": ([("target", "tmin"), "-5.0"], "tmin"),
    "missing target file": ([("target", "file"), '"nowhere.txt"'], "nowhere.txt"),
    "unknown dataset": ([("target", "dataset"), '"yes_trial"', ("target", "file"), None,
                         ("target", "columns"), None], "yes_trial"),
    "missing params file": ([("network", "params"), '"nope.json"'], "nope.json"),
    "bad mesh": ([("network", "mesh_shape"), "[3]"], "mesh_shape"),
    "evoked_drives not an array of tables": ([("network", "evoked_drives"), "3"],
                                             "evoked_drives in [network] of"),
    "added drive without sigma, location": (
        [("network", "evoked_drives"), '[{ name = "evprox3", mu = 30.0 }]'],
        "[[network.evoked_drives]] 'evprox3' must give ['sigma', 'location']"),
    "added drive with an unknown key": (
        [("network", "evoked_drives"),
         '[{ name = "evprox3", mu = 30.0, sigma = 2.0, location = "proximal", '
         'weights_ampa = { L5_pyramidal = 0.5 }, jitter = 1.0 }]'],
        "key 'jitter' of [[network.evoked_drives]] 'evprox3' must be one of"),
    "added drive reusing a name": (
        [("network", "evoked_drives"),
         '[{ name = "evprox1", mu = 30.0, sigma = 2.0, location = "proximal", '
         'weights_ampa = { L5_pyramidal = 0.5 } }]'],
        "[[network.evoked_drives]] 'evprox1': name must be a new drive name"),
    "added drive without a name": ([("network", "evoked_drives"), '[{ mu = 30.0 }]'],
                                   "[[network.evoked_drives]] #1 must be a table with a "
                                   "string 'name'"),
    "unknown column": ([("target", "columns"), '["dipole"]'], "dipole"),
    "zero budget": ([("run", "n_evals"), "0"], "n_evals"),
    "stage_evals not a table": ([("run", "staged"), "true", ("run", "stage_evals"), "3"],
                                "stage_evals in [run] of"),
    "stage_evals of an unknown stage": ([("run", "staged"), "true", ("run", "stage_evals"),
                                         "{ evdist1 = 2 }"],
                                        "stage_evals in [run] must name stages of this fit "
                                        "(final), got 'evdist1'"),
    "stage_evals of an unstaged fit": ([("run", "stage_evals"), "{ final = 2 }"],
                                       "stage_evals in [run] needs a staged fit"),
    "stage_evals over the budget": ([("run", "staged"), "true", ("run", "stage_evals"),
                                     "{ final = 4 }"],
                                    "n_evals must cover stage_evals (4) and one evaluation "
                                    "for each other stage (0), got 3"),
    "stage_evals of zero": ([("run", "staged"), "true", ("run", "stage_evals"),
                             "{ evprox1 = 0 }"], "stage_evals['evprox1'] in [run] must be"),
    "unknown key in [polish]": ([("polish", "sigma"), "0.1"],
                                "key 'sigma' in [polish] of"),
    "polish adds an unknown synapse": ([("polish.space", '"evprox1.ampa.L9_cell"'),
                                        "[0.0, 1.0]"], "L9_cell"),
    "polish range low >= high": ([("polish.space", "evprox1.mu"), "[30.0, 25.0]"],
                                 "parameter 'evprox1.mu' in [polish.space]"),
    "polish of an unknown drive": ([("polish", "only"), '["evprox9"]'],
                                   "only must name parameters or drives"),
    "polish only not a list": ([("polish", "only"), '"evprox1"'],
                               "only in [polish] must be a list"),
    "unknown key in [polish.objective]": ([("polish.objective", "smoothing"), "3.0"],
                                          "key 'smoothing' in [polish.objective]"),
    "unknown polish solver option": ([("polish", "options"), "{ n_random = 2 }"],
                                     "options in [polish] must be options of the 'cma'"),
    "zero polish budget": ([("polish", "n_evals"), "0"], "n_evals in [polish]"),
    "polish groups not dividing its trials": ([("polish.objective", "group_size"), "2"],
                                              "multiple of group_size (2), got 1"),
}


def _check_error(status, out, err, expected=None):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hnnfit: error:")
    assert "Traceback" not in err and "Traceback" not in out
    if expected is not None:
        assert expected in lines[0]


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config(case, small, tmp_path, capsys, study_copy):
    edit, expected = CONFIG_CASES[case]
    sections = base_sections(small["target"])
    _edit(sections, *edit)
    config = write_config(tmp_path / "bad.toml", sections)
    before = digest(study_copy)
    # into an existing study: left byte for byte as it was
    status, out, err = run(["fit", config, "--study", study_copy], capsys)
    _check_error(status, out, err, expected)
    assert digest(study_copy) == before
    # into a new study: none is created
    fresh = tmp_path / "fresh.sqlite"
    status, out, err = run(["fit", config, "--study", fresh], capsys)
    _check_error(status, out, err, expected)
    assert not fresh.exists()


def _bad_target(tmp_path, small, kind):
    data = np.loadtxt(small["target"], skiprows=4)[:, :2]
    if kind == "nan":
        data[5, 1] = np.nan
    elif kind == "decreasing":
        data[[5, 6], 0] = data[[6, 5], 0]
    elif kind == "repeated":
        data[6, 0] = data[5, 0]
    path = tmp_path / f"{kind}.txt"
    np.savetxt(path, data)
    return path


@pytest.mark.parametrize("kind,expected", [("nan", "finite"),
                                           ("decreasing", "strictly increasing"),
                                           ("repeated", "strictly increasing")])
def test_bad_target_values(kind, expected, small, tmp_path, capsys, study_copy):
    sections = base_sections(_bad_target(tmp_path, small, kind))
    del sections["target"]["columns"]
    config = write_config(tmp_path / "bad.toml", sections)
    before = digest(study_copy)
    status, out, err = run(["fit", config, "--study", study_copy], capsys)
    _check_error(status, out, err, expected)
    assert digest(study_copy) == before


def test_bad_toml_and_layout(small, tmp_path, capsys, study_copy):
    before = digest(study_copy)
    cases = {
        "broken.toml": ("[network\nparams = 1\n", "not valid TOML"),
        "section.toml": (toml_text(dict(base_sections(small["target"]),
                                        solvers={"name": '"cobyla"'})), "solvers"),
        # an empty [space] (a missing one means the automatic space)
        "nospace.toml": (toml_text(dict(base_sections(small["target"]), space={})),
                         "auto = true"),
        "twotargets.toml": (toml_text(dict(base_sections(small["target"]), target={
            "file": f'"{small["target"]}"', "dataset": '"S1_SupraT"'})), "exactly one"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        status, out, err = run(["fit", path, "--study", study_copy], capsys)
        _check_error(status, out, err, expected)
    status, out, err = run(["fit", tmp_path / "missing.toml", "--study", study_copy], capsys)
    _check_error(status, out, err, "missing.toml")
    assert digest(study_copy) == before


def test_fit_into_a_study_made_differently(small, tmp_path, capsys, study_copy):
    """Another space or target than the study's is refused; the study is untouched."""
    before = digest(study_copy)
    sections = base_sections(small["target"])
    sections["space"]["evprox1.mu"] = "[20.0, 36.0]"
    status, out, err = run(["fit", write_config(tmp_path / "a.toml", sections), "--study",
                            study_copy], capsys)
    _check_error(status, out, err, "different space")
    sections = base_sections(small["target"])
    sections["target"]["tmax"] = "30.0"
    status, out, err = run(["fit", write_config(tmp_path / "b.toml", sections), "--study",
                            study_copy], capsys)
    _check_error(status, out, err, "different target")
    assert digest(study_copy) == before


def test_not_a_study(tmp_path, capsys, small):
    text = tmp_path / "notes.sqlite"
    text.write_text("just some notes\n" * 50)
    empty_db = tmp_path / "other.sqlite"
    con = sqlite3.connect(empty_db)
    con.execute("CREATE TABLE things (x)")
    con.commit()
    con.close()
    for path in (text, empty_db):
        before = digest(path)
        for argv in (["show", path], ["resume", path, "--n-evals", 5],
                     ["export", path, tmp_path / "o.json"], ["report", path, tmp_path / "r"],
                     ["fit", small["config"], "--study", path]):
            status, out, err = run(argv, capsys)
            _check_error(status, out, err, "not an hnnfit study")
            assert digest(path) == before
    for argv in (["show", tmp_path / "none.sqlite"], ["resume", tmp_path / "none.sqlite"]):
        status, out, err = run(argv, capsys)
        _check_error(status, out, err, "none.sqlite")
        assert not (tmp_path / "none.sqlite").exists()


def test_newer_schema(study_copy, tmp_path, capsys, small):
    con = sqlite3.connect(study_copy)
    con.execute("UPDATE hnnfit_schema SET version = version + 1")
    con.commit()
    con.close()
    before = digest(study_copy)
    for argv in (["show", study_copy], ["resume", study_copy, "--n-evals", 5],
                 ["export", study_copy, tmp_path / "o.json"],
                 ["report", study_copy, tmp_path / "r"],
                 ["fit", small["config"], "--study", study_copy]):
        status, out, err = run(argv, capsys)
        _check_error(status, out, err, "newer")
        assert digest(study_copy) == before


def test_bad_command_line(study_copy, tmp_path, capsys):
    before = digest(study_copy)
    for argv, expected in [
            (["resume", study_copy, "--n-evals", 0], "--n-evals"),
            (["resume", study_copy, "--n-jobs", "two"], "--n-jobs"),
            (["frobnicate"], "frobnicate"),
            (["simulate", "default.json"], "--out"),
            (["simulate", "default.json", "--out", tmp_path / "x.txt", "--tstop", "-1"],
             "--tstop"),
            (["simulate", "nope.json", "--out", tmp_path / "x.txt"], "nope.json"),
            (["simulate", "default.json", "--out", tmp_path / "no" / "x.txt"], "of --out"),
            # refused before simulating, not after: /proc takes no new files
            (["simulate", "default.json", "--out", "/proc/x.txt"],
             "--out '/proc/x.txt' cannot be written"),
            (["simulate", "default.json", "--out", tmp_path],
             f"--out must be a file path, got the folder '{tmp_path}'"),
            (["simulate", "default.json", "--out", tmp_path / "x.txt", "--n-jobs", 0],
             "--n-jobs"),
            (["export", study_copy, tmp_path / "best.txt"], ".json"),
            (["export", study_copy, "/proc/best.json"], "OUT '/proc/best.json' cannot be written"),
            (["report", study_copy, study_copy],
             f"OUTDIR must be a folder, got the file '{study_copy}'"),
            (["report", study_copy, "/proc/hnnfit-report"],
             "OUTDIR '/proc/hnnfit-report' cannot be created or written")]:
        status, out, err = run(argv, capsys)
        _check_error(status, out, err, expected)
    assert digest(study_copy) == before


def test_resume_without_recorded_budget(tmp_path, capsys, small):
    """A study never optimised has no budget: --n-evals is needed. Once
    Study.optimize has run it, `hnnfit resume` knows its budget and jobs."""
    setup = build_fit(load_config(small["config"]))
    path = tmp_path / "api.sqlite"
    Study.create(path, setup.net, setup.target, setup.space,
                 objective=setup.objective, solver="bayesian",
                 solver_options={"n_initial_points": 2}).close()
    before = digest(path)
    status, out, err = run(["resume", path], capsys)
    _check_error(status, out, err, "--n-evals must be given")
    assert digest(path) == before
    with Study.load(path) as study:
        study.optimize(2, n_jobs=2, progress=False)
    status, out, err = run(["resume", path], capsys)
    assert status == 0, err
    assert f"resuming study {path} (2 evaluations so far); budget 2, 2 job(s)" in out
    assert "the budget of 2 is reached" in out
    status, out, err = run(["resume", path, "--n-evals", 3, "--n-jobs", 1], capsys)
    assert status == 0, err
    with Study.load(path) as study:
        assert study.n_complete == 3
        assert study.storage.metadata[BUDGET_KEY] == "3"


def test_make_demo_target_small(tmp_path, monkeypatch):
    """The demo generator on a 3x3 network: deterministic, self-consistent files."""
    from hnnfit import demo
    from hnnfit.fit.objective import DipoleObjective

    monkeypatch.setattr(demo, "MESH_SHAPE", (3, 3))
    first = demo.make_demo_target(tmp_path / "a")
    second = demo.make_demo_target(tmp_path / "b")
    for key in ("target", "meta", "config"):
        assert first[key].read_bytes() == second[key].read_bytes()
    meta = demo.demo_metadata(first["meta"])
    assert hashlib.sha256(first["target"].read_bytes()).hexdigest() == meta["target_sha256"]
    assert meta["network"]["mesh_shape"] == [3, 3]
    assert meta["drives"]["evprox1"]["dynamics"]["mu"] == meta["true_values"]["evprox1.mu"]
    assert meta["drives"]["evdist1"]["dynamics"]["mu"] == meta["true_values"]["evdist1.mu"]
    # the target is the objective's own output at the true values plus the noise
    setup = build_fit(load_config(first["config"]))
    objective = DipoleObjective(setup.net, setup.target, setup.space, **setup.objective)
    at_truth = objective(meta["true_values"])["value"]
    assert at_truth == pytest.approx(meta["clean_rmse_to_target"], rel=1e-6)
    elsewhere = objective(meta["published_values"])["value"]
    assert elsewhere > 2 * at_truth


def test_resume_keeps_recorded_jobs(small, study_copy, capsys):
    status, out, err = run(["resume", study_copy], capsys)
    assert status == 0, err
    assert "budget 3, 1 job(s)" in out


def test_study_driven_by_another_process(study_copy, capsys, small):
    """A study with evaluations running in another live process is not touched."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Study.load(study_copy) as study:
            (row,) = study.storage.add_running([{"evprox1.mu": 30.0, "evprox1.sigma": 2.0}])
        _set_pid(study_copy, row, sleeper.pid)
        before = digest(study_copy)
        for argv in (["resume", study_copy, "--n-evals", 5],
                     ["fit", small["config"], "--study", study_copy, "--n-evals", 5]):
            status, out, err = run(argv, capsys)
            _check_error(status, out, err, "another live process")
            assert digest(study_copy) == before
    finally:
        sleeper.kill()
        sleeper.wait()


def process_start(pid):
    """Start time of process ``pid`` (clock ticks since boot, field 22 of
    /proc/PID/stat), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses
    return int(text[text.rindex(")") + 2:].split()[19])


def _set_pid(path, row, pid):
    """Record process ``pid`` as the driver of running row ``row``.

    A driver is identified by its pid and its start time (a later process
    given the same pid is not it), so both are written; the host and boot
    id the row holds are this machine's already.
    """
    con = sqlite3.connect(path)
    con.execute("UPDATE evaluations SET pid = ?, pid_start = ? WHERE id = ?",
                (pid, process_start(pid), row))
    con.commit()
    con.close()


def test_list(small, tmp_path, capsys):
    """`hnnfit list` tells done, stopped, running and interrupted studies
    apart, names files that are not studies, and writes to none of them."""
    from hnnfit.fit import list_studies

    folder = tmp_path / "studies"
    folder.mkdir()
    for name in ("done", "stopped", "running", "interrupted"):
        shutil.copy(small["study"], folder / f"{name}.sqlite")
    with Study.load(folder / "stopped.sqlite") as study:
        study.storage.set_metadata(BUDGET_KEY, "10")
    point = {"evprox1.mu": 30.0, "evprox1.sigma": 2.0}
    with Study.load(folder / "interrupted.sqlite") as study:
        (stale,) = study.storage.add_running([point])
    with Study.load(folder / "running.sqlite") as study:
        (live,) = study.storage.add_running([point])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _set_pid(folder / "interrupted.sqlite", stale, gone.pid)
    (folder / "notes.sqlite").write_text("not a database")
    (folder / "readme.txt").write_text("not listed")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _set_pid(folder / "running.sqlite", live, sleeper.pid)
        before = {p.name: digest(p) for p in folder.iterdir()}
        status, out, err = run(["list", folder], capsys)
        json_status, json_out, _ = run(["list", folder, "--json"], capsys)
        df = list_studies(folder)
        assert {p.name: digest(p) for p in folder.iterdir()} == before
    finally:
        sleeper.kill()
        sleeper.wait()
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"4 studies in {folder}:"
    assert lines[1].split()[:3] == ["study", "state", "evaluations"]
    listed = {line.split()[0]: line for line in lines[2:6]}
    with Study.load(small["study"]) as study:
        best = study.best_value
    assert listed["done.sqlite"].split()[1:4] == ["done", "3/3", f"{best:.6g}"]
    assert listed["stopped.sqlite"].split()[1:3] == ["stopped", "3/10"]
    assert (listed["running.sqlite"].split()[1:3] == ["running", "3/3"]
            and f"1 running (pid {sleeper.pid})" in listed["running.sqlite"])
    assert (listed["interrupted.sqlite"].split()[1:3] == ["interrupted", "3/3"]
            and "1 left running" in listed["interrupted.sqlite"])
    assert f"hnnfit fit {small['config']}"[:37] in listed["done.sqlite"]
    assert lines[6].startswith("not a study: notes.sqlite (")
    assert "not an hnnfit study file" in lines[6]
    assert lines[7] == "an interrupted study continues with: hnnfit resume <study file>"
    assert len(lines) == 8 and "readme" not in out
    # the same as a DataFrame, one row per file
    assert list(df["study"]) == ["done.sqlite", "interrupted.sqlite", "notes.sqlite",
                                 "running.sqlite", "stopped.sqlite"]
    rec = df.set_index("study")
    assert list(rec["state"]) == ["done", "interrupted", "not a study", "running", "stopped"]
    assert rec.loc["running.sqlite", "pid"] == sleeper.pid
    assert rec.loc["interrupted.sqlite", "stale"] == 1
    assert rec.loc["stopped.sqlite", "budget"] == 10
    assert rec.loc["done.sqlite", "best_value"] == best
    assert rec.loc["done.sqlite", "solver"] == "bayesian"
    assert rec.loc["done.sqlite", "last"] >= rec.loc["done.sqlite", "created"]
    # --json: the same records, machine-readable
    assert json_status == 0
    records = json.loads(json_out)
    assert [r["study"] for r in records] == list(df["study"])
    for r, row in zip(records, df.to_dict("records")):
        assert set(r) == set(row)
        for key, value in row.items():
            missing = value is None or value is pd.NaT or (isinstance(value, float)
                                                           and np.isnan(value))
            if key in ("created", "last") and not missing:
                # the DataFrame's times are UTC timestamps; JSON has epoch seconds
                assert r[key] == pytest.approx(value.timestamp(), abs=1e-3), key
            else:
                assert r[key] is None if missing else r[key] == value, (r["study"], key)
    assert records[1]["state"] == "interrupted" and records[1]["stale"] == 1
    # listing changed nothing: the stale row is still for resume to redo
    with Study.load(folder / "interrupted.sqlite") as study:
        assert study.counts() == {"complete": 3, "failed": 0, "running": 0, "abandoned": 1}


def test_list_of_nothing_and_bad_folders(tmp_path, capsys):
    from hnnfit.fit import list_studies

    status, out, err = run(["list", tmp_path], capsys)
    assert status == 0 and out == f"no study files (*.sqlite) in {tmp_path}\n"
    assert list_studies(tmp_path).empty
    status, out, err = run(["list", tmp_path / "missing"], capsys)
    _check_error(status, out, err, f"folder must be an existing folder, got "
                                   f"'{tmp_path / 'missing'}'")
    with pytest.raises(TypeError, match="folder must be an instance of str or PathLike, got int 3"):
        list_studies(3)


def test_staged_fit_with_automatic_space(small, tmp_path, capsys):
    sections = base_sections(small["target"].resolve())
    del sections["space"]                          # no [space]: the automatic one
    sections["solver"] = {"name": '"cobyla"'}
    config = write_config(tmp_path / "staged.toml", sections)
    study_path = tmp_path / "staged.sqlite"
    status, out, err = run(["fit", str(config), "--study", str(study_path), "--staged",
                            "--n-evals", "3"], capsys)
    assert status == 0, err
    assert "stages:" in out and "final" in out
    study = Study.load(study_path)
    try:
        # only evprox1 acts before the 40 ms window ends; it is fitted on its
        # own ranges (timing, sigma, its non-zero weights)
        assert study.space.names[:2] == ["evprox1.mu", "evprox1.sigma"]
        assert all(n.startswith("evprox1.") for n in study.space.names)
        assert [s.name for s in study.stages] == ["final"]
        assert study.n_complete == 3
    finally:
        study.close()
    status, out, err = run(["show", str(study_path)], capsys)
    assert status == 0 and "stages:" in out


# --------------------------------------------------------------------------
# machine-readable output, --debug, exit statuses of I/O failures
# --------------------------------------------------------------------------
def test_show_json(small, capsys):
    before = digest(small["study"])
    status, out, err = run(["show", small["study"], "--json", "--last", 2], capsys)
    assert status == 0, err
    assert digest(small["study"]) == before
    record = json.loads(out)
    with Study.load(small["study"]) as study:
        assert record["study"] == str(study.path)
        assert record["description"] == study.description
        assert record["machine"] == study.machine
        assert record["parameters"] == [p.to_dict() for p in study.space]
        assert record["counts"] == study.counts()
        assert record["seeds_used"] == study.used_seeds() == [0]
        assert record["best"] == {"value": study.best_value, "params": study.best_params}
        rows = study.evaluations.tail(2).to_dict("records")
    assert record["stages"] is None and record["cma_mean"] is None
    assert [r["id"] for r in record["last"]] == [r["id"] for r in rows]
    for mine, row in zip(record["last"], rows):
        assert mine["status"] == row["status"] and mine["value"] == row["value"]
        assert mine["params"] == {n: row[n] for n in ("evprox1.mu", "evprox1.sigma")}


def test_debug_prints_the_traceback(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    for argv in (["--debug", "show", missing], ["show", missing, "--debug"]):
        status, out, err = run(argv, capsys)
        assert status == 2
        assert err.startswith("Traceback (most recent call last):")
        assert err.strip().splitlines()[-1] == (f"FileNotFoundError: study file "
                                                f"'{missing}' does not exist")
    # without it, one line
    status, out, err = run(["show", missing], capsys)
    _check_error(status, out, err, "none.sqlite")


def _check_io_error(status, out, err, expected):
    assert status == cli.EXIT_IO == 74
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err + out, err
    assert lines[0].startswith("hnnfit: error:") and expected in lines[0]


def test_io_failures_exit_74(small, tmp_path, capsys):
    # a study file damaged past its header: the right file, broken by its
    # storage, so an I/O failure (exit 74) rather than bad input
    corrupt = tmp_path / "corrupt.sqlite"
    data = bytearray(small["study"].read_bytes())
    for i in range(8192, len(data), 97):
        data[i] = (data[i] + 77) % 256
    corrupt.write_bytes(data)
    status, out, err = run(["show", corrupt], capsys)
    _check_io_error(status, out, err, f"study file '{corrupt}' is damaged (database disk "
                                      f"image is malformed)")
    # a full disk: /dev/full takes the file open, then refuses every write
    status, out, err = run(["simulate", "default.json", "--out", "/dev/full", "--tstop",
                            "10", "--mesh", "3", "3"], capsys)
    _check_io_error(status, out, err, "No space left on device")
    assert cli._exit_status(OSError(5, "Input/output error")) == 74
    from hnnfit.exceptions import StudyIOError

    assert cli._exit_status(StudyIOError("read-only")) == 74
    assert cli._exit_status(FileNotFoundError("no such file")) == 2


def test_export_refuses_to_overwrite_the_study(study_copy, capsys):
    before = digest(study_copy)
    for out in (study_copy, Path(f"{study_copy}-wal"), Path(f"{study_copy}-shm"),
                Path(f"{study_copy}.lock"),
                study_copy.parent / ".." / study_copy.parent.name / study_copy.name):
        status, stdout, err = run(["export", study_copy, out], capsys)
        _check_error(status, stdout, err, f"OUT must not be the study file or a file "
                                          f"SQLite or hnnfit keeps beside it (-wal, -shm, "
                                          f"-journal, .lock), got '{out}'")
    assert digest(study_copy) == before
    with Study.load(study_copy) as study:
        assert study.n_complete == 3
