"""Tests of hnnfit.network_io: a Network as a declarative JSON description."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hnnfit import PARAMS_DIR
from hnnfit.network import Network, jones_2009_model
from hnnfit.network_io import (FORMAT_NAME, FORMAT_VERSION, network_from_dict,
                               network_hash, network_json, network_to_dict,
                               read_network, write_network)
from hnnfit.params import default_params, write_params
from hnnfit.simulation import simulate_dipole

PARAM_FILES = sorted(PARAMS_DIR.glob("*.json"))

AMPA = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.2, "L5_pyramidal": 0.01}


def _round_trip(net):
    """Through JSON text, as a study file stores it."""
    return network_from_dict(json.loads(network_json(net)))


def _custom_net(mesh_shape=(3, 3)):
    """A small network touching every kind of state the description stores."""
    net = jones_2009_model(mesh_shape=mesh_shape)
    net.add_evoked_drive(
        "evprox", mu=8.0, sigma=1.5, numspikes=1, location="proximal",
        weights_ampa=AMPA, weights_nmda={"L5_pyramidal": 0.005},
        synaptic_delays={"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0,
                         "L5_pyramidal": 1.0},
        probability={"L2_basket": 1.0, "L2_pyramidal": 0.6, "L5_basket": 0.5,
                     "L5_pyramidal": 0.8},
        event_seed=11, conn_seed=17)
    net.add_evoked_drive(
        "evdist", mu=15.0, sigma=2.0, numspikes=2, location="distal",
        weights_ampa={"L2_pyramidal": 0.05, "L5_pyramidal": 0.1},
        n_drive_cells=3, cell_specific=False, probability=0.7, space_constant=5.0)
    net.add_poisson_drive(
        "noise", tstart=2.0, tstop=25.0,
        rate_constant={"L2_pyramidal": 40.0, "L5_pyramidal": 30.0}, location="proximal",
        weights_ampa={"L2_pyramidal": 0.001, "L5_pyramidal": 0.002}, event_seed=5)
    net.add_bursty_drive(
        "beta", tstart=5.0, tstop=28.0, burst_rate=40.0, burst_std=1.0, numspikes=2,
        spike_isi=5.0, location="distal", n_drive_cells=2,
        weights_ampa={"L2_pyramidal": 0.02}, synaptic_delays=0.5, event_seed=9)
    net.clear_connectivity()
    net.add_connection("L5_pyramidal", "L5_pyramidal", "proximal", "ampa", 0.0008, 1.0,
                       3.0, allow_autapses=False, probability=0.5, conn_seed=7)
    net.add_connection("L2_basket", "L2_pyramidal", "soma", "gabaa", 0.05, 1.0, 50.0,
                       threshold=-10.0, gain=1.5)
    gids = list(net.gid_ranges["L2_pyramidal"])
    net.add_connection("L2_pyramidal", [gids[2], gids[0]], "proximal", "nmda", 0.001,
                       2.5, 4.0)
    net.add_connection(net.gid_ranges["L2_pyramidal"][0:2], [[gids[0]], [gids[1]]],
                       "distal", "ampa", 0.002, 1.0, 3.0)
    return net


@pytest.fixture(scope="module")
def custom_net():
    return _custom_net()


# --------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------
@pytest.mark.parametrize("fname", PARAM_FILES, ids=lambda p: p.name)
def test_round_trip_bundled_parameter_files(fname):
    net = jones_2009_model(fname, add_drives_from_params=True)
    assert net.external_drives  # the file's drives are really part of it
    rebuilt = _round_trip(net)
    assert rebuilt == net
    assert network_json(rebuilt) == network_json(net)
    # nothing unusual about these networks: positions and cells are the grid's
    desc = network_to_dict(net)
    assert "pos_dict" not in desc and "cell_types" not in desc
    assert desc["format"] == FORMAT_NAME and desc["format_version"] == FORMAT_VERSION


def test_round_trip_legacy_mode():
    net = jones_2009_model(PARAMS_DIR / "default.json", add_drives_from_params=True,
                           legacy_mode=True, mesh_shape=(3, 3))
    rebuilt = _round_trip(net)
    assert rebuilt == net
    assert rebuilt._legacy_mode is True
    assert list(rebuilt.gid_ranges) == list(net.gid_ranges)


def test_round_trip_drives_connections_probability(custom_net):
    rebuilt = _round_trip(custom_net)
    assert rebuilt == custom_net
    # order matters to the simulator (gids, build order), not only content
    assert list(rebuilt.gid_ranges.items()) == list(custom_net.gid_ranges.items())
    assert list(rebuilt.external_drives) == list(custom_net.external_drives)
    for mine, theirs in zip(rebuilt.connectivity, custom_net.connectivity):
        assert mine == theirs
        assert list(mine["gid_pairs"]) == list(theirs["gid_pairs"])
    # pruned pairs are stored as they are, not drawn again
    pruned = rebuilt.connectivity[-4]
    assert pruned["probability"] == 0.5
    assert pruned.n_pairs == round(9 * 8 * 0.5)
    for idx in range(len(custom_net.connectivity)):
        assert rebuilt.synaptic_netcons(idx) == custom_net.synaptic_netcons(idx)
    assert rebuilt.external_drives["noise"]["dynamics"]["rate_constant"] == {
        "L2_pyramidal": 40.0, "L5_pyramidal": 30.0}
    assert network_json(rebuilt) == network_json(custom_net)


def test_rebuilt_network_shares_nothing_with_the_description(custom_net):
    desc = network_to_dict(custom_net)
    text = network_json(desc)
    rebuilt = network_from_dict(desc)
    rebuilt.external_drives["evprox"]["weights_ampa"]["L2_basket"] = 1.0
    rebuilt.connectivity[0]["nc_dict"]["A_weight"] = 1.0
    rebuilt._params["celsius"] = 1.0
    assert network_json(desc) == text


def test_round_trip_custom_positions():
    net = _custom_net()
    net.set_cell_positions(inplane_distance=2.5, layer_separation=1000.0)
    assert "pos_dict" not in network_to_dict(net)  # still the grid, only rescaled
    rebuilt = _round_trip(net)
    assert rebuilt == net and rebuilt._inplane_distance == 2.5

    moved = net.pos_dict["L5_pyramidal"][4]
    net.pos_dict["L5_pyramidal"][4] = (moved[0] + 0.25, moved[1] - 1.0, moved[2])
    desc = network_to_dict(net)
    assert "pos_dict" in desc
    rebuilt = _round_trip(net)
    assert rebuilt == net
    assert rebuilt.pos_dict["L5_pyramidal"][4] == (moved[0] + 0.25, moved[1] - 1.0,
                                                   moved[2])
    assert rebuilt.synaptic_netcons(0) == net.synaptic_netcons(0)


def test_round_trip_changed_cell_template():
    net = jones_2009_model(mesh_shape=(3, 3))
    net.cell_types["L2_basket"].sections["soma"].L = 40.0
    desc = network_to_dict(net)
    assert "cell_types" in desc
    rebuilt = _round_trip(net)
    assert rebuilt == net
    assert rebuilt.cell_types["L2_basket"].sections["soma"].L == 40.0
    # distance-dependent channel densities come back as the same rules
    assert rebuilt.cell_types["L5_pyramidal"] == net.cell_types["L5_pyramidal"]
    for ct, template in net.cell_types.items():
        for name, sec in template.sections.items():
            # mechanisms in the order they are inserted
            assert list(rebuilt.cell_types[ct].sections[name].mechs) == list(sec.mechs)
        assert list(rebuilt.cell_types[ct].sections) == list(template.sections)


def test_round_trip_params_without_drives_keys():
    params = default_params()
    params["celsius"] = 34.0
    net = Network(params, mesh_shape=(3, 3))
    rebuilt = _round_trip(net)
    assert rebuilt == net
    assert rebuilt._params["celsius"] == 34.0


def test_simulation_outputs_are_not_stored():
    net = _custom_net()
    before = network_json(net)
    simulate_dipole(net, tstop=10.0, n_trials=1, verbose=False)
    assert net.cell_response is not None
    assert any(d["events"] for d in net.external_drives.values())
    assert network_json(net) == before
    rebuilt = _round_trip(net)
    assert rebuilt != net  # the original still carries its outputs
    assert rebuilt == net.copy()


def test_rebuilt_network_simulates_to_identical_dipole(custom_net):
    original = custom_net.copy()
    rebuilt = _round_trip(original)
    dpl_a = simulate_dipole(original, tstop=30.0, n_trials=1, verbose=False)[0]
    dpl_b = simulate_dipole(rebuilt, tstop=30.0, n_trials=1, verbose=False)[0]
    assert np.abs(dpl_a.data["agg"]).max() > 0  # something happened
    for key in dpl_a.data:
        np.testing.assert_array_equal(dpl_b.data[key], dpl_a.data[key])
    np.testing.assert_array_equal(original.cell_response.spike_times,
                                  rebuilt.cell_response.spike_times)


def test_rebuilt_changed_template_simulates_alike():
    net = _custom_net()
    net.cell_types["L5_pyramidal"].sections["soma"].mechs["hh2"]["gnabar"] = 0.2
    rebuilt = _round_trip(net)
    assert "cell_types" in network_to_dict(net)
    dpl_a = simulate_dipole(net, tstop=20.0, n_trials=1, verbose=False)[0]
    dpl_b = simulate_dipole(rebuilt, tstop=20.0, n_trials=1, verbose=False)[0]
    np.testing.assert_array_equal(dpl_b.data["agg"], dpl_a.data["agg"])


# --------------------------------------------------------------------------
# canonical text and hash
# --------------------------------------------------------------------------
_HASH_SCRIPT = """
from hnnfit.network import jones_2009_model
from hnnfit.network_io import network_hash
print(network_hash(jones_2009_model({fname!r}, add_drives_from_params=True)))
"""


def test_hash_is_stable_across_processes():
    fname = str(PARAMS_DIR / "ERPYes100Trials.json")
    here = network_hash(jones_2009_model(fname, add_drives_from_params=True))
    out = subprocess.run([sys.executable, "-c", _HASH_SCRIPT.format(fname=fname)],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here
    assert len(here) == 64 and int(here, 16) >= 0


def test_hash_changes_with_every_weight(custom_net):
    reference = network_hash(custom_net)
    assert network_hash(custom_net.copy()) == reference
    assert network_hash(network_to_dict(custom_net)) == reference
    seen = {reference}
    for idx in range(len(custom_net.connectivity)):
        net = custom_net.copy()
        nc = net.connectivity[idx]["nc_dict"]
        # the smallest possible change of a float must show
        nc["A_weight"] = float(np.nextafter(nc["A_weight"], np.inf))
        digest = network_hash(net)
        assert digest not in seen, f"weight of rule {idx} does not change the hash"
        seen.add(digest)
    net = custom_net.copy()
    net.external_drives["evprox"]["weights_ampa"]["L2_basket"] = 0.0800001
    assert network_hash(net) not in seen
    net = custom_net.copy()
    net._params["celsius"] = 36.0
    assert network_hash(net) not in seen


def test_canonical_text_is_compact_sorted_json(custom_net):
    text = network_json(custom_net)
    desc = json.loads(text)
    assert text == json.dumps(desc, sort_keys=True, separators=(",", ":"))
    assert desc == network_to_dict(custom_net)


# --------------------------------------------------------------------------
# files and errors
# --------------------------------------------------------------------------
def test_write_and_read_file(tmp_path, custom_net):
    path = write_network(custom_net, tmp_path / "net.json")
    assert path.read_text() == network_json(custom_net) + "\n"
    back = read_network(path)
    assert back == custom_net
    assert read_network(str(path)) == custom_net


def test_read_rejects_a_parameter_file(tmp_path):
    path = write_params(default_params(), tmp_path / "params.json")
    with pytest.raises(ValueError, match="params.json.*not a network description"):
        read_network(path)


def test_read_rejects_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match="broken.json is not a network description"):
        read_network(path)


def test_read_rejects_newer_format_version(tmp_path):
    desc = network_to_dict(jones_2009_model(mesh_shape=(3, 3)))
    desc["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "future.json"
    path.write_text(json.dumps(desc))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}, newer"):
        read_network(path)
    with pytest.raises(ValueError, match="newer"):
        network_from_dict(desc)


def test_from_dict_rejects_bad_descriptions():
    desc = network_to_dict(jones_2009_model(mesh_shape=(3, 3)))
    with pytest.raises(ValueError, match="not a network description"):
        network_from_dict([desc])
    broken = dict(desc)
    del broken["connectivity"]
    with pytest.raises(ValueError, match=r"\['connectivity'\]"):
        network_from_dict(broken)
    broken = dict(desc, format_version="1")
    with pytest.raises(ValueError, match="format_version"):
        network_from_dict(broken)


def test_to_dict_refuses_what_it_cannot_store():
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("ev", mu=5.0, sigma=1.0, numspikes=1, location="proximal",
                         weights_ampa={"L2_pyramidal": 0.01})
    net.external_drives["ev"]["dynamics"]["mu"] = lambda trial: 5.0
    with pytest.raises(TypeError, match=r"external_drives\['ev'\]\['dynamics'\]\['mu'\]"):
        network_to_dict(net)
    net = jones_2009_model(mesh_shape=(3, 3))
    net.custom_hook = print
    with pytest.raises(ValueError, match="custom_hook"):
        network_to_dict(net)
    net = jones_2009_model(mesh_shape=(3, 3))
    net.connectivity[0]["nc_dict"]["A_weight"] = float("nan")
    with pytest.raises(ValueError, match="A_weight.*finite"):
        network_to_dict(net)
    with pytest.raises(TypeError, match="net"):
        network_to_dict({"format": FORMAT_NAME})
