"""Full-size regressions against the reference implementation's outputs.

Each case is simulated once (module fixtures) and compared with
``../shared/reference/<case>``: relative RMS difference of the raw ``agg``,
``L2`` and ``L5`` dipoles below 1%, and per-cell-type spike counts within 2%
(or 2 spikes). The reference moved from NEURON 8.2.7 to 9.0.2 itself differs
by 6.3e-4 relative RMS in ``agg``, so 1% leaves room for unit constants only.
"""
import json

import numpy as np
import pandas as pd
import pytest

from hnnfit import JoblibBackend, jones_2009_model, simulate_dipole

pytestmark = pytest.mark.slow

CELL_TYPES = ["L2_basket", "L2_pyramidal", "L5_basket", "L5_pyramidal"]


def _rel_rms(ours, ref):
    return float(np.sqrt(np.mean((ours - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def _reference(reference_dir, case):
    folder = reference_dir / case
    meta = json.loads((folder / "network.json").read_text())
    dipoles = [pd.read_csv(folder / f"dipole_trial{k}.csv") for k in range(meta["n_trials"])]
    spikes = pd.read_csv(folder / "spikes.csv")
    return meta, dipoles, spikes


def _simulate(net, meta):
    with JoblibBackend(n_jobs=min(2, meta["n_trials"])):
        dpls = simulate_dipole(net, tstop=meta["tstop"], dt=meta["dt"],
                               n_trials=meta["n_trials"], verbose=False)
    return dpls


@pytest.fixture(scope="module")
def erp_default(reference_dir):
    meta, ref_dpls, ref_spikes = _reference(reference_dir, "erp_default")
    net = jones_2009_model(add_drives_from_params=True)
    dpls = _simulate(net, meta)
    return net, dpls, meta, ref_dpls, ref_spikes


@pytest.fixture(scope="module")
def seed003_sparse(reference_dir):
    meta, ref_dpls, ref_spikes = _reference(reference_dir, "seed003_sparse")
    net = jones_2009_model(add_drives_from_params=True)
    net.clear_connectivity()
    for target in ["L5_pyramidal", "L2_basket"]:
        net.add_connection("L5_pyramidal", target, loc="distal", receptor="ampa",
                           weight=1.0, delay=1.0, lamtha=70.0, probability=0.1,
                           conn_seed=3)
    for target in ["L5_pyramidal", "L2_basket"]:
        net.add_connection("L2_basket", target, loc="soma", receptor="gabaa",
                           weight=1.0, delay=1.0, lamtha=70.0, probability=0.1,
                           conn_seed=3)
    dpls = _simulate(net, meta)
    return net, dpls, meta, ref_dpls, ref_spikes


def _check_dipoles(dpls, ref_dpls):
    assert len(dpls) == len(ref_dpls)
    for dpl, ref in zip(dpls, ref_dpls):
        np.testing.assert_allclose(dpl.times, ref["time_ms"].to_numpy(), atol=1e-9)
        for layer in ("agg", "L2", "L5"):
            err = _rel_rms(dpl.data[layer], ref[layer].to_numpy())
            assert err < 0.01, f"{layer}: relative RMS difference {err:.2e}"


def _check_spikes(net, ref_spikes, n_trials):
    cr = net.cell_response
    for trial in range(n_trials):
        types = pd.Series(cr.spike_types[trial])
        ref = ref_spikes[ref_spikes["trial"] == trial]
        for cell_type in CELL_TYPES:
            ours = int((types == cell_type).sum())
            theirs = int((ref["type"] == cell_type).sum())
            tol = max(2, 0.02 * theirs)
            assert abs(ours - theirs) <= tol, (
                f"trial {trial} {cell_type}: {ours} spikes, reference {theirs}"
            )


def test_erp_default_dipoles(erp_default):
    net, dpls, meta, ref_dpls, _ = erp_default
    _check_dipoles(dpls, ref_dpls)


def test_erp_default_spike_counts(erp_default):
    net, dpls, meta, _, ref_spikes = erp_default
    _check_spikes(net, ref_spikes, meta["n_trials"])


def test_erp_default_drive_spikes_are_the_events(erp_default):
    # the drive cells' spikes are exactly the event times they were given
    net, _, meta, _, ref_spikes = erp_default
    cr = net.cell_response
    for trial in range(meta["n_trials"]):
        ours = np.sort(np.asarray(cr.spike_times[trial])[
            np.asarray(cr.spike_gids[trial]) >= net.gid_ranges["evdist1"][0]])
        ref = ref_spikes[(ref_spikes["trial"] == trial) & (ref_spikes["gid"] >= 270)]
        np.testing.assert_allclose(ours, np.sort(ref["time_ms"].to_numpy()), atol=1e-9)


def test_seed003_sparse_dipoles(seed003_sparse):
    net, dpls, meta, ref_dpls, _ = seed003_sparse
    _check_dipoles(dpls, ref_dpls)


def test_seed003_sparse_spike_counts(seed003_sparse):
    net, dpls, meta, _, ref_spikes = seed003_sparse
    _check_spikes(net, ref_spikes, meta["n_trials"])
