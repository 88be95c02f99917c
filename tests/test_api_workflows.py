"""The example workflows' API on small simulated networks.

Complements the unit tests of params, network, dipole, cell_response and
viz with what only a real simulation can show: synchronous drives,
``postproc``, somatic voltages, and round trips of simulated outputs. All
simulations are 3 x 3 networks run for 40 ms.
"""
import numpy as np
import pytest

from hnnfit import (Dipole, jones_2009_model, read_dipole, read_params, read_spikes,
                    simulate_dipole)
from hnnfit.network import pick_connection

TSTOP = 40.0
N_TRIALS = 2
SMOOTH_WIN = 5.0      # ms; differs from the default set's 30 ms on purpose
SCALE = 150.0         # differs from the default set's 3000 on purpose


ALL_TYPES = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.04,
             "L5_pyramidal": 0.04}


def _small_net(params=None, weights=ALL_TYPES):
    """3 x 3 column with one proximal evoked drive early enough to act by 40 ms."""
    net = jones_2009_model(params, mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=12.0, sigma=2.0, numspikes=1,
                         location="proximal", weights_ampa=weights, event_seed=4)
    return net


def _drive_spike_times(net, name, trial):
    cr = net.cell_response
    times = np.asarray(cr.spike_times[trial])
    types = np.asarray(cr.spike_types[trial])
    return times[types == name]


@pytest.fixture(scope="module")
def jittered_and_sync():
    net = _small_net()
    net_sync = net.copy()
    net_sync.external_drives["evprox1"]["dynamics"]["sync_within_trial"] = True
    dpls = simulate_dipole(net, tstop=TSTOP, n_trials=N_TRIALS, verbose=False)
    dpls_sync = simulate_dipole(net_sync, tstop=TSTOP, n_trials=N_TRIALS,
                                verbose=False)
    return net, dpls, net_sync, dpls_sync


# --------------------------------------------------------------------------
# sync_within_trial

def test_sync_within_trial_drive_cells_share_event_times(jittered_and_sync):
    net, _, net_sync, _ = jittered_and_sync
    n_cells = len(net_sync.gid_ranges["evprox1"])
    # one drive cell per targeted cell
    assert n_cells == sum(len(net_sync.gid_ranges[ct]) for ct in net_sync.cell_types)
    assert net_sync.external_drives["evprox1"]["dynamics"]["sync_within_trial"] is True
    assert "sync_within_trial" not in net.external_drives["evprox1"]["dynamics"]
    first_times = []
    for trial in range(N_TRIALS):
        events = net_sync.external_drives["evprox1"]["events"][trial]
        assert len(events) == n_cells
        assert all(list(ev) == list(events[0]) for ev in events)
        # the shared train is drive cell 0's train of the jittered network
        jittered = net.external_drives["evprox1"]["events"][trial]
        assert list(events[0]) == list(jittered[0])
        assert len({tuple(ev) for ev in jittered}) > 1
        # and every drive cell did fire then in the simulation
        spikes = _drive_spike_times(net_sync, "evprox1", trial)
        assert len(spikes) == n_cells
        np.testing.assert_array_equal(spikes, np.full(n_cells, events[0][0]))
        assert np.ptp(_drive_spike_times(net, "evprox1", trial)) > 1.0
        first_times.append(events[0][0])
    # trials still differ from each other
    assert first_times[0] != first_times[1]


def test_sync_within_trial_changes_dipole_and_spiking(jittered_and_sync):
    net, dpls, net_sync, dpls_sync = jittered_and_sync
    for trial in range(N_TRIALS):
        agg, agg_sync = dpls[trial].data["agg"], dpls_sync[trial].data["agg"]
        np.testing.assert_array_equal(dpls[trial].times, dpls_sync[trial].times)
        # identical before the first drive event reaches the cells ...
        first = min(min(ev) for ev in net.external_drives["evprox1"]["events"][trial]
                    if len(ev))
        before = dpls[trial].times < first
        np.testing.assert_array_equal(agg[before], agg_sync[before])
        # ... and clearly different afterwards
        diff = np.abs(agg - agg_sync).max()
        assert diff > 0.05 * np.abs(agg).max()
    # the network's cells fire at different times when driven synchronously
    cells = set(net.cell_types)
    spikes = [t for t, s in zip(net.cell_response.spike_times[0],
                                net.cell_response.spike_types[0]) if s in cells]
    spikes_sync = [t for t, s in zip(net_sync.cell_response.spike_times[0],
                                     net_sync.cell_response.spike_types[0]) if s in cells]
    assert spikes and spikes_sync and sorted(spikes) != sorted(spikes_sync)


# --------------------------------------------------------------------------
# postproc and record_vsoma

@pytest.fixture(scope="module")
def postproc_run():
    params = read_params("default.json")
    params["dipole_smooth_win"] = SMOOTH_WIN
    params["dipole_scalefctr"] = SCALE
    # only L5 pyramidal cells are driven, so that L2 cells stay silent
    net = _small_net(params, weights={"L5_pyramidal": 0.04})
    raw = simulate_dipole(net, tstop=TSTOP, n_trials=1, verbose=False)
    post = simulate_dipole(net, tstop=TSTOP, n_trials=1, postproc=True,
                           record_vsoma=True, verbose=False)
    return net, raw[0], post[0]


def test_postproc_smooths_and_scales_by_parameter_file(postproc_run):
    _, raw, post = postproc_run
    assert raw.scale_applied == 1
    assert post.scale_applied == SCALE
    expected = raw.copy().smooth(SMOOTH_WIN).scale(SCALE)
    assert list(post.data) == ["agg", "L2", "L5"]
    for layer in post.data:
        np.testing.assert_allclose(post.data[layer], expected.data[layer],
                                   rtol=1e-12, atol=1e-12)
    # smoothing really happened: the scaled raw trace is rougher
    rough = np.abs(np.diff(raw.data["agg"] * SCALE, 2)).sum()
    smooth = np.abs(np.diff(post.data["agg"], 2)).sum()
    assert smooth < 0.5 * rough


def test_record_vsoma_gives_somatic_voltages(postproc_run):
    net, raw, _ = postproc_run
    cr = net.cell_response
    assert len(cr.vsoma) == 1
    np.testing.assert_array_equal(cr.times, raw.times)
    vsoma = cr.vsoma[0]
    n_cells = sum(len(net.gid_ranges[ct]) for ct in net.cell_types)
    assert sorted(vsoma) == list(range(n_cells))   # every cell, no drive cells
    spiking = {g for g, s in zip(cr.spike_gids[0], cr.spike_types[0])
               if s in net.cell_types}
    assert spiking and len(spiking) < n_cells
    for gid, v in vsoma.items():
        assert v.shape == raw.times.shape
        assert np.all(np.isfinite(v))
        assert -100.0 < v.min() and v.max() < 60.0
        # a recorded spike is a crossing of the 0 mV detection threshold
        assert (v.max() > 0.0) == (gid in spiking)
    # the first spike of a cell sits where its soma crosses 0 mV upwards
    gid = min(spiking)
    t_spike = min(t for t, g in zip(cr.spike_times[0], cr.spike_gids[0]) if g == gid)
    v = vsoma[gid]
    up = np.flatnonzero((v[:-1] < 0.0) & (v[1:] >= 0.0))
    assert abs(raw.times[up[0] + 1] - t_spike) <= 0.05


def test_simulated_dipole_write_read_roundtrip(postproc_run, tmp_path):
    _, raw, post = postproc_run
    for dpl, name in ((raw, "raw.txt"), (post, "post.txt")):
        dpl.write(tmp_path / name)
        back = read_dipole(tmp_path / name)
        assert isinstance(back, Dipole)
        assert back == dpl
        assert back.scale_applied == dpl.scale_applied


# --------------------------------------------------------------------------
# CellResponse round trip of a simulated response

@pytest.mark.parametrize("pattern", ["spikes.txt", "spk_%d.txt"])
def test_simulated_spikes_write_read_roundtrip(jittered_and_sync, tmp_path, pattern):
    net, _, _, _ = jittered_and_sync
    cr = net.cell_response
    assert cr.n_trials == N_TRIALS
    cr.write(tmp_path / pattern)
    read_name = "spk_*.txt" if "%d" in pattern else pattern
    back = read_spikes(tmp_path / read_name)
    assert back.n_trials == N_TRIALS
    assert back.spike_times == cr.spike_times
    assert back.spike_gids == cr.spike_gids
    assert back.spike_types == cr.spike_types
    assert set(back.cell_types) == set(net.cell_types) | {"evprox1"}
    # types re-derived from the network's gids agree with the written ones
    retyped = read_spikes(tmp_path / read_name, gid_ranges=net.gid_ranges)
    assert retyped.spike_types == cr.spike_types
    assert retyped.mean_rates(0.0, TSTOP, net.gid_ranges) == \
        cr.mean_rates(0.0, TSTOP, net.gid_ranges)


# --------------------------------------------------------------------------
# bad input names the problem (the offending value, not only the argument)

def test_errors_name_the_offending_value(tmp_path):
    yaml = tmp_path / "set.yaml"
    yaml.write_text("tstop: 170\n")
    with pytest.raises(ValueError, match=r"set\.yaml"):
        read_params(yaml)
    with pytest.raises(FileNotFoundError, match="missing_set.json"):
        read_params(tmp_path / "missing_set.json")
    bad = tmp_path / "bad.param"
    bad.write_text("tstop: 170\ndt: 0.025\n\ncelsius 37\n")
    with pytest.raises(ValueError, match=r"line 4\b.*celsius 37"):
        read_params(bad)

    net = jones_2009_model(mesh_shape=(3, 3))
    with pytest.raises(ValueError, match="target_gids.*L6_pyramidal"):
        pick_connection(net, target_gids="L6_pyramidal")
    with pytest.raises(ValueError, match="src_gids.*L6_basket"):
        pick_connection(net, src_gids=["L2_basket", "L6_basket"])
    with pytest.raises(ValueError, match="receptor.*glutamate"):
        pick_connection(net, receptor="glutamate")

    n_rules = len(net.connectivity)
    args = dict(src_gids="L5_basket", target_gids="L5_pyramidal", loc="soma",
                receptor="gabaa", weight=0.025, delay=1.0, lamtha=70.0)
    for change, match in [({"loc": "axon"}, "loc.*axon"),
                          ({"delay": -1.0}, "delay.*-1.0"),
                          ({"weight": -0.025}, "weight.*-0.025")]:
        with pytest.raises(ValueError, match=match):
            net.add_connection(**{**args, **change})
    assert len(net.connectivity) == n_rules

    dpl = Dipole(np.arange(0.0, 40.0, 0.025), np.zeros(1600))
    with pytest.raises(ValueError, match="longer than the signal.*50"):
        dpl.smooth(50.0)
    assert np.all(dpl.data["agg"] == 0.0)
