"""Parameter spaces: names -> network changes, bounds, unit transforms."""
import math
import pickle

import numpy as np
import pytest

from hnnfit.fit.space import Parameter, ParameterSpace
from hnnfit.network import jones_2009_model

WEIGHTS_AMPA = {"L2_basket": 0.08, "L2_pyramidal": 0.01, "L5_basket": 0.04,
                "L5_pyramidal": 0.01}


@pytest.fixture(scope="module")
def base_net():
    # a small column: the space only edits data, nothing is simulated
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox2", mu=137.1, sigma=8.3, numspikes=1, location="proximal",
                         weights_ampa=WEIGHTS_AMPA, weights_nmda={"L2_pyramidal": 0.002},
                         synaptic_delays=0.1, event_seed=3)
    net.add_evoked_drive("evdist1", mu=63.5, sigma=3.9, numspikes=1, location="distal",
                         weights_ampa={"L2_basket": 0.006, "L2_pyramidal": 0.007,
                                       "L5_pyramidal": 0.14},
                         weights_nmda={"L2_basket": 0.004, "L2_pyramidal": 0.004,
                                       "L5_pyramidal": 0.08},
                         synaptic_delays={"L2_basket": 0.1, "L2_pyramidal": 0.1,
                                          "L5_pyramidal": 0.1}, event_seed=2)
    net.add_poisson_drive("poisson1", rate_constant={"L5_pyramidal": 40.0},
                          location="proximal", weights_ampa={"L5_pyramidal": 0.001})
    return net


def _conn(net, drive, cell_type, receptor):
    found = [c for c in net.connectivity if c["src_type"] == drive
             and c["target_type"] == cell_type and c["receptor"] == receptor]
    assert len(found) == 1
    return found[0]


@pytest.fixture
def space():
    return ParameterSpace([
        Parameter("evprox2.mu", 100.0, 150.0),
        Parameter("evprox2.sigma", 1.0, 20.0),
        Parameter("evprox2.numspikes", 1, 4, integer=True),
        Parameter("evprox2.ampa.L5_pyramidal", 1e-4, 1.0, log=True),
        Parameter("evdist1.nmda.L2_basket", 0.0, 0.05),
        Parameter("evprox2.delay.L5_pyramidal", 0.1, 10.0),
        Parameter("poisson1.rate_constant.L5_pyramidal", 1.0, 100.0),
    ])


def test_apply_edits_a_copy_drive_and_connectivity(base_net, space):
    space.validate(base_net)
    before = pickle.dumps(base_net)
    values = {"evprox2.mu": 120.5, "evprox2.sigma": 4.0, "evprox2.numspikes": 3,
              "evprox2.ampa.L5_pyramidal": 0.3, "evdist1.nmda.L2_basket": 0.02,
              "evprox2.delay.L5_pyramidal": 2.5,
              "poisson1.rate_constant.L5_pyramidal": 12.0}
    new = space.apply(base_net, values)
    assert new is not base_net
    assert pickle.dumps(base_net) == before  # the original is untouched

    prox = new.external_drives["evprox2"]
    assert prox["dynamics"]["mu"] == 120.5 and prox["dynamics"]["sigma"] == 4.0
    assert prox["dynamics"]["numspikes"] == 3
    assert isinstance(prox["dynamics"]["numspikes"], int)
    assert prox["weights_ampa"]["L5_pyramidal"] == 0.3
    assert _conn(new, "evprox2", "L5_pyramidal", "ampa")["nc_dict"]["A_weight"] == 0.3
    # other targets keep their weights
    assert _conn(new, "evprox2", "L2_basket", "ampa")["nc_dict"]["A_weight"] == 0.08
    assert new.external_drives["evdist1"]["weights_nmda"]["L2_basket"] == 0.02
    assert _conn(new, "evdist1", "L2_basket", "nmda")["nc_dict"]["A_weight"] == 0.02
    assert _conn(new, "evdist1", "L2_basket", "ampa")["nc_dict"]["A_weight"] == 0.006
    # a scalar delay becomes per-cell-type; only L5_pyramidal changes
    delays = prox["synaptic_delays"]
    assert delays["L5_pyramidal"] == 2.5 and delays["L2_basket"] == 0.1
    assert _conn(new, "evprox2", "L5_pyramidal", "ampa")["nc_dict"]["A_delay"] == 2.5
    assert _conn(new, "evprox2", "L2_pyramidal", "nmda")["nc_dict"]["A_delay"] == 0.1
    assert new.external_drives["poisson1"]["dynamics"]["rate_constant"]["L5_pyramidal"] == 12.0

    # reading back gives what was written
    assert space.current_values(new) == pytest.approx(values)
    assert space.current_values(base_net)["evprox2.mu"] == 137.1
    # the scaled synaptic weights the simulator uses follow the change
    idx = new.connectivity.index(_conn(new, "evprox2", "L5_pyramidal", "ampa"))
    old_idx = base_net.connectivity.index(_conn(base_net, "evprox2", "L5_pyramidal", "ampa"))
    new_w = np.array([w for _, _, w, _ in new.synaptic_netcons(idx)])
    old_w = np.array([w for _, _, w, _ in base_net.synaptic_netcons(old_idx)])
    np.testing.assert_allclose(new_w, old_w * 0.3 / 0.01)


@pytest.mark.parametrize("name, match", [
    ("evprox9.mu", "must start with the name of a drive"),
    ("evprox2.tau", "must name a dynamics entry of drive 'evprox2'"),
    ("evprox2.ampa.L6_pyramidal", "cell type of parameter"),
    ("evdist1.ampa.L5_basket", "has no ampa synapses onto 'L5_basket'"),
    ("evprox2.nmda.L5_basket", "has no nmda synapses onto 'L5_basket'"),
    ("evprox2.delay", "must have the form 'evprox2.delay.<cell_type>'"),
    ("poisson1.rate_constant", "must have the form 'poisson1.rate_constant.<cell_type>'"),
    ("evprox2.numspikes", "must be declared integer=True"),
])
def test_validate_names_unknown_things(base_net, name, match):
    with pytest.raises(ValueError, match=match):
        ParameterSpace([Parameter(name, 1.0, 2.0)]).validate(base_net)


def test_negative_weight_bound_refused(base_net):
    with pytest.raises(ValueError, match="must be >= 0 for a synaptic weight"):
        ParameterSpace([("evprox2.ampa.L2_basket", -1.0, 1.0)]).validate(base_net)


@pytest.mark.parametrize("name", ["evprox2.mu", "evprox2.sigma"])
def test_negative_drive_timing_bound_refused(base_net, name):
    with pytest.raises(ValueError, match=rf"{name}' must be >= 0 for a drive's .*got -5.0"):
        ParameterSpace([(name, -5.0, 10.0)]).validate(base_net)
    ParameterSpace([(name, 0.0, 10.0)]).validate(base_net)


def test_parameter_bounds_checks():
    with pytest.raises(ValueError, match="'evprox2.mu' must satisfy low < high"):
        Parameter("evprox2.mu", 150.0, 100.0)
    with pytest.raises(ValueError, match="'evprox2.mu' must satisfy low < high"):
        Parameter("evprox2.mu", 100.0, 100.0)
    with pytest.raises(ValueError, match="log-scaled parameter 'w' must be > 0"):
        Parameter("w", 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="must contain an integer"):
        Parameter("n", 1.2, 1.8, integer=True)
    with pytest.raises(ValueError, match="names must be unique"):
        ParameterSpace([("a.b", 0, 1), ("a.b", 0, 2)])
    sp = ParameterSpace([("a.mu", 100, 150)])
    with pytest.raises(ValueError, match=r"'a.mu' must be within \[100.0, 150.0\]"):
        sp.check_values({"a.mu": 151})
    with pytest.raises(ValueError, match="missing 'a.mu'"):
        sp.check_values({"a.sigma": 1})


def test_unit_transforms_linear_log_integer():
    sp = ParameterSpace([("d.mu", 100, 150), ("d.w", 1e-4, 1.0, True),
                         ("d.n", 1, 4, False, True)])
    u = sp.to_unit({"d.mu": 125.0, "d.w": 1e-2, "d.n": 4})
    np.testing.assert_allclose(u, [0.5, 0.5, 1.0])
    back = sp.from_unit([0.5, 0.5, 0.5])
    assert back["d.mu"] == pytest.approx(125.0)
    assert back["d.w"] == pytest.approx(1e-2)
    assert back["d.n"] in (2, 3) and isinstance(back["d.n"], int)
    # clipping outside the cube, and every unit point maps inside the bounds
    edge = sp.from_unit([-0.3, 1.7, 2.0])
    assert edge == {"d.mu": 100.0, "d.w": 1.0, "d.n": 4}
    rng = np.random.default_rng(0)
    for uu in rng.uniform(0, 1, size=(200, 3)):
        vals = sp.from_unit(uu)
        for p in sp:
            assert p.low <= vals[p.name] <= p.high
        np.testing.assert_allclose(sp.to_unit(vals)[:2], uu[:2], atol=1e-12)
    # log spacing: equal unit steps are equal ratios
    a, b, c = (sp.from_unit([0, x, 0])["d.w"] for x in (0.25, 0.5, 0.75))
    assert b / a == pytest.approx(c / b)
    assert math.isclose(sp.midpoint()["d.mu"], 125.0)


def _hook(net, params):
    net.external_drives["evprox2"]["dynamics"]["mu"] = params["prox_time"]
    net.external_drives["evprox2"]["dynamics"]["sigma"] = params["prox_time"] / 10


def _broken_hook(net, params):
    net.external_drives["nope"]["dynamics"]["mu"] = params["x"]


def test_set_params_hook(base_net):
    sp = ParameterSpace([("prox_time", 50.0, 150.0)], set_params=_hook)
    sp.validate(base_net)
    new = sp.apply(base_net, {"prox_time": 80.0})
    assert new.external_drives["evprox2"]["dynamics"]["sigma"] == 8.0
    assert base_net.external_drives["evprox2"]["dynamics"]["mu"] == 137.1
    assert sp.to_dict()["set_params"].endswith("_hook")
    pickle.loads(pickle.dumps(sp))  # module-level hooks go to workers
    with pytest.raises(ValueError, match="set_params must accept the space's parameters"):
        ParameterSpace([("x", 0.0, 1.0)], set_params=_broken_hook).validate(base_net)
    with pytest.raises(ValueError, match="current_values needs the built-in"):
        sp.current_values(base_net)


def test_serialisation_round_trip(space):
    again = ParameterSpace.from_dict(space.to_dict())
    assert again == space
    assert again.names == space.names
    assert again["evprox2.numspikes"].integer
    with pytest.raises(KeyError, match="parameter name must be one of"):
        space["evprox2.tau"]
