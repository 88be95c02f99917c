"""Tests of hnnfit.network: the pure-Python network description."""
import copy
import json
import math
import pickle

import numpy as np
import pytest

from hnnfit.network import (Connection, Network, jones_2009_model,
                            pick_connection)
from hnnfit.params import default_params

LAYER_SEP = 1307.4

# the "simulate dipole for evoked inputs" example (seed000_evoked case)
EVDIST1_AMPA = {"L2_basket": 0.006562, "L2_pyramidal": 0.000007, "L5_pyramidal": 0.142300}
EVDIST1_NMDA = {"L2_basket": 0.019482, "L2_pyramidal": 0.004317, "L5_pyramidal": 0.080074}
EVDIST1_DELAYS = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_pyramidal": 0.1}
EVPROX1_AMPA = {"L2_basket": 0.08831, "L2_pyramidal": 0.01525,
                "L5_basket": 0.19934, "L5_pyramidal": 0.00865}
EVPROX2_AMPA = {"L2_basket": 0.000003, "L2_pyramidal": 1.438840,
                "L5_basket": 0.008958, "L5_pyramidal": 0.684013}
PROX_DELAYS = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0, "L5_pyramidal": 1.0}


@pytest.fixture(scope="module")
def params():
    return default_params()


@pytest.fixture(scope="module")
def erp_net(params):
    return jones_2009_model(params, add_drives_from_params=True)


def _seed000_evoked(params):
    net = jones_2009_model(params)
    net.add_evoked_drive(
        "evdist1", mu=63.53, sigma=3.85, numspikes=1, weights_ampa=EVDIST1_AMPA,
        weights_nmda=EVDIST1_NMDA, location="distal", synaptic_delays=EVDIST1_DELAYS,
        seedcore=4)
    net.add_evoked_drive(
        "evprox1", mu=26.61, sigma=2.47, numspikes=1, weights_ampa=EVPROX1_AMPA,
        weights_nmda=None, location="proximal", synaptic_delays=PROX_DELAYS, seedcore=4)
    net.add_evoked_drive(
        "evprox2", mu=137.12, sigma=8.33, numspikes=1, weights_ampa=EVPROX2_AMPA,
        location="proximal", synaptic_delays=PROX_DELAYS, seedcore=4)
    return net


def _seed003(params, probability):
    net = jones_2009_model(params, add_drives_from_params=True)
    net.clear_connectivity()
    for target in ("L5_pyramidal", "L2_basket"):
        net.add_connection("L5_pyramidal", target, "distal", "ampa", 1.0, 1.0, 70,
                           probability=probability, conn_seed=3)
    for target in ("L5_pyramidal", "L2_basket"):
        net.add_connection("L2_basket", target, "soma", "gabaa", 1.0, 1.0, 70,
                           probability=probability, conn_seed=3)
    return net


CASES = {
    "erp_default": lambda p: jones_2009_model(p, add_drives_from_params=True),
    "seed000_evoked": _seed000_evoked,
    "seed003_all_to_all": lambda p: _seed003(p, 1.0),
    "seed003_sparse": lambda p: _seed003(p, 0.1),
}


def _summary(conn):
    nc = conn["nc_dict"]
    return {
        "src_type": conn["src_type"], "target_type": conn["target_type"],
        "loc": conn["loc"], "receptor": conn["receptor"],
        "n_src": conn["num_srcs"], "n_target": conn["num_targets"],
        "n_pairs": sum(len(t) for t in conn["gid_pairs"].values()),
        "weight": nc["A_weight"], "delay": nc["A_delay"], "lamtha": nc["lamtha"],
        "probability": conn["probability"],
    }


# --------------------------------------------------------------------------
# reference cases
# --------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_gid_ranges_and_rules(case, params, reference_dir):
    expected = json.loads((reference_dir / case / "network.json").read_text())
    net = CASES[case](params)
    assert {k: [r.start, r.stop] for k, r in net.gid_ranges.items()} == expected["gid_ranges"]
    assert list(net.gid_ranges) == list(expected["gid_ranges"])  # order matters
    got = [_summary(conn) for conn in net.connectivity]
    assert len(got) == len(expected["connectivity"])
    for idx, (ours, ref) in enumerate(zip(got, expected["connectivity"])):
        assert ours == ref, f"rule {idx} differs"


def test_erp_default_has_38_rules_drives_first(erp_net):
    assert len(erp_net.connectivity) == 38
    # the parameter-file drives are attached before the cell-to-cell rules
    assert [c["src_type"] for c in erp_net.connectivity[:22]].count("evprox1") == 8
    assert erp_net.connectivity[22]["src_type"] == "L2_pyramidal"
    assert list(erp_net.external_drives) == ["evdist1", "evprox1", "evprox2"]


@pytest.mark.parametrize("case", ["erp_default", "seed000_evoked"])
def test_reference_drive_events_exact(case, params, reference_dir):
    expected = json.loads((reference_dir / case / "drive_events.json").read_text())
    net = CASES[case](params)
    net._instantiate_drives(tstop=170.0, n_trials=2)
    for name, ref in expected.items():
        drive = net.external_drives[name]
        assert drive["cell_specific"] == ref["cell_specific"]
        r = net.gid_ranges[name]
        assert [r.start, r.stop] == ref["gid_range"]
        assert len(drive["events"]) == len(ref["trials"])
        for ours_trial, ref_trial in zip(drive["events"], ref["trials"]):
            assert len(ours_trial) == len(ref_trial)
            for ours, theirs in zip(ours_trial, ref_trial):
                np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_params_drive_seeds_shifted_by_first_gid(erp_net, params):
    for name, tag in (("evdist1", "evdist_1"), ("evprox1", "evprox_1"),
                      ("evprox2", "evprox_2")):
        seed = int(params[f"prng_seedcore_{tag}"])
        assert erp_net.external_drives[name]["event_seed"] == seed + erp_net.gid_ranges[name][0]


def test_sparse_rule_keeps_rounded_fraction(params):
    net = _seed003(params, 0.1)
    l2b = net.connectivity[pick_connection(net, "L2_basket", "L2_basket")[0]]
    # 35 * 35 = 1225 pairs, round(122.5) = 122 (round half to even)
    assert sum(len(t) for t in l2b["gid_pairs"].values()) == 122
    # the same seed gives the same pairs; another seed other pairs
    again = _seed003(params, 0.1)
    assert again.connectivity[-1]["gid_pairs"] == l2b["gid_pairs"]
    net.add_connection("L2_basket", "L2_basket", "soma", "gabaa", 1.0, 1.0, 70,
                       probability=0.1, conn_seed=4)
    assert net.connectivity[-1]["gid_pairs"] != l2b["gid_pairs"]
    # pruning does not change the source/target sets the rule was made from
    assert l2b["num_srcs"] == 35 and l2b["src_gids"] == set(range(35))


# --------------------------------------------------------------------------
# positions and gids
# --------------------------------------------------------------------------
def test_positions_default_grid(params):
    net = Network(params, add_connections=False)
    pos = net.pos_dict
    assert net.connectivity == []
    assert {k: len(v) for k, v in pos.items() if k != "origin"} == {
        "L2_basket": 35, "L2_pyramidal": 100, "L5_basket": 35, "L5_pyramidal": 100}
    assert pos["origin"] == (4.0, 4.0, 653.0)
    assert pos["L5_pyramidal"][:3] == [(0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 2.0, 0.0)]
    assert pos["L5_pyramidal"][10] == (1.0, 0.0, 0.0)
    assert pos["L2_pyramidal"][0] == (0.0, 0.0, LAYER_SEP)
    # basket cells: row y=0 at x = 0, 3, 6, 9; then row y=1 at x = 1, 4, 7; ...
    xy = [p[:2] for p in pos["L2_basket"]]
    assert xy[:8] == [(0.0, 0.0), (3.0, 0.0), (6.0, 0.0), (9.0, 0.0),
                      (1.0, 1.0), (4.0, 1.0), (7.0, 1.0), (0.0, 2.0)]
    assert [p[:2] for p in pos["L5_basket"]] == xy
    assert pos["L2_basket"][0][2] == pytest.approx(0.8 * LAYER_SEP)
    assert pos["L5_basket"][0][2] == pytest.approx(0.2 * LAYER_SEP)
    assert list(net.gid_ranges) == ["L2_basket", "L2_pyramidal", "L5_basket", "L5_pyramidal"]
    assert net.gid_ranges["L5_pyramidal"] == range(170, 270)
    assert net.gid_to_type(169) == "L5_basket" and net.gid_to_type(270) is None


def test_mesh_shape_and_set_cell_positions(params):
    net = jones_2009_model(params, mesh_shape=(3, 3))
    assert {k: len(r) for k, r in net.gid_ranges.items()} == {
        "L2_basket": 3, "L2_pyramidal": 9, "L5_basket": 3, "L5_pyramidal": 9}
    assert net.pos_dict["origin"][:2] == (1.0, 1.0)
    net.add_evoked_drive("ev", mu=5.0, sigma=1.0, numspikes=1, location="proximal",
                         weights_ampa={"L2_pyramidal": 0.1})
    net.set_cell_positions(inplane_distance=2.0, layer_separation=1000.0)
    assert net.pos_dict["L5_pyramidal"][1] == (0.0, 2.0, 0.0)
    assert net.pos_dict["L2_pyramidal"][0][2] == 1000.0
    assert net.pos_dict["origin"] == (2.0, 2.0, 500.0)
    assert net.pos_dict["ev"] == [(2.0, 2.0, 500.0)] * 9
    with pytest.raises(ValueError, match="inplane_distance"):
        net.set_cell_positions(inplane_distance=0)
    with pytest.raises(ValueError, match="mesh_shape"):
        Network(params, mesh_shape=(0, 3))
    with pytest.raises(TypeError, match="mesh_shape"):
        Network(params, mesh_shape=10)


def test_mesh_shape_from_params(params, tmp_path):
    from hnnfit import PARAMS_DIR
    from hnnfit.params import read_params, write_params

    # every bundled file says 10 x 10, so the default grid stays 10 x 10
    for fname in sorted(PARAMS_DIR.glob("*.json")):
        file_params = read_params(fname)
        assert (file_params["N_pyr_x"], file_params["N_pyr_y"]) == (10, 10)
        assert Network(file_params, add_connections=False)._n_pyr_x == 10
    net = jones_2009_model()
    assert len(net.gid_ranges["L5_pyramidal"]) == 100

    # an exported parameter file of a 3 x 4 network gives that network back
    small = params.copy()
    small["N_pyr_x"], small["N_pyr_y"] = 3, 4
    path = write_params(small, tmp_path / "small.json")
    for net in (Network(read_params(path)), jones_2009_model(path),
                Network(str(path), add_connections=False)):
        assert (net._n_pyr_x, net._n_pyr_y) == (3, 4)
        assert len(net.gid_ranges["L2_pyramidal"]) == 12
    # built from the keys, the network equals one given the shape explicitly
    assert jones_2009_model(small) == jones_2009_model(small, mesh_shape=(3, 4))
    # an explicit mesh_shape wins over the parameters
    net = jones_2009_model(small, mesh_shape=(2, 2))
    assert len(net.gid_ranges["L2_pyramidal"]) == 4

    # a set without the keys keeps the published 10 x 10 grid
    bare = params.copy()
    del bare["N_pyr_x"], bare["N_pyr_y"]
    assert (Network(bare, add_connections=False)._n_pyr_x,
            Network(bare, add_connections=False)._n_pyr_y) == (10, 10)
    bad = params.copy()
    bad["N_pyr_x"] = 0
    with pytest.raises(ValueError, match="N_pyr_x"):
        Network(bad)


def test_equality_covers_params(params):
    a = jones_2009_model(params, mesh_shape=(3, 3))
    b = jones_2009_model(params, mesh_shape=(3, 3))
    assert a == b
    # the simulator reads celsius from the parameter set
    b._params = params.copy()
    b._params["celsius"] = 30.0
    assert a != b


def test_params_from_file_name(shared_dir):
    net = jones_2009_model(shared_dir / "params" / "default.json")
    assert len(net.connectivity) == 16
    assert net.threshold == 0.0
    with pytest.raises(TypeError, match="params"):
        Network(42)


# --------------------------------------------------------------------------
# distance-scaled weights and delays
# --------------------------------------------------------------------------
def test_synaptic_netcons_hand_computed(erp_net):
    net = erp_net
    idx = pick_connection(net, "L2_basket", "L2_pyramidal", receptor="gabaa")[0]
    netcons = {(s, t): (w, d) for s, t, w, d in net.synaptic_netcons(idx)}
    assert len(netcons) == 3500
    # L2 basket gid 0 sits at (0, 0); L2 pyramidal index 34 at x=3, y=4
    w, d = netcons[(0, 35 + 34)]
    factor = math.exp(-25.0 / 50.0 ** 2)
    assert w == pytest.approx(0.05 * factor, rel=1e-12)
    assert d == pytest.approx(1.0 / factor, rel=1e-12)
    # same position (z differs only): full weight and delay
    w, d = netcons[(0, 35)]
    assert (w, d) == (0.05, 1.0)

    # a drive cell sits at the origin (4, 4); L5 pyramidal gid 170 at (0, 0)
    idx = pick_connection(net, "evprox1", "L5_pyramidal", receptor="ampa")[0]
    by_target = {t: (s, w, d) for s, t, w, d in net.synaptic_netcons(idx)}
    src, w, d = by_target[170]
    assert net.gid_to_type(src) == "evprox1"
    factor = math.exp(-32.0 / 3.0 ** 2)
    assert w == pytest.approx(0.00865 * factor, rel=1e-12)
    assert d == pytest.approx(1.0 / factor, rel=1e-12)
    # the cell at the origin gets the nominal weight and delay
    src, w, d = by_target[170 + 44]
    assert (w, d) == (0.00865, 1.0)


def test_synaptic_netcons_scale_with_grid_and_gain(params):
    net = jones_2009_model(params, mesh_shape=(4, 4))
    idx = pick_connection(net, "L5_basket", "L5_pyramidal", receptor="gabaa")[0]
    before = net.synaptic_netcons(idx)
    # lamtha is in units of the grid spacing: stretching the grid changes nothing
    net.set_cell_positions(inplane_distance=3.0)
    after = net.synaptic_netcons(idx)
    for (s1, t1, w1, d1), (s2, t2, w2, d2) in zip(before, after):
        assert (s1, t1) == (s2, t2)
        assert w2 == pytest.approx(w1, rel=1e-12) and d2 == pytest.approx(d1, rel=1e-12)
    net.connectivity[idx]["nc_dict"]["gain"] = 2.0
    doubled = net.synaptic_netcons(idx)
    assert [w for *_, w, _ in doubled] == pytest.approx([2 * w for *_, w, _ in after])
    assert any(w1 != w2 for (*_, w1, _), (*_, w2, _) in zip(before, doubled))


# --------------------------------------------------------------------------
# Connection records and pick_connection
# --------------------------------------------------------------------------
def test_connection_printout_matches_reference(erp_net, shared_dir):
    idx = pick_connection(erp_net, src_gids="L5_basket", target_gids="L5_pyramidal",
                          loc="soma", receptor="gabaa")
    assert len(idx) == 1
    conn = erp_net.connectivity[idx[0]]
    text = repr(conn)
    assert text == (
        "L5_basket -> L5_pyramidal\n"
        "cell counts: 35 srcs, 100 targets\n"
        "connection probability: 1.0\n"
        "loc: 'soma'; receptor: 'gabaa'\n"
        "weight: 0.025; delay: 1.0; lamtha: 70.0"
    )
    # the published example prints the same lines
    example = " ".join((shared_dir / "examples" / "modify_connectivity.txt").read_text().split())
    assert " ".join(text.split()) in example


def test_connection_record_fields(erp_net):
    conn = erp_net.connectivity[pick_connection(erp_net, "L5_basket", "L5_basket")[0]]
    assert isinstance(conn, Connection) and isinstance(conn, dict)
    assert conn.src_type == conn["src_type"] == "L5_basket"
    assert conn.target_gids == set(range(135, 170))
    assert conn.allow_autapses is False
    assert all(src not in targets for src, targets in conn.gid_pairs.items())
    assert conn.n_pairs == 35 * 34
    assert set(conn.nc_dict) == {"A_weight", "A_delay", "lamtha", "threshold", "gain"}
    assert conn.nc_dict["threshold"] == 0.0 and conn.nc_dict["gain"] == 1.0
    with pytest.raises(AttributeError):
        conn.no_such_field


def test_pick_connection(erp_net):
    net = erp_net
    n = len(net.connectivity)
    gabaa = pick_connection(net, receptor="gabaa")
    assert gabaa == sorted(gabaa) and len(gabaa) == 5
    assert all(net.connectivity[i]["receptor"] == "gabaa" for i in gabaa)
    both = pick_connection(net, receptor=["gabaa", "gabab"])
    assert len(both) == 7 and set(gabaa) < set(both)
    distal_ampa = pick_connection(net, loc="distal", receptor="ampa")
    assert all(net.connectivity[i]["loc"] == "distal" and net.connectivity[i]["receptor"] == "ampa"
               for i in distal_ampa)
    assert len(distal_ampa) == 3 + 1  # evdist1 to 3 cell types, L2 pyr -> L5 pyr
    # drives are sources too; single gids and gid lists work
    assert pick_connection(net, src_gids="evprox2") == list(range(14, 22))
    assert pick_connection(net, src_gids=775) == [14, 15]
    assert pick_connection(net, src_gids=[0, 35], target_gids="L2_basket") == \
        pick_connection(net, src_gids=["L2_basket", "L2_pyramidal"], target_gids="L2_basket")
    assert pick_connection(net, src_gids="L5_basket", loc="distal") == []
    assert pick_connection(net) == []
    assert all(0 <= i < n for i in pick_connection(net, target_gids=range(0, 35)))
    with pytest.raises(ValueError, match="src_gids"):
        pick_connection(net, src_gids="L4_pyramidal")
    with pytest.raises(ValueError, match="target_gids"):
        pick_connection(net, target_gids="evprox1")  # drives are never targets
    with pytest.raises(ValueError, match="receptor"):
        pick_connection(net, receptor="glutamate")
    with pytest.raises(ValueError, match="loc"):
        pick_connection(net, loc="apical")
    with pytest.raises(ValueError, match="src_gids"):
        pick_connection(net, src_gids=99999)


# --------------------------------------------------------------------------
# add_connection
# --------------------------------------------------------------------------
def test_add_connection_gid_forms(params):
    net = Network(params, add_connections=False)
    net.add_connection(0, "L2_pyramidal", "soma", "gabaa", 0.1, 1.0, 3.0)
    conn = net.connectivity[-1]
    assert conn.gid_pairs == {0: list(range(35, 135))}
    assert conn.src_type == "L2_basket" and conn.target_type == "L2_pyramidal"

    net.add_connection(range(0, 3), [40, 41], "soma", "gabab", 0.1, 1.0, 3.0)
    assert net.connectivity[-1].gid_pairs == {0: [40, 41], 1: [40, 41], 2: [40, 41]}

    net.add_connection([0, 1], [[40], [41, 42]], "proximal", "ampa", 0.1, 1.0, 3.0)
    assert net.connectivity[-1].gid_pairs == {0: [40], 1: [41, 42]}

    net.add_connection("L2_basket", "L2_basket", "soma", "gabaa", 0.1, 1.0, 3.0,
                       allow_autapses=False)
    assert net.connectivity[-1].n_pairs == 35 * 34

    net.add_connection("L2_basket", 0, "soma", "gabaa", 0.1, 1.0, 3.0,
                       threshold=-10.0, gain=0.5)
    assert net.connectivity[-1].nc_dict["threshold"] == -10.0
    assert net.connectivity[-1].nc_dict["gain"] == 0.5
    # a rule reaching L2 pyramidal dendrites by section name
    net.add_connection("L2_basket", "L2_pyramidal", "apical_tuft", "gabaa", 0.1, 1.0, 3.0)
    assert net.connectivity[-1].loc == "apical_tuft"


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(loc="apical"), ValueError, "loc"),
    (dict(receptor="ampa"), ValueError, "receptor"),  # no ampa at L2 pyramidal soma
    (dict(receptor="glutamate"), ValueError, "receptor"),
    (dict(src_gids="L6_pyramidal"), ValueError, "src_gids"),
    (dict(target_gids="L6_pyramidal"), ValueError, "target_gids"),
    (dict(target_gids=[40, 0]), ValueError, "target_gids"),  # two cell types
    (dict(target_gids=5000), ValueError, "target_gids"),
    (dict(target_gids=[40.5]), TypeError, "target_gids"),
    (dict(src_gids=[0, 40]), ValueError, "src_gids"),
    (dict(weight=-0.1), ValueError, "weight"),
    (dict(delay=-1.0), ValueError, "delay"),
    (dict(lamtha=0.0), ValueError, "lamtha"),
    (dict(weight="big"), TypeError, "weight"),
    (dict(probability=0.0), ValueError, "probability"),
    (dict(probability=1.5), ValueError, "probability"),
    (dict(allow_autapses="yes"), TypeError, "allow_autapses"),
    (dict(conn_seed=1.5), TypeError, "conn_seed"),
])
def test_add_connection_validation(params, kwargs, exc, name):
    net = Network(params, add_connections=False)
    args = dict(src_gids="L2_basket", target_gids="L2_pyramidal", loc="soma",
                receptor="gabaa", weight=0.1, delay=1.0, lamtha=3.0)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        net.add_connection(**args)
    assert net.connectivity == []


def test_add_connection_unreachable_location(params):
    net = Network(params, add_connections=False)
    # L5 basket cells have no distal synapses
    with pytest.raises(ValueError, match="loc.*L5_basket"):
        net.add_connection("L5_pyramidal", "L5_basket", "distal", "ampa", 0.1, 1.0, 3.0)
    # basket cells have no GABA-B receptor
    with pytest.raises(ValueError, match="receptor"):
        net.add_connection("L2_basket", "L2_basket", "soma", "gabab", 0.1, 1.0, 3.0)


# --------------------------------------------------------------------------
# clearing and copying
# --------------------------------------------------------------------------
def test_clear_connectivity_keeps_drives(params):
    net = jones_2009_model(params, add_drives_from_params=True)
    net.clear_connectivity()
    assert len(net.connectivity) == 22
    assert all(c.src_type in net.external_drives for c in net.connectivity)
    assert "evprox1" in net.gid_ranges


def test_clear_drives(params):
    net = jones_2009_model(params, add_drives_from_params=True)
    net.clear_drives()
    assert net.external_drives == {}
    assert len(net.connectivity) == 16
    assert list(net.gid_ranges) == ["L2_basket", "L2_pyramidal", "L5_basket", "L5_pyramidal"]
    assert "evprox1" not in net.pos_dict and "origin" in net.pos_dict
    # gids are handed out again from 270
    net.add_evoked_drive("ev", mu=5.0, sigma=1.0, numspikes=1, location="distal",
                         weights_ampa={"L2_pyramidal": 0.1})
    assert net.gid_ranges["ev"] == range(270, 370)


def test_copy_is_deep_and_drops_outputs(params):
    net = jones_2009_model(params, add_drives_from_params=True, mesh_shape=(3, 3))
    net._instantiate_drives(tstop=50.0, n_trials=1)
    net.cell_response = object()  # stands for a simulation's output
    twin = net.copy()
    assert twin.cell_response is None
    assert all(d["events"] == [] for d in twin.external_drives.values())
    assert net.external_drives["evprox1"]["events"] != []
    twin.connectivity[0]["nc_dict"]["A_weight"] = 123.0
    twin.external_drives["evprox1"]["dynamics"]["mu"] = 99.0
    assert net.connectivity[0]["nc_dict"]["A_weight"] != 123.0
    assert net.external_drives["evprox1"]["dynamics"]["mu"] != 99.0
    twin.add_connection("L2_basket", "L2_basket", "soma", "gabaa", 0.1, 1.0, 3.0)
    assert len(twin.connectivity) == len(net.connectivity) + 1


def test_pickle_roundtrip_equality(params):
    net = jones_2009_model(params, add_drives_from_params=True, mesh_shape=(3, 3))
    net.add_poisson_drive("pois", rate_constant=20.0, tstop=40.0, location="proximal",
                          weights_ampa={"L5_pyramidal": 0.01}, probability=0.5)
    net._instantiate_drives(tstop=50.0, n_trials=2)
    clone = pickle.loads(pickle.dumps(net))
    assert clone == net
    assert clone.synaptic_netcons(3) == net.synaptic_netcons(3)
    assert clone.external_drives["pois"]["events"] == net.external_drives["pois"]["events"]
    assert copy.deepcopy(net) == net
    clone.connectivity[0]["nc_dict"]["A_weight"] *= 2
    assert clone != net
    other = pickle.loads(pickle.dumps(net))
    other.set_cell_positions(inplane_distance=2.0)
    assert other != net


def test_network_repr(erp_net):
    text = repr(erp_net)
    assert text.startswith("<Network | ")
    assert "100 L5_pyramidal" in text and "38 connection rules" in text and "3 drives" in text


# --------------------------------------------------------------------------
# drives
# --------------------------------------------------------------------------
DRIVE_KEYS = {"type", "location", "n_drive_cells", "cell_specific", "event_seed",
              "conn_seed", "dynamics", "weights_ampa", "weights_nmda",
              "synaptic_delays", "probability", "space_constant", "events"}


def test_evoked_drive_layout(params):
    net = jones_2009_model(params)
    net.add_evoked_drive("evdist1", mu=63.53, sigma=3.85, numspikes=1,
                         weights_ampa=EVDIST1_AMPA, weights_nmda=EVDIST1_NMDA,
                         location="distal", synaptic_delays=EVDIST1_DELAYS, seedcore=4)
    drive = net.external_drives["evdist1"]
    assert DRIVE_KEYS <= set(drive)
    assert drive["type"] == "evoked" and drive["location"] == "distal"
    assert drive["n_drive_cells"] == 235 and drive["cell_specific"] is True
    assert drive["event_seed"] == 4 and drive["conn_seed"] == 3
    assert drive["dynamics"] == {"mu": 63.53, "sigma": 3.85, "numspikes": 1}
    assert drive["space_constant"] == 3.0 and drive["events"] == []
    assert drive["weights_ampa"] == EVDIST1_AMPA
    assert net.pos_dict["evdist1"] == [net.pos_dict["origin"]] * 235
    rules = net.connectivity[-6:]
    assert [(c.target_type, c.receptor) for c in rules] == [
        ("L2_basket", "ampa"), ("L2_basket", "nmda"), ("L2_pyramidal", "ampa"),
        ("L2_pyramidal", "nmda"), ("L5_pyramidal", "ampa"), ("L5_pyramidal", "nmda")]
    # one drive cell per target cell, in gid order
    assert rules[0].gid_pairs == {270 + i: [i] for i in range(35)}
    assert rules[2].gid_pairs[305] == [35]
    assert "evdist1" in repr(drive) and "mu: 63.53" in repr(drive)
    # dynamics may be edited, e.g. to synchronise the drive cells
    drive["dynamics"]["sync_within_trial"] = True
    net._instantiate_drives(tstop=170.0, n_trials=1)
    first = drive["events"][0]
    assert all(cell == first[0] for cell in first)


def test_common_drive_is_all_to_all(params):
    net = jones_2009_model(params, mesh_shape=(3, 3))
    net.add_bursty_drive("alpha", tstart=10.0, burst_rate=10.0, burst_std=2.0,
                         location="distal", n_drive_cells=4,
                         weights_ampa={"L2_pyramidal": 0.01, "L5_pyramidal": 0.02},
                         weights_nmda={"L5_pyramidal": 0.01})
    drive = net.external_drives["alpha"]
    assert drive["cell_specific"] is False and drive["n_drive_cells"] == 4
    rules = net.connectivity[-3:]
    assert [(c.target_type, c.receptor) for c in rules] == [
        ("L2_pyramidal", "ampa"), ("L5_pyramidal", "ampa"), ("L5_pyramidal", "nmda")]
    assert all(c.n_pairs == 4 * 9 for c in rules)
    assert drive["space_constant"] == 100.0
    net._instantiate_drives(tstop=100.0, n_trials=1)
    assert len(drive["events"][0]) == 4
    assert all(0 < t <= 100.0 for cell in drive["events"][0] for t in cell)


def test_poisson_drive_rates(params):
    net = jones_2009_model(params, mesh_shape=(3, 3))
    net.add_poisson_drive("p", rate_constant=10.0, location="proximal",
                          weights_ampa={"L2_basket": 0.1, "L5_basket": 0.2})
    assert net.external_drives["p"]["dynamics"]["rate_constant"] == {
        "L2_basket": 10.0, "L5_basket": 10.0}
    assert net.external_drives["p"]["dynamics"]["tstop"] is None
    net.add_poisson_drive("q", rate_constant={"L2_basket": 5.0}, location="proximal",
                          weights_ampa={"L2_basket": 0.1}, tstart=5.0, tstop=50.0)
    assert net.gid_ranges["q"] == range(30, 33)
    net._instantiate_drives(tstop=60.0, n_trials=1)
    assert all(5.0 < t < 50.0 for cell in net.external_drives["q"]["events"][0] for t in cell)


@pytest.mark.parametrize("kind, kwargs, exc, name", [
    ("evoked", dict(sigma=-1.0), ValueError, "sigma"),
    ("evoked", dict(numspikes=0), ValueError, "numspikes"),
    ("evoked", dict(numspikes=1.5), TypeError, "numspikes"),
    ("evoked", dict(weights_ampa={"L6_pyramidal": 0.1}), ValueError, "weights_ampa"),
    ("evoked", dict(weights_ampa={"L2_basket": -0.1}), ValueError, "weights_ampa"),
    ("evoked", dict(weights_ampa=None), ValueError, "weights_ampa"),
    ("evoked", dict(location="distal", weights_ampa={"L5_basket": 0.1}), ValueError,
     "location"),
    ("evoked", dict(location="elsewhere"), ValueError,
     "location must be one of 'distal', 'proximal' or a section name of the targeted cell "
     "types, got 'elsewhere'"),
    ("evoked", dict(synaptic_delays={"L5_pyramidal": 0.1}), ValueError, "synaptic_delays"),
    ("evoked", dict(synaptic_delays=-0.1), ValueError, "synaptic_delays"),
    ("evoked", dict(probability=0.0), ValueError, "probability"),
    ("evoked", dict(space_constant=0.0), ValueError, "space_constant"),
    ("evoked", dict(n_drive_cells=5), ValueError, "n_drive_cells"),
    ("evoked", dict(cell_specific=False), ValueError, "n_drive_cells"),
    ("evoked", dict(cell_specific=False, n_drive_cells=0), ValueError, "n_drive_cells"),
    ("evoked", dict(event_seed=1.5), TypeError, "event_seed"),
    ("evoked", dict(name="L2_basket"), ValueError, "name"),
    ("poisson", dict(rate_constant=-2.0), ValueError, "rate_constant"),
    ("poisson", dict(rate_constant={"L5_pyramidal": 2.0}), ValueError, "rate_constant"),
    ("poisson", dict(tstart=-1.0), ValueError, "tstart"),
    ("poisson", dict(tstart=20.0, tstop=20.0), ValueError, "tstop"),
    ("poisson", dict(tstart=20.0, tstop=10.0), ValueError, "tstop"),
    ("bursty", dict(burst_rate=0.0), ValueError, "burst_rate"),
    ("bursty", dict(tstop=5.0), ValueError, "tstop"),
    ("bursty", dict(numspikes=5, spike_isi=30.0), ValueError, "spike_isi"),
    ("bursty", dict(burst_std=-1.0), ValueError, "burst_std"),
    ("bursty", dict(tstart_std=-1.0), ValueError, "tstart_std"),
])
def test_drive_validation(params, kind, kwargs, exc, name):
    net = jones_2009_model(params, mesh_shape=(3, 3))
    n_rules, n_gids = len(net.connectivity), dict(net.gid_ranges)
    args = {"name": "d", "location": "proximal", "weights_ampa": {"L2_basket": 0.1}}
    if kind == "evoked":
        args.update(mu=10.0, sigma=1.0, numspikes=1)
        adder = net.add_evoked_drive
    elif kind == "poisson":
        args.update(rate_constant=10.0)
        adder = net.add_poisson_drive
    else:
        args.update(tstart=10.0, burst_rate=10.0)
        adder = net.add_bursty_drive
    args.update(kwargs)
    name_arg = args.pop("name")
    with pytest.raises(exc, match=name):
        adder(name_arg, **args)
    # a refused drive leaves no trace
    assert len(net.connectivity) == n_rules and dict(net.gid_ranges) == n_gids
    assert net.external_drives == {}


def test_duplicate_drive_name(params):
    net = jones_2009_model(params, mesh_shape=(3, 3))
    kwargs = dict(mu=10.0, sigma=1.0, numspikes=1, location="proximal",
                  weights_ampa={"L2_basket": 0.1})
    net.add_evoked_drive("ev", **kwargs)
    with pytest.raises(ValueError, match="name"):
        net.add_evoked_drive("ev", **kwargs)


def test_drive_probability_prunes_each_receptor_alike(params):
    net = jones_2009_model(params)
    net.add_evoked_drive("ev", mu=10.0, sigma=1.0, numspikes=1, location="proximal",
                         weights_ampa={"L5_pyramidal": 0.1}, weights_nmda={"L5_pyramidal": 0.1},
                         probability=0.5, conn_seed=7)
    ampa, nmda = net.connectivity[-2:]
    assert ampa.n_pairs == 50
    assert ampa.gid_pairs == nmda.gid_pairs


def test_legacy_mode_targets_all_cell_types(params):
    net = Network(params, legacy_mode=True, mesh_shape=(3, 3), add_connections=False)
    net.add_evoked_drive("ev", mu=10.0, sigma=1.0, numspikes=1, location="distal",
                         weights_ampa={"L2_pyramidal": 0.1})
    assert net.external_drives["ev"]["n_drive_cells"] == 24
    assert [c.target_type for c in net.connectivity] == list(net.cell_types)
    assert net.connectivity[0].nc_dict["A_weight"] == 0.0


def test_instantiate_drives_validation(erp_net):
    net = erp_net.copy()
    with pytest.raises(ValueError, match="tstop"):
        net._instantiate_drives(tstop=-1.0)
    with pytest.raises(ValueError, match="n_trials"):
        net._instantiate_drives(tstop=10.0, n_trials=0)


def test_plot_cells_draws_every_cell_at_its_position(params):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = jones_2009_model(params, mesh_shape=(3, 3), add_drives_from_params=True)
    net.set_cell_positions(inplane_distance=2.0)
    fig = net.plot_cells(show=False)
    (ax,) = fig.axes
    # one scatter per cell type (no drives), labelled, in the gid order
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["L2_basket", "L2_pyramidal", "L5_basket", "L5_pyramidal"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels

    def drawn(i):
        return np.column_stack([np.asarray(c, dtype=float)
                                for c in ax.collections[i]._offsets3d])

    for i, cell_type in enumerate(labels):
        np.testing.assert_array_equal(drawn(i), net.pos_dict[cell_type])
    # the grid drawn is the moved one: pyramidal x at 0, 2, 4 um; layers
    # LAYER_SEP apart, baskets at 0.2 and 0.8 of it
    assert sorted(set(drawn(3)[:, 0])) == [0.0, 2.0, 4.0] and set(drawn(3)[:, 2]) == {0.0}
    assert set(drawn(1)[:, 2]) == {LAYER_SEP}
    assert drawn(0)[:, 2] == pytest.approx(0.8 * LAYER_SEP)
    assert drawn(2)[:, 2] == pytest.approx(0.2 * LAYER_SEP)
    plt.close(fig)


def test_drives_from_param_file_of_every_type(shared_dir):
    net = jones_2009_model(shared_dir / "params" / "Alpha.param",
                           add_drives_from_params=True, mesh_shape=(3, 3))
    names = list(net.external_drives)
    assert names == sorted(names)
    assert {"bursty1", "bursty2", "extpois"} <= set(names)
    types = {name: d["type"] for name, d in net.external_drives.items()}
    assert types["bursty1"] == "bursty" and types["extpois"] == "poisson"
    # gid blocks follow one another in the order the drives were added
    starts = [net.gid_ranges[name].start for name in names]
    assert starts == sorted(starts) and starts[0] == 24
    for name in names:
        assert net.external_drives[name]["event_seed"] >= net.gid_ranges[name].start
    net._instantiate_drives(tstop=100.0, n_trials=1)
    for name in names:
        events = net.external_drives[name]["events"][0]
        assert len(events) == len(net.gid_ranges[name])
        assert all(0 < t <= 100.0 for cell in events for t in cell)


def test_network_constructor_builds_the_model(params):
    # Network(params) is the Jones 2009 model, as jones_2009_model(params)
    net = Network(params)
    ref = jones_2009_model(params)
    assert len(net.connectivity) == 16
    assert [(c.src_type, c.target_type, c.loc, c.receptor) for c in net.connectivity] == \
        [(c.src_type, c.target_type, c.loc, c.receptor) for c in ref.connectivity]
    assert Network(params, add_connections=False).connectivity == []
    with pytest.raises(TypeError, match="add_connections"):
        Network(params, add_connections="yes")


def test_neymotin_2020_model_is_the_same_column():
    from hnnfit import jones_2009_model, neymotin_2020_model

    a = jones_2009_model(mesh_shape=(3, 3), add_drives_from_params=True)
    b = neymotin_2020_model(mesh_shape=(3, 3), add_drives_from_params=True)
    assert list(a.cell_types) == list(b.cell_types)
    assert a.gid_ranges == b.gid_ranges
    assert len(a.connectivity) == len(b.connectivity) == 16 + len(
        [c for c in a.connectivity if c["src_type"] in a.external_drives])
    assert all(x == y for x, y in zip(a.connectivity, b.connectivity))
    assert a.external_drives == b.external_drives
