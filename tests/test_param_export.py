"""network_to_params: a network's drives written as a parameter file and read back."""
import numpy as np
import pytest

import hnnfit.fit
from hnnfit import PARAMS_DIR, Network
from hnnfit.exceptions import HnnfitError
from hnnfit.network import jones_2009_model
from hnnfit.param_export import network_to_params
from hnnfit.params import (CELL_TYPES, EVOKED_DELAYS, EVOKED_SPACE_CONSTANT, EVOKED_TARGETS,
                           POISSON_DELAYS, POISSON_SPACE_CONSTANT, read_params)
from hnnfit.simulation import simulate_trials

TSTOP = 40.0


def make_net():
    """3x3 Jones 2009 network with one early proximal evoked drive."""
    net = jones_2009_model(mesh_shape=(3, 3))
    ampa = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.2, "L5_pyramidal": 0.02}
    net.add_evoked_drive("evprox1", mu=15.0, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa=ampa, weights_nmda={k: 0.0 for k in ampa},
                         synaptic_delays=dict(EVOKED_DELAYS["proximal"]), event_seed=4)
    return net


def test_the_file_conventions_are_those_the_reader_applies():
    # one copy of the conventions: the drives a file defines have exactly them,
    # and the writer, checking against them, writes those drives back
    params = read_params(PARAMS_DIR / "ERPYes100Trials.json")
    net = Network(params, add_drives_from_params=True, mesh_shape=(3, 3))
    evoked = {n: d for n, d in net.external_drives.items() if d["type"] == "evoked"}
    assert sorted(evoked) == ["evdist1", "evprox1", "evprox2"]
    for drive in evoked.values():
        loc = drive["location"]
        assert tuple(drive["target_types"]) == tuple(EVOKED_TARGETS[loc])
        assert drive["synaptic_delays"] == EVOKED_DELAYS[loc]
        assert drive["space_constant"] == EVOKED_SPACE_CONSTANT
    pois = net.external_drives["extpois"]
    assert set(pois["target_types"]) == set(CELL_TYPES)
    assert pois["synaptic_delays"] == POISSON_DELAYS
    assert pois["space_constant"] == POISSON_SPACE_CONSTANT
    flat = network_to_params(net)
    for key in ("t_evprox_1", "sigma_t_evdist_1", "gbar_evprox_2_L5Pyr_ampa",
                "prng_seedcore_evdist_1", "T_pois", "L5Pyr_Pois_A_weight_ampa"):
        assert flat[key] == params[key]
    # the fitting package still offers the writer under its old name
    assert hnnfit.fit.network_to_params is network_to_params


def test_export_keeps_event_times_of_drives_added_out_of_order():
    # evprox1 added before evdist1: the file's network adds them alphabetically,
    # so their gids swap, and the written seeds must compensate
    net = make_net()
    net.add_evoked_drive("evdist1", mu=25.0, sigma=3.0, numspikes=2, location="distal",
                         weights_ampa={"L2_basket": 0.01, "L2_pyramidal": 0.02,
                                       "L5_pyramidal": 0.01},
                         synaptic_delays=0.1, event_seed=11)
    params = network_to_params(net)
    rebuilt = Network(params, add_drives_from_params=True, mesh_shape=(3, 3))
    assert rebuilt.gid_ranges["evdist1"][0] < rebuilt.gid_ranges["evprox1"][0]
    net._instantiate_drives(tstop=60.0, n_trials=2)
    rebuilt._instantiate_drives(tstop=60.0, n_trials=2)
    for name in ("evprox1", "evdist1"):
        assert rebuilt.external_drives[name]["events"] == net.external_drives[name]["events"]
        assert len(net.external_drives[name]["events"][1]) > 0


def test_export_refuses_drives_a_parameter_file_cannot_express():
    net = make_net()
    net.add_evoked_drive("late", mu=25.0, sigma=1.0, numspikes=1, location="proximal",
                         weights_ampa={"L5_pyramidal": 0.01}, synaptic_delays=1.0)
    with pytest.raises(HnnfitError, match="'late'.*targets"):
        network_to_params(net)
    net = make_net()
    net.add_evoked_drive("slow", mu=25.0, sigma=1.0, numspikes=1, location="proximal",
                         weights_ampa={k: 0.01 for k in EVOKED_DELAYS["proximal"]}, synaptic_delays=2.0)
    with pytest.raises(HnnfitError, match="'slow'.*delay"):
        network_to_params(net)
    net = make_net()
    net.add_poisson_drive("noise", rate_constant=10.0, location="proximal",
                          weights_ampa={"L5_pyramidal": 0.01})
    with pytest.raises(HnnfitError, match="'noise'.*a parameter file's Poisson drive targets"):
        network_to_params(net)
    # a file holds one Poisson drive
    net = Network(read_params(PARAMS_DIR / "ERPYes100Trials.json"),
                  add_drives_from_params=True, mesh_shape=(3, 3))
    net.add_poisson_drive("noise", tstart=0.0, tstop=40.0, rate_constant=10.0,
                          location="proximal", weights_ampa={k: 0.01 for k in EVOKED_DELAYS["proximal"]},
                          synaptic_delays=dict(EVOKED_DELAYS["proximal"], L2_basket=1.0))
    with pytest.raises(HnnfitError, match="'noise'.*one Poisson drive, and 'extpois'"):
        network_to_params(net)


def test_export_keeps_the_poisson_drive_of_the_hnn_files():
    # ERPYes100Trials' Poisson drive (weights here made non-zero so that it
    # shapes the dipole) and an evoked drive added after it: the file lists
    # the drives alphabetically, which moves both drives' gids
    params = read_params(PARAMS_DIR / "ERPYes100Trials.json")
    params.update({"L5Pyr_Pois_A_weight_ampa": 0.02, "L5Pyr_Pois_lamtha": 40.0,
                   "L2Pyr_Pois_A_weight_ampa": 0.01, "L2Pyr_Pois_lamtha": 40.0})
    net = Network(params, add_drives_from_params=True, mesh_shape=(3, 3))
    assert net.external_drives["extpois"]["type"] == "poisson"
    net.add_evoked_drive("evprox3", mu=30.0, sigma=3.0, numspikes=1, location="proximal",
                         weights_ampa={"L2_basket": 0.0, "L2_pyramidal": 0.02,
                                       "L5_basket": 0.01, "L5_pyramidal": 0.05},
                         synaptic_delays=EVOKED_DELAYS["proximal"])
    flat = network_to_params(net)
    assert (flat["t0_pois"], flat["T_pois"], flat["L5Pyr_Pois_lamtha"]) == (0.0, 170.0, 40.0)
    rebuilt = Network(flat, add_drives_from_params=True, mesh_shape=(3, 3))
    assert list(rebuilt.external_drives) == ["evdist1", "evprox1", "evprox2", "evprox3",
                                             "extpois"]
    assert rebuilt.gid_ranges["extpois"][0] > net.gid_ranges["extpois"][0]
    dpl_net = simulate_trials(net, TSTOP, 0.025, [0])
    dpl_file = simulate_trials(rebuilt, TSTOP, 0.025, [0])
    for name in ("extpois", "evprox3", "evprox1"):
        assert rebuilt.external_drives[name]["events"] == net.external_drives[name]["events"]
    assert sum(len(t) for t in net.external_drives["extpois"]["events"][0]) > 0
    for layer in ("agg", "L2", "L5"):
        assert np.array_equal(dpl_net[0].data[layer], dpl_file[0].data[layer])
    # without the Poisson drive the dipole differs: the comparison can fail
    quiet = Network(read_params(PARAMS_DIR / "ERPYes100Trials.json"),
                    add_drives_from_params=True, mesh_shape=(3, 3))
    quiet.add_evoked_drive("evprox3", mu=30.0, sigma=3.0, numspikes=1, location="proximal",
                           weights_ampa={"L2_basket": 0.0, "L2_pyramidal": 0.02,
                                         "L5_basket": 0.01, "L5_pyramidal": 0.05},
                           synaptic_delays=EVOKED_DELAYS["proximal"])
    dpl_quiet = simulate_trials(quiet, TSTOP, 0.025, [0])
    assert not np.allclose(dpl_net[0].data["agg"], dpl_quiet[0].data["agg"], rtol=0, atol=1e-9)


def test_an_exported_file_rebuilds_its_own_grid(tmp_path):
    # a 3x3 fit's file gives a 3x3 network again, with no mesh_shape to remember
    net = make_net()
    path = tmp_path / "best.json"
    hnnfit.write_params(network_to_params(net), path)
    rebuilt = Network(hnnfit.read_params(path), add_drives_from_params=True)
    assert len(rebuilt.gid_ranges["L2_pyramidal"]) == 9
    assert rebuilt.gid_ranges == net.gid_ranges
    # the bundled files keep the published 10 x 10 grid
    assert len(jones_2009_model().gid_ranges["L2_pyramidal"]) == 100
