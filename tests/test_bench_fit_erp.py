"""bench/fit_erp.py: its configurations build, and it runs one end to end."""
import json
from pathlib import Path

import pytest

from hnnfit.config import build_fit, load_config

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fit_erp.py"
CONFIGS = BENCH.parent / "configs"


@pytest.fixture(scope="module")
def fit_erp(load_bench):
    return load_bench("fit_erp")


@pytest.fixture
def data(shared_dir, monkeypatch):
    monkeypatch.setenv("HNNFIT_DATA", str(shared_dir / "data" / "MEG_detection_data"))


def test_the_readme_runs_are_configs_that_build(data):
    # checked against the network, target and polish (nothing simulated)
    stages = {"yes_trial_erp": None,
              "supra_three_drives": ["evprox1", "evdist1+evprox2", "final"],
              "supra_four_drives": ["evprox1", "evdist1+evprox2+evprox3", "final"]}
    assert sorted(p.stem for p in CONFIGS.glob("*.toml")) == sorted(stages)
    for name, names in stages.items():
        config = load_config(CONFIGS / f"{name}.toml")
        setup = build_fit(config)
        assert setup.stage_names == names and config.run.staged
        assert setup.objective["seeds"] == [0, 1, 2] and setup.objective["scale"] == 3000.0
    yes = load_config(CONFIGS / "yes_trial_erp.toml")
    assert yes.space_auto and yes.polish is None and yes.run.n_evals == 150
    three = load_config(CONFIGS / "supra_three_drives.toml")
    assert three.polish.solver == "cma" and three.polish.n_evals == 396
    assert three.run.n_evals + three.polish.n_evals + 39 == 656
    four = load_config(CONFIGS / "supra_four_drives.toml")
    assert [d["name"] for d in four.network.evoked_drives] == ["evprox3"]
    assert four.polish.solver == "pattern" and len(four.polish.only) == 12
    # the three-drive space is the four-drive one without evprox3
    assert three.space == [p for p in four.space if not p.name.startswith("evprox3.")]


@pytest.mark.parametrize("argv, message", [
    (["--held-out-groups", "0"], "--held-out-groups must be at least 1, got 0"),
    (["--refine-trials", "0"], "--refine-evals must be >= 0 and --refine-trials >= 1, "
                               "got 0 and 0"),
    (["--refine-dt", "0"], "--refine-dt must be > 0 ms, got 0.0"),
    (["--n-jobs", "0"], "--n-jobs must be at least 1, got 0"),
    (["--held-out", "1-3"], "--held-out seeds 1-3 overlap the fit's seeds 0-2"),
])
def test_bad_options_exit_with_a_message(fit_erp, data, tmp_path, argv, message):
    with pytest.raises(SystemExit) as info:
        fit_erp.main([str(CONFIGS / "supra_four_drives.toml"), "--out", str(tmp_path),
                      *argv])
    assert message in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_bad_config_is_reported_with_its_path(fit_erp, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nparams = "default.json"\n[target]\ndataset = "S1_SupraT"\n'
                   '[objective]\nsmoothing = 3.0\n')
    with pytest.raises(SystemExit) as info:
        fit_erp.main([str(bad), "--out", str(tmp_path / "out")])
    assert str(info.value).startswith(f"{bad}: key 'smoothing' in [objective] of {bad}")


def test_an_interrupted_study_stops_the_script(fit_erp, tmp_path):
    # Study.optimize returns normally after Ctrl-C (what finished is kept);
    # the script must not go on to judge an unfinished fit
    from types import SimpleNamespace

    class Interrupted:
        path = tmp_path / "refine.sqlite"
        n_complete, n_failed = 7, 1

        def optimize(self, n_evals, **kwargs):
            self.called = (n_evals, kwargs)
            return SimpleNamespace(interrupted=True)

    study = Interrupted()
    with pytest.raises(SystemExit) as info:
        fit_erp._optimize(study, 40, 2)
    assert study.called == (40, {"n_jobs": 2, "progress": True})
    assert str(info.value) == (f"interrupted; 8 evaluations recorded in {study.path}. Run "
                               f"the same command with the same --out to continue.")
    Interrupted.optimize = lambda self, n, **kw: SimpleNamespace(interrupted=False, n=n)
    assert fit_erp._optimize(study, 5, 1).n == 5


TINY = """
[network]
params = "default.json"
mesh_shape = [3, 3]
[target]
dataset = "S1_SupraT"
tmax = 100.0
[objective]
smooth_window = 20.0
[space]
"evprox1.mu" = [15.0, 35.0]
"evdist1.mu" = [50.0, 75.0]
[solver]
options = { n_initial_points = 1 }
[run]
n_evals = 3
staged = true
[polish]
solver = "cma"
n_evals = 4
options = { popsize = 2, sigma0 = 0.1 }
[polish.objective]
seeds = [1000]
resample = true
dt = 0.05
"""


def test_the_bench_runs_a_config(fit_erp, data, tmp_path, capsys):
    # a 3x3 network, 3 staged evaluations, 2 CMA-ES generations of 2 on new
    # trials at 0.05 ms, their averaged mean refined in 2 steps on seed 2000
    from hnnfit.fit import Study

    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "out"
    fit_erp.main([str(config), "--out", str(out), "--score",
                  "default.json", "--take-cma-mean", "--refine-evals", "2",
                  "--refine-trials", "1", "--refine-only", "evprox1.mu", "--held-out",
                  "100", "--held-out-groups", "2", "--goal", "50"])
    text = capsys.readouterr().out
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    kinds = [r["kind"] for r in records]
    assert kinds == ["hand-tuned", "stage", "stage", "stage", "polish", "refine", "fit"]
    # no baseline: nothing measured with hnn-core, and no published figure
    # exists for this pair, so none is shown
    assert records[0]["reference_source"] is None and records[0]["reference_1trial"] is None
    assert "hnn-core 0.6.1, published from an earlier run, not measured here" in text
    fit = records[-1]
    with Study.load(out / "tiny.sqlite") as study, \
            Study.load(out / "tiny_polish.sqlite") as polish, \
            Study.load(out / "tiny_refine.sqlite") as refine:
        # the fit and the polish are what 'hnnfit fit' makes of the config
        assert study.description == f"hnnfit fit {config}"
        assert [len(s.evaluations) for s in (study, polish, refine)] == [3, 4, 2]
        assert fit["n_evals"] == 9 and fit["study"] == str(refine.path)
        assert refine.objective.seeds == [2000] and refine.space.names == ["evprox1.mu"]
        solver = polish.replay_solver()
        mean = solver.averaged_mean(solver.averaging_window())
        # the refinement started at the CMA-ES mean and kept the rest there
        assert refine.evaluations["evprox1.mu"].iloc[0] == pytest.approx(mean["evprox1.mu"])
        assert fit["best_params"]["evdist1.mu"] == pytest.approx(mean["evdist1.mu"])
        assert fit["best_params"]["evprox1.mu"] == refine.best_params["evprox1.mu"]
        assert fit["fit_rmse"] == refine.best_value
        # judged at the fit's own 0.025 ms step, on seed 100
        assert polish.objective.dt == 0.05 and study.objective.dt == 0.025
        held = study.objective.score_held_out(fit["best_params"], [100])["value"]
    assert fit["held_out_rmse"] == pytest.approx(held, rel=1e-9)
    assert fit["held_out_groups"] == [[100], [101]]
    assert "+ pattern refine |" in text
    verdict = "PASS" if fit["held_out_rmse"] < 50 else "FAIL"
    assert f"{verdict}: held-out RMSE {fit['held_out_rmse']:.2f}" in text
    # a second run continues the studies: nothing new to evaluate
    fit_erp.main([str(config), "--out", str(out), "--held-out", "100"])
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")][-1]
    assert again["n_evals"] == 7


def test_the_baseline_target_file_holds_the_target(fit_erp, tmp_path):
    # hnn-core reads the target from this two-column file: it must hold the
    # same samples, to the last bit
    import numpy as np

    from hnnfit.fit.targets import read_target

    target = read_target(np.c_[np.linspace(0.0, 40.0, 25), np.sin(np.arange(25.0)) / 3])
    path = fit_erp.write_target(target, tmp_path / "t.txt")
    data = np.loadtxt(path)
    assert data.shape == (25, 2)
    assert np.array_equal(data[:, 0], target.times)
    assert np.array_equal(data[:, 1], target.values)


def test_a_missing_baseline_interpreter_is_named(fit_erp, tmp_path):
    missing = str(tmp_path / "nopython")
    with pytest.raises(SystemExit, match=f"--baseline-python must be an interpreter, got "
                                         f"{missing!r}"):
        fit_erp.run_baseline(missing, fit_erp.__file__, {"kind": "score"})
