"""Small simulations (3x3 grid, tens of ms): running, determinism, isolation."""
import subprocess
import sys

import numpy as np
import pytest

from hnnfit import JoblibBackend, jones_2009_model, simulate_dipole
from hnnfit.simulation import simulate_trials

TSTOP = 40.0


def _small_net(seed=4, mu=12.0):
    net = jones_2009_model(mesh_shape=(3, 3))
    weights = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.04,
               "L5_pyramidal": 0.04}
    net.add_evoked_drive("evprox1", mu=mu, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa=weights, event_seed=seed)
    return net


@pytest.fixture(scope="module")
def small_run():
    net = _small_net()
    dpls = simulate_dipole(net, tstop=TSTOP, n_trials=2, verbose=False)
    return net, dpls


def test_outputs_shape_and_contents(small_run):
    net, dpls = small_run
    assert len(dpls) == 2
    n_steps = int(round(TSTOP / 0.025)) + 1
    for dpl in dpls:
        assert dpl.times.shape == (n_steps,)
        np.testing.assert_allclose(dpl.times[-1], TSTOP)
        for layer in ("agg", "L2", "L5"):
            assert np.all(np.isfinite(dpl.data[layer]))
        np.testing.assert_allclose(dpl.data["agg"], dpl.data["L2"] + dpl.data["L5"])
        # the drive makes the dipole move away from its resting baseline
        assert np.ptp(dpl.data["agg"]) > 1e-3
    cr = net.cell_response
    assert len(cr.spike_times) == 2
    # every drive cell fired its single event in each trial
    drive_gids = set(net.gid_ranges["evprox1"])
    for trial in range(2):
        fired = {g for g in cr.spike_gids[trial] if g in drive_gids}
        assert fired == drive_gids
    # trials use different event times (per-trial seeds)
    ev = net.external_drives["evprox1"]["events"]
    assert ev[0] != ev[1]
    assert not np.array_equal(dpls[0].data["agg"], dpls[1].data["agg"])


def test_same_inputs_same_bits_in_process(small_run):
    _, dpls = small_run
    again = simulate_dipole(_small_net(), tstop=TSTOP, n_trials=2, verbose=False)
    for a, b in zip(dpls, again):
        for layer in ("agg", "L2", "L5"):
            assert np.array_equal(a.data[layer], b.data[layer])


def test_same_bits_in_worker_processes(small_run):
    _, dpls = small_run
    with JoblibBackend(n_jobs=2):
        par = simulate_dipole(_small_net(), tstop=TSTOP, n_trials=2, verbose=False)
    for a, b in zip(dpls, par):
        for layer in ("agg", "L2", "L5"):
            assert np.array_equal(a.data[layer], b.data[layer])


def test_no_state_leaks_between_simulations(small_run):
    # a different model run in between must not change the next result
    _, dpls = small_run
    other = _small_net(seed=11, mu=20.0)
    other.add_evoked_drive("evdist1", mu=15.0, sigma=1.0, numspikes=2, location="distal",
                           weights_ampa={"L2_pyramidal": 0.01, "L5_pyramidal": 0.01})
    simulate_dipole(other, tstop=25.0, dt=0.05, n_trials=1, verbose=False)
    again = simulate_dipole(_small_net(), tstop=TSTOP, n_trials=1, verbose=False)
    assert np.array_equal(again[0].data["agg"], dpls[0].data["agg"])


def test_separate_python_runs_agree(small_run, tmp_path):
    _, dpls = small_run
    script = (
        "import sys, numpy as np\n"
        "sys.path.insert(0, %r)\n"
        "from test_simulation import _small_net, TSTOP\n"
        "from hnnfit import simulate_dipole\n"
        "d = simulate_dipole(_small_net(), tstop=TSTOP, n_trials=1, verbose=False)[0]\n"
        "np.save(sys.argv[1], d.data['agg'])\n"
    ) % str(__import__("pathlib").Path(__file__).parent)
    out = tmp_path / "agg.npy"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True)
    assert np.array_equal(np.load(out), dpls[0].data["agg"])


def test_record_vsoma_and_progress(capsys):
    net = _small_net()
    simulate_dipole(net, tstop=20.0, n_trials=1, record_vsoma=True, verbose=True)
    printed = capsys.readouterr().out
    assert "Trial 1: 10.0 ms" in printed
    vsoma = net.cell_response.vsoma[0]
    assert set(vsoma) == set(range(net.gid_ranges["L5_pyramidal"].stop))
    # recordings start at the soma's initial potential from the cell template
    for cell_type in ("L2_pyramidal", "L5_pyramidal", "L2_basket"):
        v = vsoma[net.gid_ranges[cell_type][0]]
        assert v[0] == pytest.approx(net.cell_types[cell_type].sections["soma"].v0)
        assert len(v) == len(net.cell_response.times)
    simulate_dipole(net, tstop=20.0, n_trials=1, verbose=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("kwargs, match", [
    (dict(tstop=0.0), "tstop"),
    (dict(tstop=-5.0), "tstop"),
    (dict(tstop=20.0, n_trials=0), "n_trials"),
    (dict(tstop=20.0, dt=0.0), "dt"),
    (dict(tstop=20.0, n_trials=1.5), "n_trials"),
])
def test_bad_run_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        simulate_dipole(_small_net(), verbose=False, **kwargs)


@pytest.mark.parametrize("net", [None, "net", {"connectivity": []}])
def test_simulate_dipole_refuses_what_is_not_a_network(net):
    with pytest.raises(TypeError, match=r"net must be an instance of Network, got"):
        simulate_dipole(net, tstop=20.0, verbose=False)
    with pytest.raises(TypeError, match=r"net must be an instance of Network, got"):
        simulate_trials(net, 20.0, 0.025, [0])


@pytest.mark.parametrize("args, error, match", [
    ((20.0, 0.025, []), ValueError, "trial_seeds must name at least one trial"),
    ((20.0, 0.025, 3), TypeError, "trial_seeds must be a list of int"),
    ((20.0, 0.025, [0, -1]), ValueError, r"trial_seeds\[1\] must be >= 0"),
    ((20.0, 0.025, [0.5]), TypeError, r"trial_seeds\[0\] must be an integer"),
    ((20.0, 25.0, [0]), ValueError, "dt must be smaller than tstop"),
])
def test_simulate_trials_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        simulate_trials(_small_net(), *args)


def test_thinned_drive_records_only_connected_drive_cells():
    # probability < 1 on a cell-specific drive drops some drive cells'
    # only connection; like the reference implementation, those cells do
    # not exist in the simulation and none of their spikes is recorded
    net = jones_2009_model(mesh_shape=(3, 3))
    weights = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.04,
               "L5_pyramidal": 0.04}
    net.add_evoked_drive("evprox1", mu=20.0, sigma=3.0, numspikes=2, location="proximal",
                         weights_ampa=weights, probability=0.7, conn_seed=5, event_seed=2)
    drive_gids = set(net.gid_ranges["evprox1"])
    connected = {src for conn in net.connectivity if conn["src_type"] == "evprox1"
                 for src, targets in conn["gid_pairs"].items() if targets}
    assert connected < drive_gids and len(connected) > len(drive_gids) // 2

    dpls = simulate_dipole(net, tstop=TSTOP, n_trials=2, verbose=False)
    cr = net.cell_response
    events = net.external_drives["evprox1"]["events"]
    start = net.gid_ranges["evprox1"].start
    for trial in range(2):
        gids = np.asarray(cr.spike_gids[trial])
        times = np.asarray(cr.spike_times[trial])
        recorded = set(gids[np.isin(gids, list(drive_gids))].tolist())
        assert recorded == connected
        # each kept drive cell fires exactly its own events
        for gid in connected:
            expected = np.sort(events[trial][gid - start])
            assert len(expected) >= 1
            np.testing.assert_array_equal(np.sort(times[gids == gid]), expected)
        assert np.ptp(dpls[trial].data["agg"]) > 1e-3
