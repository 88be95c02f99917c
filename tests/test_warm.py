"""Warm models: a kept NEURON model, updated in place, gives the same bits as
a fresh build (3x3 grid, short runs)."""
import gc
import tracemalloc

import numpy as np
import pytest

from hnnfit import JoblibBackend, jones_2009_model, simulate_dipole
from hnnfit.fit.space import Parameter, ParameterSpace
from hnnfit.simulation import simulate_trials
from hnnfit import simulator
from hnnfit.simulator import release_warm_model, structure_key, warm_model_key

TSTOP = 40.0
SEEDS = [0, 3]


def _base_net():
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive(
        "evprox1", mu=10.0, sigma=2.0, numspikes=1, location="proximal",
        weights_ampa={"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.04,
                      "L5_pyramidal": 0.04},
        synaptic_delays={"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0,
                         "L5_pyramidal": 1.0},
        event_seed=4)
    net.add_evoked_drive(
        "evdist1", mu=22.0, sigma=3.0, numspikes=1, location="distal",
        weights_ampa={"L2_basket": 0.006, "L2_pyramidal": 0.01, "L5_pyramidal": 0.01},
        weights_nmda={"L2_basket": 0.004, "L2_pyramidal": 0.004, "L5_pyramidal": 0.002},
        event_seed=7)
    return net


SPACE = ParameterSpace([
    Parameter("evprox1.mu", 5.0, 20.0),
    Parameter("evprox1.sigma", 0.5, 5.0),
    Parameter("evdist1.numspikes", 1, 3, integer=True),
    Parameter("evprox1.ampa.L5_pyramidal", 0.001, 0.2),
    Parameter("evdist1.nmda.L2_pyramidal", 0.0, 0.02),
    Parameter("evprox1.delay.L2_basket", 0.1, 5.0),
])

# Successive evaluations change event times, numspikes, weights and delays.
POINTS = [
    {"evprox1.mu": 10.0, "evprox1.sigma": 2.0, "evdist1.numspikes": 1,
     "evprox1.ampa.L5_pyramidal": 0.04, "evdist1.nmda.L2_pyramidal": 0.004,
     "evprox1.delay.L2_basket": 0.1},
    {"evprox1.mu": 14.0, "evprox1.sigma": 1.0, "evdist1.numspikes": 3,
     "evprox1.ampa.L5_pyramidal": 0.12, "evdist1.nmda.L2_pyramidal": 0.0,
     "evprox1.delay.L2_basket": 2.5},
    {"evprox1.mu": 6.5, "evprox1.sigma": 4.0, "evdist1.numspikes": 2,
     "evprox1.ampa.L5_pyramidal": 0.002, "evdist1.nmda.L2_pyramidal": 0.015,
     "evprox1.delay.L2_basket": 0.7},
]


def _nets():
    base = _base_net()
    return [SPACE.apply(base, p) for p in POINTS]


def _structure_changed(net):
    # one more connection rule: a different model, so a rebuild
    changed = net.copy()
    changed.add_connection("L2_basket", "L5_pyramidal", "distal", "gabaa", 0.002, 1.0,
                           lamtha=3.0)
    return changed


def _run(net, warm, n_seeds=SEEDS):
    dpls = simulate_trials(net, TSTOP, 0.025, list(n_seeds), warm=warm)
    spikes = [(np.asarray(t), np.asarray(g)) for t, g in
              zip(net.cell_response.spike_times, net.cell_response.spike_gids)]
    return dpls, spikes, net._sim_timing


def _assert_same_bits(a, b):
    dpls_a, spikes_a, _ = a
    dpls_b, spikes_b, _ = b
    assert len(dpls_a) == len(dpls_b)
    for da, db in zip(dpls_a, dpls_b):
        assert np.array_equal(da.times, db.times)
        for layer in ("agg", "L2", "L5"):
            assert np.array_equal(da.data[layer], db.data[layer])
    for (ta, ga), (tb, gb) in zip(spikes_a, spikes_b):
        assert np.array_equal(ta, tb)
        assert np.array_equal(ga, gb)


@pytest.fixture(scope="module")
def cold_results():
    release_warm_model()
    nets = _nets() + [_structure_changed(_nets()[1])]
    return [_run(net, warm=False) for net in nets]


def test_cold_points_really_differ(cold_results):
    # otherwise bit-identity below would prove little
    aggs = [res[0][0].data["agg"] for res in cold_results]
    for i in range(len(aggs)):
        for j in range(i + 1, len(aggs)):
            assert not np.array_equal(aggs[i], aggs[j])
    # the two trials of one point play different events
    assert not np.array_equal(cold_results[0][0][0].data["agg"],
                              cold_results[0][0][1].data["agg"])
    # cold runs leave no model behind
    assert warm_model_key() is None


def test_warm_runs_equal_fresh_builds(cold_results):
    release_warm_model()
    nets = _nets()
    warm = []
    for net in nets:
        warm.append(_run(net, warm=True))
    # first evaluation builds, the following reuse the model for every trial
    assert [t["reused"] for t in warm[0][2]] == [False, True]
    for res in warm[1:]:
        assert [t["reused"] for t in res[2]] == [True, True]
        assert all(t["build_s"] < 1.0 for t in res[2])
    for w, c in zip(warm, cold_results[:3]):
        _assert_same_bits(w, c)

    # a structure change forces a rebuild, still bit-identical
    key_before = warm_model_key()
    changed = _structure_changed(_nets()[1])
    res = _run(changed, warm=True)
    assert res[2][0]["reused"] is False
    assert warm_model_key() != key_before
    _assert_same_bits(res, cold_results[3])

    # and going back to the first point after all that gives its bits again
    res = _run(_nets()[0], warm=True)
    assert res[2][0]["reused"] is False
    _assert_same_bits(res, cold_results[0])
    again = _run(_nets()[0], warm=True)
    assert again[2][0]["reused"] is True
    _assert_same_bits(again, cold_results[0])
    release_warm_model()
    assert warm_model_key() is None


def test_single_trial_and_other_tstop_dt_on_a_kept_model(cold_results):
    release_warm_model()
    net = _nets()[2]
    cold = simulate_trials(net.copy(), 25.0, 0.05, [5], warm=False)
    _run(_nets()[1], warm=True)                    # keep a model
    warm = simulate_trials(net.copy(), 25.0, 0.05, [5], warm=True)
    assert np.array_equal(cold[0].data["agg"], warm[0].data["agg"])
    assert len(warm[0].times) == int(round(25.0 / 0.05)) + 1
    release_warm_model()


def test_warm_in_worker_processes(cold_results):
    with JoblibBackend(n_jobs=2):
        first = simulate_dipole(_nets()[0], tstop=TSTOP, n_trials=2, verbose=False,
                                warm=True)
        net = _nets()[1]
        # trial indices 0, 1 here; compare with a cold in-process run
        second = simulate_dipole(net, tstop=TSTOP, n_trials=2, verbose=False, warm=True)
        timing = net._sim_timing
    cold_first = simulate_trials(_nets()[0], TSTOP, 0.025, [0, 1])
    cold_second = simulate_trials(_nets()[1], TSTOP, 0.025, [0, 1])
    for a, b in zip(first + second, cold_first + cold_second):
        assert np.array_equal(a.data["agg"], b.data["agg"])
    # loky keeps its workers, so at least one of them reused its model
    assert any(t["reused"] for t in timing)


def test_structure_key():
    nets = _nets()
    keys = {structure_key(net) for net in nets}
    assert len(keys) == 1               # only weights, delays and events differ
    assert structure_key(_structure_changed(nets[0])) not in keys
    assert structure_key(nets[0], record_vsoma=True) not in keys
    assert structure_key(nets[0], engine="coreneuron") not in keys
    moved = nets[0].copy()
    moved.pos_dict["L2_basket"][0] = (1.0, 2.0, 3.0)
    assert structure_key(moved) not in keys


def test_update_refuses_other_structure():
    release_warm_model()
    net = _nets()[0]
    net._instantiate_drives(TSTOP, 1)
    model = simulator.NetworkModel(net)
    try:
        model.build()
        other = _structure_changed(net)
        other._instantiate_drives(TSTOP, 1)
        with pytest.raises(Exception, match="structure of the built model"):
            model.update(other)
    finally:
        model.close()


def test_warm_argument_is_checked():
    with pytest.raises(TypeError, match="warm must be a bool"):
        simulate_dipole(_nets()[0], tstop=10.0, n_trials=1, warm="yes")
    with pytest.raises(ValueError, match="engine must be one of"):
        simulate_dipole(_nets()[0], tstop=10.0, n_trials=1, engine="gpu")
    with pytest.raises(ValueError, match="n_threads must be"):
        simulate_dipole(_nets()[0], tstop=10.0, n_trials=1, n_threads=0)


def test_threads_give_the_same_bits(cold_results):
    # the cells are split over two threads; a kept model switches in place
    release_warm_model()
    res = _run_threads(_nets()[1], n_threads=2)
    dpls, spikes, timing = res
    assert [t["n_threads"] for t in timing] == [2, 2]
    cold_dpls, cold_spikes, _ = cold_results[1]
    for a, b in zip(dpls, cold_dpls):
        assert np.array_equal(a.data["agg"], b.data["agg"])
    for (ta, ga), (tb, gb) in zip(spikes, cold_spikes):
        # threads record their spikes in their own order
        assert sorted(zip(ta, ga)) == sorted(zip(tb, gb))
    release_warm_model()


def _run_threads(net, n_threads):
    dpls = simulate_trials(net, TSTOP, 0.025, list(SEEDS), warm=True, n_threads=n_threads)
    spikes = [(np.asarray(t), np.asarray(g)) for t, g in
              zip(net.cell_response.spike_times, net.cell_response.spike_gids)]
    return dpls, spikes, net._sim_timing


def test_objective_evaluations_are_warm_and_equal_cold_ones():
    from hnnfit.dipole import average_dipoles
    from hnnfit.fit.objective import DipoleObjective
    from hnnfit.fit.targets import read_target

    t = np.arange(0.0, 30.0 + 1e-9, 0.5)
    target = read_target(np.c_[t, np.sin(t / 5.0)])
    objective = DipoleObjective(_base_net(), target, SPACE, n_trials=2, seeds=[1, 2],
                                scale="fit")
    release_warm_model()
    warm_values = [objective(p)["value"] for p in POINTS]
    assert warm_model_key() is not None          # the model was kept
    release_warm_model()
    for p, value in zip(POINTS, warm_values):
        net = objective.make_net(p)
        dpl = average_dipoles(simulate_trials(net, objective.tstop, objective.dt, [1, 2],
                                        warm=False))
        assert objective.score_dipole(dpl)[0] == value
    assert len(set(warm_values)) == len(POINTS)


def test_warm_runs_keep_no_python_memory_per_trial():
    """A fit worker runs thousands of trials on one kept model: handing each
    trial's event times to the drive cells and reading the recordings back
    must leave nothing behind. NEURON 9.0 leaks ~100 B per new h.Vector and
    ~400 B per Vector.as_numpy(); per-cell use of those grew full-size
    workers by ~0.4 MB per trial."""
    net = _base_net()
    n_trials = 30
    net._instantiate_drives(tstop=TSTOP, n_trials=n_trials)
    n_drive_cells = sum(len(net.gid_ranges[name]) for name in net.external_drives)
    release_warm_model()
    try:
        for trial in range(5):          # the first runs allocate what is kept
            simulator.run_trial(net, trial, 10.0, warm=True)
        gc.collect()
        tracemalloc.start()
        try:
            for trial in range(5, n_trials):
                simulator.run_trial(net, trial, 10.0, warm=True)
            gc.collect()
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        release_warm_model()
    per_trial = kept / (n_trials - 5)
    # the leaks above would keep ~100 B per drive cell and trial at least
    assert n_drive_cells >= 20
    assert per_trial < 500, f"{per_trial:.0f} B of Python memory kept per trial"
