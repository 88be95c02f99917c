"""bench/fit_erp.py's option checks: bad combinations stop before any simulation."""
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fit_erp.py"


@pytest.fixture(scope="module")
def fit_erp():
    spec = importlib.util.spec_from_file_location("bench_fit_erp", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--select-means", "--polish", "cobyla"], "--select-means needs --polish cma"),
    (["--select-means"], "--select-means needs --polish cma"),
    (["--polish", "cma", "--surrogate-radius", "3"], "need --select-top or --select-means"),
    (["--polish", "cma", "--select-means", "--select-trials", "0"],
     "--select-trials must be at least 1, got 0"),
    (["--select-top", "2"], "needs --polish"),
    (["--take-cma-mean", "--polish", "cobyla"], "--take-cma-mean needs --polish cma"),
    (["--take-cma-mean", "--polish", "cma", "--select-means"],
     "excludes --select-top and --select-means, got --polish cma, --select-top 0, "
     "--select-means"),
    (["--take-cma-mean", "--polish", "cma", "--select-top", "4"], "--select-top 4"),
    (["--fit-trials", "4", "--group-size", "3"], "--group-size must divide"),
    (["--held-out-groups", "0"], "--held-out-groups must be at least 1, got 0"),
    (["--polish-seed", "1"], "--polish-seed must be >= 0 and needs --polish, got "
                             "--polish-seed 1, --polish None"),
    (["--polish", "cma", "--polish-seed", "-1"], "--polish-seed must be >= 0"),
    (["--polish-dt", "0.05"], "--polish-dt must be > 0 ms and needs --polish, got "
                              "--polish-dt 0.05, --polish None"),
    (["--polish", "cma", "--polish-dt", "0"], "--polish-dt must be > 0 ms"),
    (["--refine", "pattern"], "--refine needs --polish (it refines the polish's point)"),
    (["--polish", "cma", "--refine", "pattern", "--refine-trials", "0"],
     "--refine-evals and --refine-trials must be at least 1, got 100 and 0"),
    (["--polish", "cma", "--refine", "pattern", "--refine-dt", "0"],
     "--refine-dt must be > 0 ms, got 0.0"),
    (["--polish", "cma", "--refine", "pattern", "--fit-trials", "3", "--group-size", "3",
      "--refine-trials", "4"], "--group-size must divide --fit-trials, --polish-trials, "
                               "--refine-trials"),
    (["--add-drive", "evprox3"], "--add-drive must be a JSON object of add_evoked_drive's "
                                 "keywords, got 'evprox3'"),
    (["--add-drive", '{"name": "evprox3", "mu": 130}'],
     "--add-drive 'evprox3' must give ['sigma', 'location'], got only ['mu', 'name']"),
    (["--add-drive", '{"name": "evprox3", "mu": 130, "sigma": 5, "locaton": "proximal"}'],
     "key 'locaton' of --add-drive 'evprox3' must be one of ['name', 'mu', 'sigma'"),
    (["--add-drive", '{"name": "evprox1", "mu": 130, "sigma": 5, "location": "proximal"}'],
     "name must be a new drive name, got 'evprox1' (already in use)"),
])
def test_bad_options_exit_with_a_message(fit_erp, tmp_path, argv, message):
    with pytest.raises(SystemExit) as info:
        fit_erp.main(argv + ["--out", str(tmp_path)])
    assert message in str(info.value)
    # nothing was started: no study file written
    assert not list(tmp_path.iterdir())


def test_selection_seeds_must_not_overlap_fit_or_held_out_seeds(fit_erp, shared_dir,
                                                                 tmp_path):
    # --select-means re-scores on seeds 50.. : a choice made on held-out
    # trials, or on trials the fit used, would not be a fair choice
    data = shared_dir / "data" / "MEG_detection_data"
    argv = ["--task", "supra", "--polish", "cma", "--polish-evals", "24",
            "--polish-popsize", "12", "--polish-trials", "3", "--select-means",
            "--held-out", "48", "49", "50", "--data-dir", str(data), "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="--held-out seeds"):
        fit_erp.main(argv)
    # fit trials 0-50 reach the selection's first seed
    argv = ["--task", "supra", "--fit-trials", "51", "--polish", "cma", "--select-means",
            "--data-dir", str(data), "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="selection's seeds"):
        fit_erp.main(argv)
    # --refine's fixed seeds start at the first multiple of 1000 above the
    # seeds a resampled polish may reach (1000 + 3 trials x 400 batches)
    argv = ["--task", "supra", "--polish", "cma", "--polish-resample", "--polish-trials", "3",
            "--polish-evals", "400", "--refine", "pattern", "--held-out", "2999", "3000",
            "3001", "--data-dir", str(data), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        fit_erp.main(argv)
    assert str(info.value) == ("--held-out seeds 2999-3001 overlap the fit seeds 0-2, "
                               "1000-2199, 3000-3011")
    assert not list(tmp_path.glob("*.sqlite"))



def test_add_drive_joins_the_automatic_space_and_the_stages(fit_erp, shared_dir):
    # the fit's start network gets the drive; the file's network is untouched
    from hnnfit.fit.space import evoked_space
    from hnnfit.fit.staging import group_evoked_drives

    net = fit_erp._network("ERPYesSupraT.param", shared_dir / "params")
    spec = ('{"name": "evprox3", "mu": 130, "sigma": 5, "location": "proximal", '
            '"weights_ampa": {"L5_pyramidal": 2.0}}')
    start = fit_erp._add_drives(net, [spec])
    assert "evprox3" not in net.external_drives
    drive = start.external_drives["evprox3"]
    assert drive["dynamics"] == {"mu": 130.0, "sigma": 5.0, "numspikes": 1}
    assert drive["weights_ampa"] == {"L5_pyramidal": 2.0}
    space = evoked_space(start)
    assert {"evprox3.mu", "evprox3.sigma", "evprox3.ampa.L5_pyramidal"} <= set(space.names)
    assert space["evprox3.mu"].low < 130 < space["evprox3.mu"].high
    # 130 +- 5 ms overlaps evprox2's window: one stage fits them together
    groups = [g.drives for g in group_evoked_drives(start)]
    assert groups == [["evprox1"], ["evdist1", "evprox2", "evprox3"]]
    assert fit_erp._add_drives(net, None) is net


def test_an_interrupted_study_stops_the_script(fit_erp, tmp_path):
    # Study.optimize returns normally after Ctrl-C (what finished is kept);
    # the script must not go on to build a polish from an unfinished fit
    from types import SimpleNamespace

    class Interrupted:
        path = tmp_path / "staged.sqlite"
        n_complete, n_failed = 7, 1

        def optimize(self, n_evals, **kwargs):
            self.called = (n_evals, kwargs)
            return SimpleNamespace(interrupted=True)

    args = SimpleNamespace(n_jobs=2, quiet=True)
    study = Interrupted()
    with pytest.raises(SystemExit) as info:
        fit_erp._optimize(study, 40, args, stage_evals={"final": 1})
    assert study.called == (40, {"n_jobs": 2, "progress": False, "stage_evals": {"final": 1}})
    assert str(info.value) == (f"interrupted; 8 evaluations recorded in {study.path}. Run "
                               f"the same command with --resume to continue.")
    # a loop that ran to its budget hands its summary back
    Interrupted.optimize = lambda self, n, **kw: SimpleNamespace(interrupted=False, n=n)
    assert fit_erp._optimize(study, 5, args).n == 5


def _tiny_supra_polish(shared_dir, tmp_path, n_evals, *extra):
    """Arguments of a seconds-long supra run: 2+2+1 staged evaluations on one
    trial, then 8 resampled CMA-ES evaluations at 0.05 ms keeping the mean."""
    data = shared_dir / "data" / "MEG_detection_data"
    return ["--task", "supra", "--fit-trials", "1", "--held-out", "100",
            "--n-evals", str(n_evals), "--stage-evals", "evprox1=2",
            "--stage-evals", "evdist1+evprox2=2", "--stage-evals", "final=1",
            "--polish", "cma", "--polish-evals", "8", "--polish-popsize", "4",
            "--polish-resample", "--take-cma-mean", "--polish-dt", "0.05", "--quiet",
            "--data-dir", str(data), "--params-dir", str(shared_dir / "params"),
            "--out", str(tmp_path), *extra]


@pytest.mark.slow
def test_take_cma_mean_keeps_the_point_hnnfit_budget_scores(fit_erp, shared_dir, tmp_path,
                                                           capsys):
    # a tiny run (1 trial, 2 CMA-ES generations of 4): what --take-cma-mean
    # keeps must be the averaged mean 'hnnfit budget --point cma-mean' reads
    # back from the study, not the polish's lowest single value
    import json
    import math

    from hnnfit.cli import _cma_mean
    from hnnfit.fit.api import Study

    fit_erp.main(_tiny_supra_polish(shared_dir, tmp_path, 13, "--polish-seed", "3"))
    out = capsys.readouterr().out
    assert "| cma mean averaged over the last 1 generations | 13 |" in out
    fit = [json.loads(line) for line in out.splitlines()
           if line.startswith("{") and '"kind": "fit"' in line][-1]
    # the mean was never evaluated on the fit's trials
    assert math.isnan(fit["fit_rmse"])
    polish = Study.load(fit["study"])
    assert polish.solver_settings["seed"] == 3
    mean, k, n = _cma_mean(polish)
    assert (k, n) == (1, 2)
    for name, value in mean.items():
        assert fit["best_params"][name] == pytest.approx(value, rel=1e-12, abs=1e-15)
    best = polish.best_params
    assert any(fit["best_params"][name] != best[name] for name in best)
    # the polish searched at 0.05 ms; the held-out trial is judged at the
    # staged fit's 0.025 ms
    staged = Study.load(Path(fit["study"]).with_name("fit_erp_supra_fixed.sqlite"))
    assert (polish.objective.dt, staged.objective.dt) == (0.05, 0.025)
    fine = staged.objective.validate(fit["best_params"], [100])["value"]
    coarse = polish.objective.validate(fit["best_params"], [100])["value"]
    assert fit["held_out_rmse"] == pytest.approx(fine, rel=1e-9)
    assert abs(fine - coarse) > 1e-6


def test_refine_starts_from_the_cma_mean_on_its_own_fixed_seeds(fit_erp, shared_dir,
                                                               tmp_path, capsys):
    # the tiny run above plus a 4-evaluation refinement of evprox1's mean on
    # seed 2000: it starts where --take-cma-mean would stop, keeps every
    # other parameter there, and its best point is what gets held-out scored
    import json

    from hnnfit.cli import _cma_mean
    from hnnfit.fit.api import Study

    fit_erp.main(_tiny_supra_polish(
        shared_dir, tmp_path, 17, "--refine", "pattern", "--refine-evals", "4",
        "--refine-trials", "1", "--refine-only", "evprox1.mu", "--refine-step", "0.1",
        "--refine-line", "1"))
    out = capsys.readouterr().out
    assert "+ pattern refine | 17 |" in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    fit = [r for r in lines if r["kind"] == "fit"][-1]
    rec = [r for r in lines if r["kind"] == "refine"][-1]
    refine = Study.load(tmp_path / "fit_erp_supra_fixed_refine.sqlite")
    polish = Study.load(tmp_path / "fit_erp_supra_fixed_polish.sqlite")
    mean, _, _ = _cma_mean(polish)
    rows = refine.storage.rows()
    assert len(rows) == rec["n_evals"] == 4 and refine.space.names == ["evprox1.mu"]
    assert all(r["seeds"] == [2000] for r in rows) and rec["seeds"] == [2000]
    assert rows[0]["params"]["evprox1.mu"] == pytest.approx(mean["evprox1.mu"], rel=1e-12)
    assert rec["start_value"] == rows[0]["value"]
    assert fit["study"] == str(refine.path)
    assert fit["fit_rmse"] == refine.best_value == min(r["value"] for r in rows)
    assert fit["best_params"]["evprox1.mu"] == refine.best_params["evprox1.mu"]
    for name, value in mean.items():
        if name != "evprox1.mu":
            assert fit["best_params"][name] == pytest.approx(value, rel=1e-12, abs=1e-15)
    # the other parameters sit in the refinement's network at the mean
    d = refine.net.external_drives["evdist1"]["dynamics"]
    assert d["mu"] == pytest.approx(mean["evdist1.mu"], rel=1e-12)


RUN21_SPEC = ('{"name": "evprox3", "mu": 130, "sigma": 5, "location": "proximal", '
              '"weights_ampa": {"L5_pyramidal": 2, "L2_pyramidal": 0.045, "L5_basket": 0.01}}')
RUN21_OVERRIDES = ["evprox2.ampa.L2_basket=6e-6:0.2:log", "evprox1.ampa.L5_basket=0.04:10:log",
                   "evdist1.ampa.L2_basket=0.006:3:log", "evprox2.ampa.L5_pyramidal=5:200:log"]
RUN21_POLISH = {"evprox2.mu": (80, 115), "evprox2.sigma": (4, 25),
                "evprox2.ampa.L2_pyramidal": (0.5, 50, True),
                "evprox2.ampa.L5_pyramidal": (5, 300, True),
                "evprox2.ampa.L5_basket": (0.01, 2, True),
                "evdist1.mu": (55, 72), "evdist1.sigma": (1, 10)}


def test_the_four_drive_example_config_is_run_21(fit_erp, shared_dir, monkeypatch):
    # examples/supra_four_drives.toml claims to repeat bench run 21 from the
    # command line: the same network, target, space, objective and polish
    from hnnfit.config import build_fit, load_config
    from hnnfit.fit.space import evoked_space
    from hnnfit.fit.targets import read_target

    monkeypatch.setenv("HNNFIT_DATA", str(shared_dir / "data" / "MEG_detection_data"))
    config = load_config(BENCH.parents[1] / "examples" / "supra_four_drives.toml")
    parts = build_fit(config)

    net = fit_erp._add_drives(fit_erp._network("ERPYesSupraT.param", shared_dir / "params"),
                              [RUN21_SPEC])
    assert list(parts.net.external_drives) == list(net.external_drives)
    for name, drive in net.external_drives.items():
        mine = parts.net.external_drives[name]
        for key in ("type", "location", "dynamics", "weights_ampa", "weights_nmda",
                    "event_seed", "synaptic_delays", "cell_specific", "n_drive_cells"):
            assert mine[key] == drive[key], (name, key)
    target = read_target(shared_dir / "data" / "MEG_detection_data" / "S1_SupraT.txt")
    assert parts.target == target
    overrides = fit_erp.wide_overrides(net, float(target.times[-1]))
    overrides.update(fit_erp._parse_pairs(RUN21_OVERRIDES, "--override", fit_erp._range))
    space = evoked_space(net, tstop=float(target.times[-1]), overrides=overrides)
    assert [p.to_dict() for p in parts.space] == [p.to_dict() for p in space]
    assert parts.objective == {"n_trials": 3, "seeds": [0, 1, 2], "group_size": 3,
                                  "smooth_window": fit_erp.TASKS["supra"]["smooth"],
                                  "scale": 3000.0, "metric": "rmse", "engine": "auto"}
    assert config.run.stage_evals == {"evprox1": 40, "evdist1+evprox2+evprox3": 100,
                                            "final": 1}
    assert parts.stage_names == list(config.run.stage_evals)
    polish = parts.polish
    assert polish.solver == "pattern" and polish.options == {"step": 0.05}
    assert polish.n_evals == 190
    assert polish.objective["seeds"] == list(range(fit_erp.REFINE_SEED0,
                                                      fit_erp.REFINE_SEED0 + 12))
    assert polish.objective["dt"] == 0.05 and polish.objective["group_size"] == 3
    assert sorted(polish.only) == sorted(
        [f"evprox{k}.{p}" for k in (2, 3) for p in
         ("mu", "sigma", "ampa.L5_pyramidal", "ampa.L2_pyramidal", "ampa.L5_basket")]
        + ["evdist1.mu", "evdist1.sigma"])
    got = {p.name: (p.low, p.high, p.log) for p in polish.space}
    assert got == {k: (float(v[0]), float(v[1]), len(v) == 3) for k, v in RUN21_POLISH.items()}
