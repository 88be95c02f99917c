"""Event times of drive cells: reference fidelity, statistics, seeding, errors."""
import json

import numpy as np
import pytest

from hnnfit.drives import drive_event_times, instantiate_drive_events
from hnnfit.params import default_params, extract_drive_specs

TOL = 1e-9  # ms


def _load_case(reference_dir, case):
    events = json.loads((reference_dir / case / "drive_events.json").read_text())
    network = json.loads((reference_dir / case / "network.json").read_text())
    n_gids = max(stop for _, stop in network["gid_ranges"].values())
    return events, network, n_gids


def _evoked_drive(mu, sigma, numspikes, event_seed, n_drive_cells):
    return {
        "type": "evoked",
        "dynamics": {"mu": mu, "sigma": sigma, "numspikes": numspikes},
        "event_seed": event_seed,
        "n_drive_cells": n_drive_cells,
        "cell_specific": True,
    }


def _assert_events_equal(got, expected, name):
    assert len(got) == len(expected), name
    for trial, (got_trial, exp_trial) in enumerate(zip(got, expected)):
        assert len(got_trial) == len(exp_trial), (name, trial)
        for i, (g, e) in enumerate(zip(got_trial, exp_trial)):
            assert len(g) == len(e), (name, trial, i)
            np.testing.assert_allclose(g, e, rtol=0, atol=TOL,
                                       err_msg=f"{name} trial {trial} cell {i}")


def _drives_from_default_params(events):
    """Drives as a network built with add_drives_from_params would hold them."""
    specs = extract_drive_specs(default_params())
    drives = {}
    for name, ref in events.items():
        spec = specs[name]
        gids = range(*ref["gid_range"])
        # drives read from a parameter file are seeded by absolute gid: the
        # first gid of the drive's range is added to the file's seed
        drives[name] = _evoked_drive(spec["mu"], spec["sigma"], spec["numspikes"],
                                     spec["event_seed"] + gids.start, len(gids))
        assert ref["cell_specific"] == spec["cell_specific"]
    return drives


@pytest.mark.parametrize("case", ["erp_default", "seed003_all_to_all", "seed003_sparse"])
def test_events_match_reference_from_params(reference_dir, case):
    events, network, n_gids = _load_case(reference_dir, case)
    assert list(events) == ["evdist1", "evprox1", "evprox2"]
    drives = _drives_from_default_params(events)
    for name, drive in drives.items():
        got = instantiate_drive_events(drive, range(*events[name]["gid_range"]),
                                       None, network["tstop"], network["n_trials"],
                                       n_gids=n_gids)
        _assert_events_equal(got, events[name]["trials"], name)


def test_events_match_reference_seed000_evoked(reference_dir):
    events, network, n_gids = _load_case(reference_dir, "seed000_evoked")
    # drive definitions as stated in the reference README (event seed 4)
    dynamics = {"evdist1": (63.53, 3.85), "evprox1": (26.61, 2.47),
                "evprox2": (137.12, 8.33)}
    assert list(events) == list(dynamics)
    for name, (mu, sigma) in dynamics.items():
        gids = range(*events[name]["gid_range"])
        drive = _evoked_drive(mu, sigma, 1, 4, len(gids))
        got = instantiate_drive_events(drive, gids, None, network["tstop"],
                                       network["n_trials"], n_gids=n_gids)
        _assert_events_equal(got, events[name]["trials"], name)


def test_single_cell_function_matches_reference(reference_dir):
    events, network, n_gids = _load_case(reference_dir, "erp_default")
    drive = _drives_from_default_params(events)["evprox2"]
    gids = range(*events["evprox2"]["gid_range"])
    for trial in range(network["n_trials"]):
        for i in (0, 1, 137, len(gids) - 1):
            got = drive_event_times(drive, i, gids[i], trial, network["tstop"],
                                    n_gids=n_gids)
            np.testing.assert_allclose(got, events["evprox2"]["trials"][trial][i],
                                       rtol=0, atol=TOL)


# --------------------------------------------------------------------------
# Poisson drives
# --------------------------------------------------------------------------

def _poisson(rate, tstart=0.0, tstop=None, seed=7, **extra):
    dyn = {"tstart": tstart, "tstop": tstop, "rate_constant": rate}
    dyn.update(extra)
    return {"type": "poisson", "dynamics": dyn, "event_seed": seed}


def test_poisson_rate_and_intervals():
    rate, t0, t1 = 50.0, 100.0, 40_100.0  # Hz, ms
    times = drive_event_times(_poisson(rate, t0, t1), 0, None, 0, 50_000.0,
                              n_gids=500)
    expected = rate * (t1 - t0) / 1000.0
    # 5 standard deviations of a Poisson count
    assert abs(len(times) - expected) < 5 * np.sqrt(expected)
    assert times[0] >= t0 and times[-1] < t1
    isi = np.diff(times)
    assert np.all(isi > 0)
    assert abs(isi.mean() - 1000.0 / rate) < 0.05 * 1000.0 / rate
    # exponential intervals: coefficient of variation close to 1
    assert abs(isi.std() / isi.mean() - 1.0) < 0.1


def test_poisson_tstop_none_means_simulation_end():
    times = drive_event_times(_poisson(200.0), 0, None, 0, 300.0, n_gids=10)
    assert len(times) > 20
    assert times.max() <= 300.0


def test_poisson_per_cell_type_rates():
    drive = _poisson({"L2_basket": 10.0, "L5_pyramidal": 100.0}, 0.0, 20_000.0)
    slow = drive_event_times(drive, 0, None, 0, 20_000.0, "L2_basket", n_gids=99)
    fast = drive_event_times(drive, 1, None, 0, 20_000.0, "L5_pyramidal", n_gids=99)
    assert abs(len(slow) - 200) < 5 * np.sqrt(200)
    assert abs(len(fast) - 2000) < 5 * np.sqrt(2000)
    # a type without a rate gets no events
    none = drive_event_times(drive, 2, None, 0, 20_000.0, "L2_pyramidal", n_gids=99)
    assert none.size == 0
    with pytest.raises(ValueError, match="target_type must be a cell type"):
        drive_event_times(drive, 0, None, 0, 1000.0, n_gids=99)


def test_instantiate_cell_specific_poisson():
    drive = _poisson({"L2_basket": 5.0, "L5_pyramidal": 300.0}, 0.0, 1000.0)
    targets = ["L2_basket", "L5_pyramidal", None]
    events = instantiate_drive_events(drive, range(40, 43), targets, 1000.0, 2,
                                      n_gids=43)
    assert len(events) == 2 and all(len(trial) == 3 for trial in events)
    for trial in events:
        assert len(trial[0]) < 30 < 150 < len(trial[1])
        assert trial[2] == []
    assert events[0][1] != events[1][1]
    with pytest.raises(ValueError, match="one entry per drive cell"):
        instantiate_drive_events(drive, range(40, 43), targets[:2], 1000.0, 1,
                                 n_gids=43)


# --------------------------------------------------------------------------
# Bursty drives
# --------------------------------------------------------------------------

def _bursty(**kw):
    dyn = {"tstart": 50.0, "tstart_std": 0.0, "tstop": 1000.0, "burst_rate": 10.0,
           "burst_std": 0.0, "numspikes": 2, "spike_isi": 10.0}
    dyn.update(kw)
    return {"type": "bursty", "dynamics": dyn, "event_seed": 3, "n_drive_cells": 10,
            "cell_specific": False}


def test_bursty_regular_structure():
    times = drive_event_times(_bursty(), 0, None, 0, 2000.0, n_gids=300)
    centres = np.arange(50.0, 1000.0, 100.0)
    expected = np.sort(np.concatenate([centres - 5.0, centres + 5.0]))
    np.testing.assert_allclose(times, expected, rtol=0, atol=TOL)


def test_bursty_jittered_bursts_keep_their_shape():
    drive = _bursty(burst_std=4.0, numspikes=3, spike_isi=5.0, tstop=5050.0)
    times = drive_event_times(drive, 2, None, 0, 6000.0, n_gids=300)
    n_bursts = len(np.arange(50.0, 5050.0, 100.0))
    assert len(times) == 3 * n_bursts
    # bursts are well separated, so consecutive triplets are one burst
    bursts = times.reshape(n_bursts, 3)
    np.testing.assert_allclose(np.diff(bursts, axis=1), 5.0, rtol=0, atol=1e-9)
    centres = bursts[:, 1] - np.arange(50.0, 5050.0, 100.0)
    assert abs(centres.std() - 4.0) < 0.2 * 4.0
    assert abs(centres.mean()) < 4 * 4.0 / np.sqrt(n_bursts)


def test_bursty_start_jitter_is_shared_by_all_cells_of_a_trial():
    drive = _bursty(tstart_std=10.0)
    cells = [drive_event_times(drive, i, None, 0, 2000.0, n_gids=300) for i in range(4)]
    for other in cells[1:]:
        np.testing.assert_array_equal(cells[0], other)
    shifted = cells[0][0] - (50.0 - 5.0)
    assert shifted != 0.0
    other_trial = drive_event_times(drive, 0, None, 1, 2000.0, n_gids=300)
    assert other_trial[0] != cells[0][0]


def test_bursty_duration_must_fit_period():
    with pytest.raises(ValueError, match="burst duration"):
        drive_event_times(_bursty(numspikes=5, spike_isi=30.0), 0, None, 0, 500.0,
                          n_gids=10)


# --------------------------------------------------------------------------
# Seeding, clipping, synchrony
# --------------------------------------------------------------------------

def test_seeding_is_deterministic_and_seed_dependent():
    drive = _evoked_drive(60.0, 10.0, 5, 11, 20)
    first = drive_event_times(drive, 3, None, 0, 200.0, n_gids=100)
    np.testing.assert_array_equal(first, drive_event_times(drive, 3, None, 0, 200.0,
                                                           n_gids=100))
    other_seed = dict(drive, event_seed=12)
    assert not np.array_equal(first, drive_event_times(other_seed, 3, None, 0, 200.0,
                                                       n_gids=100))
    assert not np.array_equal(first, drive_event_times(drive, 4, None, 0, 200.0,
                                                       n_gids=100))
    assert not np.array_equal(first, drive_event_times(drive, 3, None, 1, 200.0,
                                                       n_gids=100))


def test_trial_advances_seed_by_network_size():
    # seed = event_seed + trial * n_gids + drive_cell_index, so cell i of
    # trial 1 draws what cell i + n_gids would draw in trial 0
    drive = _evoked_drive(60.0, 10.0, 3, 5, 1000)
    a = drive_event_times(drive, 2, None, 1, 200.0, n_gids=150)
    b = drive_event_times(drive, 152, None, 0, 200.0, n_gids=150)
    np.testing.assert_array_equal(a, b)
    c = drive_event_times(drive, 2, None, 1, 200.0, n_gids=151)
    assert not np.array_equal(a, c)


def test_times_are_clipped_and_sorted():
    early = drive_event_times(_evoked_drive(0.0, 5.0, 200, 1, 1), 0, None, 0, 100.0,
                              n_gids=1)
    assert 50 < len(early) < 150  # about half the draws are <= 0
    assert np.all(early > 0) and np.all(np.diff(early) >= 0)
    late = drive_event_times(_evoked_drive(100.0, 5.0, 200, 1, 1), 0, None, 0, 100.0,
                             n_gids=1)
    assert 50 < len(late) < 150
    assert np.all(late <= 100.0) and np.all(np.diff(late) >= 0)


def test_sync_within_trial_shares_times():
    for drive in (_evoked_drive(60.0, 10.0, 2, 9, 30), _poisson(20.0, 0.0, 1000.0),
                  dict(_bursty(burst_std=5.0), n_drive_cells=30)):
        drive["dynamics"]["sync_within_trial"] = True
        events = instantiate_drive_events(drive, range(100, 130), None, 1000.0, 2,
                                          n_gids=130)
        for trial in events:
            assert len(trial[0]) > 0
            assert all(cell == trial[0] for cell in trial)
        assert events[0][0] != events[1][0]
        drive["dynamics"]["sync_within_trial"] = False
        unsync = instantiate_drive_events(drive, range(100, 130), None, 1000.0, 1,
                                          n_gids=130)
        assert unsync[0][0] == events[0][0]  # cell 0 is the shared generator
        assert unsync[0][1] != unsync[0][0]


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

@pytest.mark.parametrize("change, exc, match", [
    (lambda d: d.update(type="gaussian"), ValueError, r"drive\['type'\] must be one of"),
    (lambda d: d.pop("dynamics"), ValueError, "must have a 'dynamics' entry"),
    (lambda d: d.update(event_seed=1.5), TypeError, "event_seed.* must be an integer"),
    (lambda d: d["dynamics"].update(sigma=-1.0), ValueError, r"sigma'\] must be >= 0"),
    (lambda d: d["dynamics"].update(numspikes=0), ValueError, r"numspikes'\] must be >= 1"),
    (lambda d: d["dynamics"].pop("mu"), ValueError, "must have a 'mu' entry"),
    (lambda d: d["dynamics"].update(mu="soon"), TypeError, "must be a number"),
    (lambda d: d.update(event_seed=-5), ValueError, "seed of drive cell 0"),
])
def test_drive_validation(change, exc, match):
    drive = _evoked_drive(50.0, 2.0, 1, 2, 5)
    change(drive)
    with pytest.raises(exc, match=match):
        drive_event_times(drive, 0, None, 0, 100.0, n_gids=10)


def test_argument_validation():
    drive = _evoked_drive(50.0, 2.0, 1, 2, 5)
    with pytest.raises(ValueError, match="drive_cell_index must be >= 0"):
        drive_event_times(drive, -1, None, 0, 100.0, n_gids=10)
    with pytest.raises(ValueError, match="drive_cell_index must be < n_drive_cells"):
        drive_event_times(drive, 5, None, 0, 100.0, n_gids=10)
    with pytest.raises(ValueError, match="trial_idx must be >= 0"):
        drive_event_times(drive, 0, None, -1, 100.0, n_gids=10)
    with pytest.raises(ValueError, match="tstop must be > 0"):
        drive_event_times(drive, 0, None, 0, 0.0, n_gids=10)
    with pytest.raises(ValueError, match="n_gids must be >= 1"):
        drive_event_times(drive, 0, None, 0, 100.0, n_gids=0)
    with pytest.raises(TypeError, match="n_gids"):
        drive_event_times(drive, 0, None, 0, 100.0)
    with pytest.raises(TypeError, match="drive must be"):
        drive_event_times([("type", "evoked")], 0, None, 0, 100.0, n_gids=10)
    with pytest.raises(TypeError, match="sync_within_trial"):
        bad = _evoked_drive(50.0, 2.0, 1, 2, 5)
        bad["dynamics"]["sync_within_trial"] = "yes"
        drive_event_times(bad, 0, None, 0, 100.0, n_gids=10)
    with pytest.raises(ValueError, match="seed of drive cell 0 \\(gid 7\\)"):
        drive_event_times(dict(drive, event_seed=2 ** 32), 0, 7, 0, 100.0, n_gids=10)
    with pytest.raises(ValueError, match="n_trials must be >= 1"):
        instantiate_drive_events(drive, range(5), None, 100.0, 0, n_gids=10)
    with pytest.raises(TypeError, match="gid_range must be"):
        instantiate_drive_events(drive, [0, 1, 2], None, 100.0, 1, n_gids=10)


def test_poisson_and_bursty_validation():
    with pytest.raises(ValueError, match=r"rate_constant'\] must be > 0"):
        drive_event_times(_poisson(0.0, 0.0, 100.0), 0, None, 0, 100.0, n_gids=1)
    with pytest.raises(ValueError, match=r"\['L2_basket'\] must be > 0"):
        drive_event_times(_poisson({"L2_basket": -1.0}), 0, None, 0, 100.0,
                          "L2_basket", n_gids=1)
    with pytest.raises(ValueError, match=r"tstop'\] must be >= 50"):
        drive_event_times(_poisson(10.0, 50.0, 20.0), 0, None, 0, 100.0, n_gids=1)
    with pytest.raises(ValueError, match=r"tstart'\] must be >= 0"):
        drive_event_times(_poisson(10.0, -5.0, 20.0), 0, None, 0, 100.0, n_gids=1)
    with pytest.raises(ValueError, match=r"burst_rate'\] must be > 0"):
        drive_event_times(_bursty(burst_rate=0.0), 0, None, 0, 100.0, n_gids=1)
    with pytest.raises(ValueError, match=r"burst_std'\] must be >= 0"):
        drive_event_times(_bursty(burst_std=-2.0), 0, None, 0, 100.0, n_gids=1)
