"""``hnnfit fit`` with recipes: a recording fitted in one line, recipe and time
in a config, and the refusals of what does not go together; one small real
recipe fit (3x3 network, NEURON)."""
import numpy as np
import pytest

from hnnfit import cli
from hnnfit.config import FitConfig, load_config, recording_config, write_config
from hnnfit.fit import Study


@pytest.fixture
def recording(tmp_path):
    times = np.arange(0.0, 170.0 + 1e-9, 1.0)
    path = tmp_path / "erp.txt"
    np.savetxt(path, np.column_stack([times, np.sin(times / 20.0)]))
    return path


def _params(shared_dir, name="ERPYesSupraT.param"):
    return str(shared_dir / "params" / name)


def test_recording_config_takes_smoothing_and_scale_from_the_parameter_file(
        recording, shared_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = recording_config(str(recording), _params(shared_dir), time="20m", n_jobs=2)
    assert config.objective["smooth_window"] == 20.0      # dipole_smooth_win
    assert config.objective["scale"] == 3000.0            # dipole_scalefctr
    assert config.objective["seeds"] == [0, 1, 2]
    assert config.space_auto and config.run.recipe == "erp" and config.run.time == "20m"
    assert config.run.n_jobs == 2
    assert config.study_path().name == "erp_ERPYesSupraT.sqlite"
    assert config.path.name == "erp_ERPYesSupraT.toml"
    # written beside the study, it reads back the same
    config.path.parent.mkdir(parents=True)
    write_config(config, config.path)
    again = load_config(config.path)
    assert again.to_dict() == config.to_dict()
    # a parameter file without HNN's display keys: 30 ms and a fitted scale
    bare = recording_config(str(recording), "default.json")
    assert bare.objective["smooth_window"] == 30.0 and bare.objective["scale"] == 3000.0


def test_recording_config_refuses_what_is_neither_a_file_nor_a_dataset(shared_dir):
    with pytest.raises(FileNotFoundError, match=r"recording must be a data file or one "
                       r"of the datasets \(.*S1_SupraT.*\), got 'nope.txt'"):
        recording_config("nope.txt", _params(shared_dir))


def test_a_dataset_name_is_a_recording(shared_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = recording_config("S1_SupraT", _params(shared_dir))
    assert config.target.dataset == "S1_SupraT" and config.target.file is None
    assert config.run.time == "30m"


@pytest.mark.parametrize("argv, message", [
    (["REC"], "a recording ('REC') needs --params FILE"),
    (["REC", "--params", "P", "--time", "soon"], "time must be a duration"),
    (["REC", "--params", "P", "--recipe", "fast"], "recipe must be one of 'erp'"),
    (["REC", "--params", "P", "--n-evals", "5"], "--n-evals and --staged do not go"),
    (["CONF", "--params", "P"], "--params goes with a recording"),
    (["REC", "--params", "P", "--add-drives", "9"],
     "--add-drives must be 'auto', 'none' or a number of drives from 0 to 3, got '9'"),
])
def test_bad_recipe_commands_are_refused_before_any_study(argv, message, recording,
                                                          shared_dir, tmp_path,
                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "fit.toml"
    write_config(FitConfig.from_dict({
        "network": {"params": _params(shared_dir)},
        "target": {"file": str(recording)}, "space": {"auto": True}}, path=conf), conf)
    subst = {"REC": str(recording), "P": _params(shared_dir), "CONF": str(conf)}
    status = cli.main(["fit"] + [subst.get(a, a) for a in argv])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE
    assert message.replace("'REC'", repr(str(recording))) in err
    assert "Traceback" not in err
    assert not (tmp_path / "studies").exists()


def test_recipe_keys_in_a_config(tmp_path, recording, shared_dir):
    base = {"network": {"params": _params(shared_dir)}, "target": {"file": str(recording)}}
    config = FitConfig.from_dict({**base, "run": {"recipe": "erp-refine", "time": "1h"}})
    assert config.run.uses_recipe and config.run.recipe == "erp-refine"
    assert not FitConfig.from_dict(base).run.uses_recipe
    with pytest.raises(ValueError, match="recipe must be one of"):
        FitConfig.from_dict({**base, "run": {"recipe": "best"}})
    with pytest.raises(ValueError, match="time must be a duration"):
        FitConfig.from_dict({**base, "run": {"time": "an hour"}})
    assert FitConfig.from_dict({**base, "run": {"add_drives": 2}}).run.add_drives == 2
    with pytest.raises(ValueError, match="add_drives must be 'auto', 'none' or a number of "
                                         "drives from 0 to 3, got 'all' \\(in \\[run\\]"):
        FitConfig.from_dict({**base, "run": {"add_drives": "all"}})
    with pytest.raises(ValueError, match="must not also give stage_evals or \\[polish\\]"):
        FitConfig.from_dict({**base, "run": {"time": "1h"}, "polish": {"n_evals": 5}})


def test_resume_of_a_recipe_study_points_to_its_command(tmp_path, capsys, monkeypatch):
    from hnnfit.fit.recipe_runner import RECIPE_KEY
    from test_fit_recipes import _setup

    setup = _setup()
    path = tmp_path / "s.sqlite"
    study = Study.create(path, **setup.study_kwargs(staged=True),
                         description="hnnfit fit studies/s.toml")
    study.storage.set_metadata(RECIPE_KEY, '{"name": "erp", "phases": {}}')
    study.close()
    status = cli.main(["resume", str(path)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE
    assert "continue the recipe with the command that started it (hnnfit fit " \
           "studies/s.toml)" in err


# a proximal drive onto every cell type, as a parameter file writes one
WEIGHTS = {"L2_basket": 0.05, "L2_pyramidal": 0.1, "L5_basket": 0.05, "L5_pyramidal": 0.2}
DELAYS = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0, "L5_pyramidal": 1.0}


def test_a_small_recipe_fit_from_the_command_line(tmp_path, monkeypatch, capsys):
    """A real recipe on a 3x3 network: the config, three studies, the report."""
    from hnnfit import simulate_dipole
    from hnnfit.network import jones_2009_model

    monkeypatch.chdir(tmp_path)
    # the target: the network the config describes with evprox1 at 30 ms, not 25
    truth = jones_2009_model(mesh_shape=(3, 3))
    truth.add_evoked_drive("evprox1", mu=30.0, sigma=2.0, numspikes=1, location="proximal",
                           weights_ampa=WEIGHTS, synaptic_delays=DELAYS, event_seed=4)
    dpl = simulate_dipole(truth, tstop=60.0, n_trials=1)[0].smooth(5.0).scale(100.0)
    np.savetxt("target.txt", np.column_stack([dpl.times, dpl.data["agg"]]))

    conf = tmp_path / "small.toml"
    write_config(FitConfig.from_dict({
        "network": {"params": "default.json", "mesh_shape": [3, 3],
                    "add_drives_from_params": False,
                    "evoked_drives": [{"name": "evprox1", "mu": 25.0, "sigma": 2.0,
                                       "location": "proximal",
                                       "weights_ampa": WEIGHTS,
                                       "synaptic_delays": DELAYS, "event_seed": 4}]},
        "target": {"file": str(tmp_path / "target.txt")},
        "objective": {"n_trials": 1, "seeds": [0], "smooth_window": 5.0, "scale": 100.0},
        "space": {"auto": False, "evprox1.mu": [20.0, 35.0]},
        "run": {"recipe": "erp-refine", "time": "60s", "n_jobs": 1,
                "study": "studies/small.sqlite"}}, path=conf), conf)
    (tmp_path / "studies").mkdir()
    status = cli.main(["fit", str(conf)])
    out = capsys.readouterr().out
    assert status == cli.EXIT_OK, out
    # a phase whose share of a minute cannot pay for itself is left out,
    # and the output says so; the others each have their study
    left = [n for n in ("polish", "refine") if f"{n}: left out, its share" in out]
    for name in ("polish", "refine"):
        ran = (tmp_path / "studies" / f"small_{name}.sqlite").is_file()
        assert ran == (name not in left)
    assert (tmp_path / "studies" / "small.sqlite").is_file()
    assert "expected RMSE of a 3-trial average" in out
    # the point kept, written as a parameter file, moved from the start
    # towards the truth
    best = tmp_path / "studies" / "small_best.json"
    assert f"the point kept, as a parameter file: {best.relative_to(tmp_path)}" in out
    from hnnfit.params import read_params

    kept = read_params(best)["t_evprox_1"]
    assert abs(kept - 30.0) < abs(25.0 - 30.0) / 2
    search = Study.load(tmp_path / "studies" / "small.sqlite", readonly=True)
    assert search.objective.dt == 0.05
    for name in {"polish", "refine"} - set(left):
        local = Study.load(tmp_path / "studies" / f"small_{name}.sqlite", readonly=True)
        assert local.objective.dt == 0.05
    assert search.n_complete >= 3
