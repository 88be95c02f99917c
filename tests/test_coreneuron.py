"""The CoreNEURON engine against plain NEURON (3x3 grid, short runs).

Measured here (CoreNEURON build at -O3 -march=native -ffast-math): dipoles
agree to about 2e-13 of their peak, spikes (times
and gids) are identical; the test allows 1e-10 of the peak.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from hnnfit import simulate_dipole
from hnnfit.exceptions import CompilationError, SimulationError
from hnnfit.simulation import _simulate
from hnnfit.simulator import _compile

sys.path.insert(0, str(Path(__file__).parent))
from test_warm import _nets  # noqa: E402  (the same small networks)

TSTOP = 40.0
RTOL_PEAK = 1e-10


@pytest.fixture(scope="module")
def coreneuron_build():
    # detect by trying: the wheel's nrnivmodl -coreneuron needs a C++ compiler
    try:
        return _compile.ensure_mechanisms(coreneuron=True)
    except CompilationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        pytest.skip(f"CoreNEURON mechanisms cannot be compiled on this machine: {first}")


def _run(net, engine, seeds=(0, 3), warm=False):
    dpls = _simulate(net, TSTOP, 0.025, list(seeds), engine=engine, warm=warm)
    cr = net.cell_response
    return dpls, cr.spike_times, cr.spike_gids, net._sim_timing


def _assert_agree(core, plain):
    for dc, dp in zip(core[0], plain[0]):
        assert np.array_equal(dc.times, dp.times)
        for layer in ("agg", "L2", "L5"):
            peak = np.abs(dp.data[layer]).max()
            assert peak > 1e-4       # a real dipole, not a flat line
            np.testing.assert_allclose(dc.data[layer], dp.data[layer], rtol=0,
                                       atol=RTOL_PEAK * peak)
    for tc, tp in zip(core[1], plain[1]):
        assert np.array_equal(tc, tp)
    for gc, gp in zip(core[2], plain[2]):
        assert np.array_equal(gc, gp)


def test_coreneuron_agrees_with_neuron(coreneuron_build):
    net_core, net_plain = _nets()[1], _nets()[1]
    core = _run(net_core, "coreneuron")
    plain = _run(net_plain, "neuron")
    assert [t["engine"] for t in core[3]] == ["coreneuron", "coreneuron"]
    assert sum(len(g) for g in core[2]) > 50     # cells and drives fired
    _assert_agree(core, plain)


def test_coreneuron_warm_equals_cold(coreneuron_build):
    nets = _nets()
    cold = [_run(net, "coreneuron") for net in (nets[0], nets[2])]
    warm = [_run(net, "coreneuron", warm=True) for net in _nets()]
    assert [t["reused"] for t in warm[2][3]] == [True, True]
    for w, c in zip((warm[0], warm[2]), cold):
        for dw, dc in zip(w[0], c[0]):
            assert np.array_equal(dw.data["agg"], dc.data["agg"])
        for tw, tc in zip(w[1], c[1]):
            assert np.array_equal(tw, tc)


def test_auto_uses_coreneuron_where_available(coreneuron_build):
    net = _nets()[0]
    dpls = simulate_dipole(net, tstop=TSTOP, n_trials=1, verbose=False, engine="auto")
    assert net._sim_timing[0]["engine"] == "coreneuron"
    plain = simulate_dipole(_nets()[0], tstop=TSTOP, n_trials=1, verbose=False)
    peak = np.abs(plain[0].data["agg"]).max()
    np.testing.assert_allclose(dpls[0].data["agg"], plain[0].data["agg"], rtol=0,
                               atol=RTOL_PEAK * peak)


def test_unavailable_coreneuron_is_reported(monkeypatch):
    # what a machine without a C++ compiler sees at the compile step
    def fail(coreneuron=False):
        if coreneuron:
            raise CompilationError("nrnivmodl -coreneuron failed: c++: not found")
        return _compile.ensure_mechanisms.__wrapped__(coreneuron)

    real = _compile.ensure_mechanisms
    fail.__wrapped__ = real
    monkeypatch.setattr(_compile, "ensure_mechanisms", fail)
    with pytest.raises(SimulationError, match=r"engine 'coreneuron' is not available.*c\+\+: not found"):
        simulate_dipole(_nets()[0], tstop=10.0, n_trials=1, verbose=False,
                        engine="coreneuron")
    net = _nets()[0]
    with pytest.warns(UserWarning, match="CoreNEURON is not available.*simulating with NEURON"):
        dpls = simulate_dipole(net, tstop=10.0, n_trials=1, verbose=False, engine="auto")
    assert net._sim_timing[0]["engine"] == "neuron"
    plain = simulate_dipole(_nets()[0], tstop=10.0, n_trials=1, verbose=False)
    assert np.array_equal(dpls[0].data["agg"], plain[0].data["agg"])


def test_objective_on_coreneuron_matches_neuron(coreneuron_build):
    # a fit's objective can integrate in CoreNEURON; its values agree with
    # the plain engine's to the dipole agreement above
    from hnnfit.fit import DipoleObjective, ParameterSpace, read_target

    net = _nets()[1]
    times = np.arange(0.0, TSTOP + 1e-9, 1.0)
    target = read_target(np.c_[times, np.sin(times / 7.0)])
    space = ParameterSpace([("evprox1.mu", 5.0, 30.0)])
    kwargs = dict(smooth_window=5.0, scale=100.0, n_trials=2, seeds=[0, 3])
    plain = DipoleObjective(net, target, space, **kwargs)
    core = DipoleObjective(net, target, space, engine="coreneuron", **kwargs)
    assert core.settings()["engine"] == "coreneuron"
    point = {"evprox1.mu": 12.0}
    a, b = plain(point), core(point)
    assert b["value"] == pytest.approx(a["value"], rel=1e-9)
    np.testing.assert_allclose(b["dipole"], a["dipole"], rtol=0,
                               atol=1e-9 * np.abs(a["dipole"]).max())
    with pytest.raises(ValueError, match="engine"):
        DipoleObjective(net, target, space, engine="gpu")


def test_coreneuron_flags_select_their_own_build(monkeypatch):
    # the CoreNEURON build's compiler flags are part of its cache key; the
    # plain build (the bit-exact path) never sees them
    monkeypatch.delenv("HNNFIT_CORENEURON_FLAGS", raising=False)
    default_core = _compile.build_key(coreneuron=True)
    plain = _compile.build_key(coreneuron=False)
    assert _compile.coreneuron_flags() == _compile.DEFAULT_CORENEURON_FLAGS
    monkeypatch.setenv("HNNFIT_CORENEURON_FLAGS", "")
    assert _compile.coreneuron_flags() == ""
    assert _compile.build_key(coreneuron=True) != default_core
    assert _compile.build_key(coreneuron=False) == plain
    monkeypatch.setenv("HNNFIT_CORENEURON_FLAGS", "-O2")
    assert _compile.build_key(coreneuron=True) not in (default_core, plain)
