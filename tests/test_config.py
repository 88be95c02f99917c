"""Fit configurations as objects: load, check, round-trip, build (hnnfit.config)."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from hnnfit.config import (FitConfig, FitSetup, NetworkConfig, PolishConfig, RunConfig,
                           SolverConfig, TargetConfig, build_fit, check_stage_budget,
                           load_config, write_config)
from hnnfit.demo import demo_config_path, demo_metadata
from hnnfit.fit.space import Parameter
from hnnfit.fit.targets import read_target
from hnnfit.params import read_params, write_params

TSTOP = 40.0


@pytest.fixture
def target(tmp_path):
    """A two-column dipole file (ms, nAm) covering 0-40 ms."""
    times = np.arange(0.0, TSTOP + 0.025, 0.5)
    path = tmp_path / "target.txt"
    np.savetxt(path, np.column_stack([times, 20.0 * np.sin(times / 6.0)]))
    return path


def sections(target):
    """A small fit's sections, as TOML reads them."""
    return {
        "network": {"params": "default.json", "mesh_shape": [3, 3]},
        "target": {"file": str(target), "tmin": 0.0, "tmax": TSTOP},
        "objective": {"n_trials": 1, "seeds": [0], "smooth_window": 10.0,
                      "scale": 3000.0, "metric": "rmse"},
        "space": {"evprox1.mu": [20.0, 35.0],
                  "evprox1.sigma": {"low": 1.0, "high": 6.0, "log": True}},
        "solver": {"name": "bayesian", "seed": 0, "options": {"n_initial_points": 2}},
        "run": {"n_evals": 3, "n_jobs": 1},
    }


def test_from_dict_fills_defaults_and_types(target):
    config = FitConfig.from_dict(sections(target))
    assert config.network == NetworkConfig(params=config.network.params, mesh_shape=(3, 3))
    assert config.network.params.endswith("default.json")
    assert config.target == TargetConfig(file=str(target), tmin=0.0, tmax=TSTOP)
    assert config.space == [Parameter("evprox1.mu", 20.0, 35.0),
                            Parameter("evprox1.sigma", 1.0, 6.0, log=True)]
    # a [space] that names parameters and says nothing of auto fits just those
    assert config.space_auto is False
    assert config.solver == SolverConfig("bayesian", 0, {"n_initial_points": 2}, None)
    assert config.run == RunConfig(n_evals=3, n_jobs=1, study=None, staged=False)
    assert config.polish is None and config.path is None


def test_round_trip_through_dict_and_toml(target, tmp_path):
    data = sections(target)
    data["network"]["evoked_drives"] = [{"name": "evprox3", "mu": 30.0, "sigma": 2.0,
                                         "location": "proximal",
                                         "weights_ampa": {"L5_pyramidal": 0.5}}]
    data["objective"]["band"] = [15.0, 30.0]
    data["space"]["auto"] = True
    data["space"]["evprox1.mu"] = {"low": 21.0, "high": 30.0, "integer": True}
    data["solver"]["x0"] = {"evprox1": {"mu": 25.0}}
    data["run"].update(staged=True, stage_evals={"evprox1": 2}, study="fits/a.sqlite")
    data["polish"] = {"solver": "pattern", "n_evals": 4, "options": {"step": 0.1},
                      "only": ["evprox1"], "objective": {"seeds": [1000], "dt": 0.05},
                      "space": {"evprox1.mu": [22.0, 28.0]}}
    config = FitConfig.from_dict(data)
    assert config.objective["band"] == (15.0, 30.0)
    assert config.solver.x0 == {"evprox1.mu": 25.0}
    assert config.polish == PolishConfig(
        solver="pattern", seed=None, options={"step": 0.1}, n_evals=4, only=["evprox1"],
        objective={"seeds": [1000], "dt": 0.05},
        space=[Parameter("evprox1.mu", 22.0, 28.0)])
    # the input dict is not changed by reading it
    assert data["solver"]["x0"] == {"evprox1": {"mu": 25.0}}
    again = FitConfig.from_dict(config.to_dict())
    assert again == config
    path = write_config(config, tmp_path / "written.toml")
    loaded = load_config(path)
    assert loaded == config and loaded.path == path
    assert loaded.to_dict() == config.to_dict()
    # writing what was read gives the same text
    assert write_config(loaded, tmp_path / "again.toml").read_text() == path.read_text()


def test_equality_sees_every_difference(target):
    config = FitConfig.from_dict(sections(target))
    for change in ({"run": {"n_evals": 4, "n_jobs": 1}},
                   {"space": {"evprox1.mu": [20.0, 35.5]}},
                   {"objective": {**sections(target)["objective"], "seeds": [1]}}):
        assert FitConfig.from_dict({**sections(target), **change}) != config


def test_relative_inputs_follow_base(target, tmp_path):
    params = read_params("default.json")
    params["t_evprox_1"] = 22.5
    write_params(params, tmp_path / "mine.json")
    data = sections(target.name)
    data["network"]["params"] = "mine.json"
    config = FitConfig.from_dict(data, base=tmp_path)
    assert config.network.params == str(tmp_path / "mine.json")
    assert config.target.file == str(tmp_path / "target.txt")
    # without base, relative to the working directory
    with pytest.raises(FileNotFoundError, match="params 'mine.json' in \\[network\\] of "
                                                "the config must be a parameter file"):
        FitConfig.from_dict(data, base=tmp_path / "elsewhere")


def test_errors_name_the_file_or_the_config(target, tmp_path):
    data = sections(target)
    data["objective"]["smoothing"] = 3.0
    with pytest.raises(ValueError, match="key 'smoothing' in \\[objective\\] of the config "
                                         "must be one of"):
        FitConfig.from_dict(data)
    path = tmp_path / "bad.toml"
    path.write_text('[network]\nparams = "default.json"\n[target]\nfile = "t.txt"\n'
                    '[objective]\nsmoothing = 3.0\n')
    with pytest.raises(ValueError, match=f"key 'smoothing' in \\[objective\\] of {path}"):
        load_config(path)
    with pytest.raises(ValueError, match="a config must be a table of sections"):
        FitConfig.from_dict([("network", {})])


def test_study_paths(target, tmp_path):
    config = FitConfig.from_dict(sections(target))
    with pytest.raises(ValueError, match="study in \\[run\\] must be given"):
        config.study_path()
    path = write_config(config, tmp_path / "erp.toml")
    assert load_config(path).study_path() == Path("studies") / "erp.sqlite"
    config.run.study = "fits/x.sqlite"
    assert config.study_path() == Path("fits/x.sqlite")
    assert PolishConfig().study_path("fits/x.sqlite") == Path("fits/x_polish.sqlite")
    polish = PolishConfig(solver="pattern", only=["evprox1"], objective={"dt": 0.05},
                          space=[Parameter("evprox1.mu", 20.0, 30.0)], seed=3)
    assert polish.polish_kwargs() == {
        "overrides": {"evprox1.mu": Parameter("evprox1.mu", 20.0, 30.0)},
        "only": ["evprox1"], "objective": {"dt": 0.05}, "solver": "pattern",
        "solver_options": {}, "seed": 3}
    assert PolishConfig(study="p.sqlite").study_path("fits/x.sqlite") == Path("p.sqlite")


def test_build_fit(target):
    setup = build_fit(FitConfig.from_dict(sections(target)))
    assert isinstance(setup, FitSetup)
    assert setup.space.names == ["evprox1.mu", "evprox1.sigma"]
    assert setup.net.external_drives["evprox1"]["dynamics"]["mu"] == pytest.approx(26.61)
    assert setup.target == read_target(target, tmin=0.0, tmax=TSTOP)
    assert setup.objective["smooth_window"] == 10.0
    assert setup.solver.name == "bayesian" and setup.solver.x0 is None
    assert setup.stage_names is None and setup.polish is None and not setup.staged
    kwargs = setup.study_kwargs()
    assert kwargs == {"net": setup.net, "target": setup.target, "space": setup.space,
                      "objective": setup.objective, "solver": "bayesian",
                      "solver_options": {"n_initial_points": 2}, "seed": 0, "x0": None,
                      "stages": None}
    assert setup.study_kwargs(staged=True)["stages"] == "evoked"
    with pytest.raises(TypeError, match="config must be"):
        build_fit(sections(target))


def test_unknown_solver_options_list_the_valid_ones(target):
    data = sections(target)
    data["solver"] = {"name": "cma", "options": {"sigma": 0.1}}
    with pytest.raises(ValueError) as info:
        build_fit(FitConfig.from_dict(data))
    assert str(info.value) == ("options in [solver] must be options of the 'cma' solver "
                               "(sigma0, popsize), got 'sigma'; did you mean 'sigma0'?")


def test_check_stage_budget():
    check_stage_budget({"a": 2}, ["a", "b", "final"], 4)
    with pytest.raises(ValueError, match="n_evals must cover stage_evals \\(2\\) and one "
                                         "evaluation for each other stage \\(2\\), got 3"):
        check_stage_budget({"a": 2}, ["a", "b", "final"], 3)


def test_demo_config_target_and_truth():
    config = load_config(demo_config_path())
    meta = demo_metadata()
    space = {p.name: p for p in config.space}
    assert set(space) == set(meta["true_values"]) == {"evprox1.mu", "evdist1.mu"}
    assert [(p["name"], p["low"], p["high"]) for p in meta["space"]] == \
        [(p.name, p.low, p.high) for p in config.space]
    for name, true in meta["true_values"].items():
        p = space[name]
        assert p.low < true < p.high
        # inside, but not at the centre: the fit has to find it
        assert abs((true - p.low) / (p.high - p.low) - 0.5) > 0.1
        # and moved away from the parameter file's published value
        assert abs(meta["published_values"][name] - true) > 2.0
    # the target file is the one described, and reads and validates
    target_path = demo_config_path().parent / meta["target_file"]
    assert hashlib.sha256(target_path.read_bytes()).hexdigest() == meta["target_sha256"]
    assert config.target.file == str(target_path)
    target = read_target(target_path, tmin=config.target.tmin, tmax=config.target.tmax)
    assert target.tmin == meta["window"]["tmin"] and target.tmax == meta["window"]["tmax"]
    assert target.dt == pytest.approx(meta["window"]["sample_dt"])
    # processing and budget as described; a quick fit
    assert config.objective["smooth_window"] == meta["processing"]["smooth_window"]
    assert config.objective["scale"] == meta["processing"]["scale"]
    assert config.objective["seeds"] == meta["simulation"]["seeds"]
    assert Path(config.network.params).name == meta["network"]["params"]
    assert tuple(config.network.mesh_shape) == tuple(meta["network"]["mesh_shape"])
    assert 20 <= config.run.n_evals <= 30 and config.run.n_jobs == 2
    # the noise is what the description says (target minus clean signal has that RMS)
    assert meta["clean_rmse_to_target"] == pytest.approx(meta["noise"]["sd_nAm"], rel=0.3)
    # the parameter names address the full-size demo network (built, not simulated)
    setup = build_fit(config)
    assert setup.space.current_values(setup.net) == meta["published_values"]
    assert setup.target == target


def test_dataset_target(target, tmp_path, shared_dir, monkeypatch):
    monkeypatch.setenv("HNNFIT_DATA", str(shared_dir / "data" / "MEG_detection_data"))
    data = sections(target)
    data["target"] = {"dataset": "yes_trial_S1_ERP_all_avg", "tmin": 0.0, "tmax": 100.0}
    setup = build_fit(load_config(write_config(FitConfig.from_dict(data),
                                               tmp_path / "d.toml")))
    assert setup.target.tmax <= 100.0 and setup.target.n_times > 50


def test_params_file_next_to_config(target, tmp_path):
    params = read_params("default.json")
    params["t_evprox_1"] = 22.5
    write_params(params, tmp_path / "mine.json")
    data = sections(target)
    data["network"]["params"] = "mine.json"
    path = tmp_path / "c.toml"
    path.write_text(write_config(FitConfig.from_dict(data, base=tmp_path),
                                 path).read_text().replace(str(tmp_path / "mine.json"),
                                                           "mine.json"))
    assert 'params = "mine.json"' in path.read_text()
    setup = build_fit(load_config(path))
    assert setup.net.external_drives["evprox1"]["dynamics"]["mu"] == 22.5
    # a bare name found nowhere next to the config is hnnfit's own file
    path.write_text(path.read_text().replace('"mine.json"', '"default"'))
    assert load_config(path).network.params.endswith("default.json")
