"""Structure search: residual features beyond trial noise, candidate drives,
paired model comparison (no NEURON), and the search inside a recipe on small
synthetic cases made with and without one drive more than the start network."""
import numpy as np
import pytest

from hnnfit.config import FitSetup, SolverConfig
from hnnfit.fit import Study, Target
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
    # (its weights onto pyramidal cells; a thirtieth onto basket cells)
    prox = cands[1]["spec"]
    assert prox["weights_ampa"] == pytest.approx(
        {c: w if c.endswith("_pyramidal") else w / 30.0 for c, w in WEIGHTS.items()})
    assert prox["synaptic_delays"] == PROX
    # each pyramidal weight is searched from a thirtieth to ten times the
    # template's (at most 1 uS for weights below 0.5)
    ranges = cands[1]["weight_ranges"]
    assert set(ranges) == {"ampa.L2_pyramidal", "ampa.L5_pyramidal"}
    for cell in ("L2_pyramidal", "L5_pyramidal"):
        w = WEIGHTS[cell]
        assert ranges[f"ampa.{cell}"] == pytest.approx((w / 30.0, min(10.0 * w, 1.0)))
    # the distal template, HNN's default, has NMDA synapses: searched too
    assert set(cands[0]["weight_ranges"]) == {"ampa.L2_pyramidal", "ampa.L5_pyramidal",
                                              "nmda.L2_pyramidal", "nmda.L5_pyramidal"}
    assert set(cands[0]["spec"]["weights_nmda"]) == {"L2_basket", "L2_pyramidal",
                                                      "L5_pyramidal"}
    # each can be added to the network and has a space
    for c in cands:
        net = _net()
        net.add_evoked_drive(**{k: v for k, v in c["spec"].items() if k != "name"},
                             name=c["spec"]["name"])
        assert f"{c['spec']['name']}.mu" in evoked_space(net, tstop=100.0)


def test_a_candidate_spans_the_weights_of_the_drives_at_its_location():
    from hnnfit.fit.recipe_runner import candidate_space

    net = _net()
    strong = {c: 40.0 * w for c, w in WEIGHTS.items()}
    net.add_evoked_drive("evprox2", mu=60.0, sigma=5.0, numspikes=1, location="proximal",
                         weights_ampa=strong, synaptic_delays=PROX, event_seed=5)
    target = 4.0 * np.exp(-((TIMES - 90.0) / 4.0) ** 2)
    budget = error_budget(_trials(np.zeros_like(TIMES), 0.5, 30, 4), target, k=3)
    cand = propose_drives(net, residual_features(TIMES, target, budget, k=3),
                          tstop=100.0)[0]
    assert cand["spec"]["location"] == "proximal" and cand["spec"]["name"] == "evprox3"
    pyramidal = ("L2_pyramidal", "L5_pyramidal")
    for cell, w in WEIGHTS.items():
        if cell not in pyramidal:
            # onto basket cells: a thirtieth of the weakest drive's, not searched
            assert cand["spec"]["weights_ampa"][cell] == pytest.approx(w / 30.0)
            assert f"ampa.{cell}" not in cand["weight_ranges"]
            continue
        # the start between the weakest and the strongest drive, the range
        # from far below the weakest to above the strongest
        assert cand["spec"]["weights_ampa"][cell] == pytest.approx(np.sqrt(40.0) * w)
        lo, hi = cand["weight_ranges"][f"ampa.{cell}"]
        assert lo == pytest.approx(w / 30.0)
        assert hi == pytest.approx(min(400.0 * w, max(1.0, 80.0 * w)))
    net.add_evoked_drive(**{k: v for k, v in cand["spec"].items() if k != "name"},
                         name="evprox3")
    space = candidate_space(net, "evprox3", cand["mu_range"], 100.0, cand["weight_ranges"])
    assert set(space.names) == {"evprox3.mu", "evprox3.sigma"} | {
        f"evprox3.ampa.{c}" for c in pyramidal}
    for cell in pyramidal:
        p = space[f"evprox3.ampa.{cell}"]
        assert p.log and (p.low, p.high) == pytest.approx(cand["weight_ranges"][f"ampa.{cell}"])
    assert (space["evprox3.sigma"].low, space["evprox3.sigma"].high) == (0.5, 20.0)


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
# the polish runs however short its time: the test follows the model kept
SEARCH_POLISH = Recipe("erp", "test", (Phase("search", 0.75),
                                       Phase("polish", 0.25, {"sigma0": 0.08},
                                             min_rounds=0)),
                       check_trials=6)


@pytest.mark.slow
def test_the_search_finds_the_drive_the_start_network_lacks(tmp_path):
    # two rounds allowed: the first must keep the missing volley; the second
    # then runs on the model with it. The budget gives each of up to four
    # candidates its 40 evaluations with room for a slower machine: at 200 s
    # one run fitted four with 19 each, none close enough to be kept
    report = run_recipe(_case(True), tmp_path / "fit.sqlite", SEARCH_POLISH, "360s",
                        n_jobs=2, progress=False, out=lambda line: None, add_drives=2)
    print("\n".join(report.lines()))     # shown if the test fails
    first = [h for h in report.hypotheses if h["round"] == 1]
    kept = [h for h in first if h["kept"]]
    assert len(kept) == 1 and kept[0]["name"] is not None
    h = kept[0]
    assert h["location"] == "proximal" and abs(h["mu"] - 50.0) < 5.0
    assert h["gain"] > 2 * h["noise"]
    # every hypothesis is reported, the model without a new drive first
    assert first[0]["name"] is None and len(first) >= 3
    text = "\n".join(report.lines())
    assert f"KEPT: {h['name']} (proximal" in text
    # the second round compared candidates with the model that has the drive
    second = [h2 for h2 in report.hypotheses if h2["round"] == 2]
    assert second and second[0]["name"] is None
    assert h["name"] not in [h2["name"] for h2 in second]
    added = [h2["name"] for h2 in report.hypotheses if h2["kept"] and h2["name"]]
    assert added[0] == h["name"] and len(added) <= 2
    # the polish fitted every parameter: the search's and each new drive's
    polish = next(ph for ph in report.phases if ph["name"] == "polish")
    with Study.load(polish["study"], readonly=True) as st:
        names = set(st.space.names)
    with Study.load(tmp_path / "fit.sqlite", readonly=True) as search:
        assert set(search.space.names) <= names
    for drive in added:
        assert f"{drive}.mu" in names and f"{drive}.mu" in report.params
    assert [ph["name"] for ph in report.phases][:3] == ["search", "structure",
                                                        "structure-2"]


@pytest.mark.slow
def test_the_search_adds_nothing_to_a_network_that_made_the_target(tmp_path):
    # a second round is allowed but does not run: the first kept nothing
    report = run_recipe(_case(False), tmp_path / "fit.sqlite", SEARCH, "120s", n_jobs=2,
                        progress=False, out=lambda line: None, add_drives=2)
    print("\n".join(report.lines()))     # shown if the test fails
    assert report.hypotheses, "the search must report what it compared"
    assert [h["name"] for h in report.hypotheses if h["kept"]] == [None]
    assert {h["round"] for h in report.hypotheses} == {1}
    assert [ph["name"] for ph in report.phases] == ["search", "structure"]
    assert not any(k.startswith(("evprox2", "evdist")) for k in report.params)
