"""Structure search: residual features beyond trial noise, candidate drives,
paired model comparison (no NEURON), and the search inside a recipe on small
synthetic cases made with and without one drive more than the start network."""
import numpy as np
import pytest

from hnnfit.config import FitSetup, SolverConfig
from hnnfit.fit import Target
from hnnfit.fit.objective import error_budget
from hnnfit.fit.recipe_runner import run_recipe
from hnnfit.fit.recipes import Phase, Recipe
from hnnfit.fit.space import evoked_space
from hnnfit.fit.structure import (DRIVE_LATENCY, compare_models, gain_and_noise,
                                  propose_drives, residual_features)
from hnnfit.network import jones_2009_model

TIMES = np.arange(0.0, 100.0 + 1e-9, 0.5)
PROX = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0, "L5_pyramidal": 1.0}
WEIGHTS = {"L2_basket": 0.08, "L2_pyramidal": 0.1, "L5_basket": 0.2, "L5_pyramidal": 0.1}


def _trials(mean, sd, n, seed):
    rng = np.random.default_rng(seed)
    return mean + rng.normal(0.0, sd, (n, mean.size))


# -- features -------------------------------------------------------------------------
def test_a_hump_the_model_lacks_is_one_feature_at_its_peak():
    target = 5.0 * np.exp(-((TIMES - 60.0) / 4.0) ** 2)
    budget = error_budget(_trials(np.zeros_like(TIMES), 1.0, 30, 0), target, k=3)
    features = residual_features(TIMES, target, budget, k=3)
    assert len(features) == 1
    f = features[0]
    assert f.sign == 1 and f.t_peak == pytest.approx(60.0, abs=1.0)
    assert 50.0 < f.t_start < 57.0 and 63.0 < f.t_end < 70.0
    assert f.residual == pytest.approx(5.0, abs=0.7)
    assert "above the model at 60 ms" in f.describe()


def test_a_dip_and_a_hump_are_two_features_largest_first():
    target = (5.0 * np.exp(-((TIMES - 60.0) / 4.0) ** 2)
              - 3.0 * np.exp(-((TIMES - 30.0) / 3.0) ** 2))
    budget = error_budget(_trials(np.zeros_like(TIMES), 1.0, 30, 1), target, k=3)
    features = residual_features(TIMES, target, budget, k=3)
    assert [f.sign for f in features] == [1, -1]
    assert features[1].t_peak == pytest.approx(30.0, abs=1.0)
    assert features[0].excess > features[1].excess > 0


def test_a_model_within_trial_noise_has_no_feature():
    target = np.sin(TIMES / 10.0)
    # the model's mean is the target; trials scatter around it
    budget = error_budget(_trials(target, 2.0, 30, 2), target, k=3)
    assert residual_features(TIMES, target, budget, k=3) == []


def test_noise_hides_a_small_miss_that_a_quiet_model_shows():
    target = 0.5 * np.exp(-((TIMES - 60.0) / 4.0) ** 2)
    noisy = error_budget(_trials(np.zeros_like(TIMES), 3.0, 30, 3), target, k=3)
    quiet = error_budget(_trials(np.zeros_like(TIMES), 0.05, 30, 3), target, k=3)
    assert residual_features(TIMES, target, noisy, k=3) == []
    assert len(residual_features(TIMES, target, quiet, k=3)) == 1


# -- candidates ------------------------------------------------------------------------
def _net():
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=20.0, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa=WEIGHTS, synaptic_delays=PROX, event_seed=4)
    return net


def test_candidates_are_timed_at_the_feature_and_ordered_by_its_sign():
    target = -4.0 * np.exp(-((TIMES - 70.0) / 4.0) ** 2)
    budget = error_budget(_trials(np.zeros_like(TIMES), 0.5, 30, 4), target, k=3)
    features = residual_features(TIMES, target, budget, k=3)
    cands = propose_drives(_net(), features, tstop=100.0)
    # a dip: a distal drive first, then a proximal one
    assert [c["spec"]["location"] for c in cands] == ["distal", "proximal"]
    assert [c["spec"]["name"] for c in cands] == ["evdist1", "evprox2"]
    for c in cands:
        assert c["spec"]["mu"] == pytest.approx(70.0 - DRIVE_LATENCY, abs=1.0)
        lo, hi = c["mu_range"]
        assert lo < c["spec"]["mu"] < hi
    # the proximal candidate copies the network's proximal drive; the distal
    # one, which the network lacks, HNN's default distal drive
    prox = cands[1]["spec"]
    assert prox["weights_ampa"] == pytest.approx(WEIGHTS)
    assert prox["synaptic_delays"] == PROX
    assert set(cands[0]["spec"]["weights_nmda"]) == {"L2_basket", "L2_pyramidal",
                                                      "L5_pyramidal"}
    # each can be added to the network and has a space
    for c in cands:
        net = _net()
        net.add_evoked_drive(**{k: v for k, v in c["spec"].items() if k != "name"},
                             name=c["spec"]["name"])
        assert f"{c['spec']['name']}.mu" in evoked_space(net, tstop=100.0)


# -- comparison --------------------------------------------------------------------------
def test_a_better_model_beats_the_noise_and_an_equal_one_does_not():
    target = np.sin(TIMES / 10.0)
    trials = {"biased": _trials(target + 0.8, 1.0, 30, 5),
              "right": _trials(target, 1.0, 30, 6),
              "same": _trials(target + 0.8, 1.0, 30, 7)}
    scores = compare_models(trials, target, k=3)
    gain, noise = gain_and_noise(scores, "biased", "right")
    assert gain == pytest.approx(scores["biased"]["expected"] - scores["right"]["expected"])
    assert gain > 2 * noise > 0
    gain, noise = gain_and_noise(scores, "biased", "same")
    assert abs(gain) < 2 * noise
    with pytest.raises(ValueError, match="as many trials for every model"):
        compare_models({"a": trials["right"], "b": trials["right"][:10]}, target)


# -- the search in a recipe, on small simulated cases --------------------------------------
def _case(with_extra):
    """A target from the start network, with or without a second proximal volley."""
    from hnnfit import simulate_dipole

    truth = _net()
    if with_extra:
        truth.add_evoked_drive("evprox2", mu=50.0, sigma=3.0, numspikes=1,
                               location="proximal",
                               weights_ampa={"L2_basket": 0.08, "L2_pyramidal": 0.3,
                                             "L5_basket": 0.2, "L5_pyramidal": 0.3},
                               synaptic_delays=PROX, event_seed=9)
    dpls = simulate_dipole(truth, tstop=80.0, n_trials=6)
    proc = [d.copy().smooth(5.0).scale(100.0) for d in dpls]
    target = Target(proc[0].times, np.mean([d.data["agg"] for d in proc], axis=0))
    net = _net()
    return FitSetup(net=net, target=target, space=evoked_space(net, tstop=80.0),
                    objective={"smooth_window": 5.0, "scale": 100.0, "n_trials": 3,
                               "seeds": [0, 1, 2]},
                    solver=SolverConfig(seed=0))


SEARCH = Recipe("search", "test", (Phase("search", 1.0),), check_trials=6)


@pytest.mark.slow
def test_the_search_finds_the_drive_the_start_network_lacks(tmp_path):
    report = run_recipe(_case(True), tmp_path / "fit.sqlite", SEARCH, "120s", n_jobs=2,
                        progress=False, out=lambda line: None, add_drives=1)
    kept = [h for h in report.hypotheses if h["kept"]]
    assert len(kept) == 1 and kept[0]["name"] is not None
    h = kept[0]
    assert h["location"] == "proximal" and abs(h["mu"] - 50.0) < 5.0
    assert h["gain"] > 2 * h["noise"]
    # the model kept includes the new drive, and every hypothesis is reported
    assert f"{h['name']}.mu" in report.params
    assert report.hypotheses[0]["name"] is None
    assert len(report.hypotheses) >= 3
    text = "\n".join(report.lines())
    assert f"KEPT: {h['name']} (proximal" in text


@pytest.mark.slow
def test_the_search_adds_nothing_to_a_network_that_made_the_target(tmp_path):
    report = run_recipe(_case(False), tmp_path / "fit.sqlite", SEARCH, "120s", n_jobs=2,
                        progress=False, out=lambda line: None, add_drives=1)
    assert report.hypotheses, "the search must report what it compared"
    assert [h["name"] for h in report.hypotheses if h["kept"]] == [None]
    assert not any(k.startswith(("evprox2", "evdist")) for k in report.params)
