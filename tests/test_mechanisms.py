"""Compilation, caching and behaviour of hnnfit's NMODL mechanisms.

Compilation tests run ``ensure_mechanisms`` in this process against a
temporary cache (it never imports NEURON); anything that loads a freshly
built library runs in a subprocess, because a NEURON process can hold only
one build of a mechanism. Behaviour tests load the regular cached build
into this process and check single-compartment dynamics against closed-form
expressions written here from the published rate equations.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hnnfit import _resources
from hnnfit.exceptions import CompilationError
from hnnfit.simulator import _compile

FARADAY = 96485.33212331001   # C/mol, SI 2019 value used by NEURON 9's modern units


def _run_python(code, env_updates, timeout=600):
    env = dict(os.environ)
    env.update(env_updates)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def small_mod_dir(tmp_path, monkeypatch):
    """Two of hnnfit's .mod files in a private folder that mod_dir() returns."""
    src = tmp_path / "mod"
    src.mkdir()
    for name in ("cad.mod", "DipoleSum.mod"):
        shutil.copy(_resources.mod_dir() / name, src / name)
    monkeypatch.setattr(_compile, "mod_dir", lambda: src)
    monkeypatch.setenv("HNNFIT_CACHE", str(tmp_path / "cache"))
    return src


# --------------------------------------------------------------- compilation

def test_nothing_compiled_or_loaded_at_import():
    out = _run_python(
        """
        import sys, json
        import hnnfit, hnnfit.simulator
        print(json.dumps("neuron" in sys.modules))
        """, {})
    assert _last_json(out) is False


def test_compile_from_scratch_then_cache_hit(small_mod_dir, tmp_path, monkeypatch):
    # debris of an interrupted earlier build: a half-written temporary folder
    # and a final folder without its completion marker
    key = _compile.build_key(False, small_mod_dir)
    root = tmp_path / "cache" / "mechanisms"
    (root / f".{key}-killed").mkdir(parents=True)
    (root / key / "x86_64").mkdir(parents=True)
    build = _compile.ensure_mechanisms()
    assert build.parent == tmp_path / "cache" / "mechanisms"
    assert build.name == _compile.build_key(False, small_mod_dir)
    lib = _compile.mechanism_library(build)
    assert lib is not None and lib.is_file()
    assert "cad.mod" in (build / "nrnivmodl.log").read_text()
    # no temporary build folders are left behind
    assert [p.name for p in build.parent.iterdir() if p.is_dir()] == [build.name]

    def must_not_compile(*args, **kwargs):
        raise AssertionError("recompiled although a build was cached")

    monkeypatch.setattr(_compile, "_run_nrnivmodl", must_not_compile)
    mtime = lib.stat().st_mtime_ns
    assert _compile.ensure_mechanisms() == build
    assert lib.stat().st_mtime_ns == mtime


def test_changed_mod_file_recompiles(small_mod_dir):
    first = _compile.ensure_mechanisms()
    with open(small_mod_dir / "cad.mod", "a") as f:
        f.write("\n: edited\n")
    second = _compile.ensure_mechanisms()
    assert second != first
    assert _compile.mechanism_library(first).is_file()
    assert _compile.mechanism_library(second).is_file()
    assert "edited" in (second / "mod" / "cad.mod").read_text()


def test_coreneuron_flag_gives_its_own_cache_key(small_mod_dir):
    assert _compile.build_key(True, small_mod_dir) != _compile.build_key(False, small_mod_dir)


def test_broken_mod_raises_compilation_error_with_compiler_output(small_mod_dir):
    (small_mod_dir / "broken.mod").write_text(
        "NEURON { SUFFIX broken RANGE g }\n"
        "PARAMETER { g = 1 }\n"
        "BREAKPOINT { g = g +* 2 }\n"
    )
    with pytest.raises(CompilationError) as info:
        _compile.ensure_mechanisms()
    message = str(info.value)
    assert "broken.mod" in message
    assert "Illegal block" in message      # nocmodl's own diagnosis
    # the failed attempt leaves nothing that a later call could mistake for a build
    root = _compile.cache_root()
    assert [p for p in root.iterdir() if p.is_dir()] == []


def test_missing_mod_folder_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(_compile, "mod_dir", lambda: tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("HNNFIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CompilationError, match="no .mod files"):
        _compile.ensure_mechanisms()


def test_coreneuron_argument_is_checked():
    with pytest.raises(TypeError, match="coreneuron must be a bool"):
        _compile.ensure_mechanisms("yes")


def test_concurrent_compilation_builds_once(small_mod_dir, tmp_path):
    calls = tmp_path / "calls.txt"
    code = f"""
        import json
        from pathlib import Path
        from hnnfit.simulator import _compile
        _compile.mod_dir = lambda: Path({str(small_mod_dir)!r})
        real = _compile._run_nrnivmodl
        def counted(*args, **kwargs):
            with open({str(calls)!r}, "a") as f:
                f.write("build\\n")
            return real(*args, **kwargs)
        _compile._run_nrnivmodl = counted
        print(json.dumps(str(_compile.ensure_mechanisms())))
    """
    env = dict(os.environ, HNNFIT_CACHE=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    paths = {_last_json(out) for out, _ in outs}
    assert len(paths) == 1
    assert calls.read_text().count("build") == 1
    build = _compile.ensure_mechanisms()   # this process sees the same build
    assert {str(build)} == paths
    assert _compile.mechanism_library(build).is_file()
    assert [p.name for p in build.parent.iterdir() if p.is_dir()] == [build.name]


def test_load_mechanisms_from_clean_cache_is_idempotent(tmp_path):
    out = _run_python(
        """
        import json
        from hnnfit.simulator import load_mechanisms
        from hnnfit.exceptions import SimulationError
        first = load_mechanisms()
        second = load_mechanisms()
        from neuron import h
        s = h.Section(name="s")
        for n in ("hh2", "km", "ca", "cad", "kca", "cat", "ar", "dipole"):
            s.insert(n)
        objs = [h.DipoleSum(s(0.5)), h.DipoleTip(s(1)), h.EventReplay()]
        try:
            load_mechanisms(coreneuron=True)
            refused = False
        except SimulationError:
            refused = True
        print(json.dumps([str(first), str(second), refused]))
        """, {"HNNFIT_CACHE": str(tmp_path / "cache")})
    first, second, refused = _last_json(out)
    assert first == second
    assert first.startswith(str(tmp_path / "cache" / "mechanisms"))
    assert refused


# ------------------------------------------------------- rate functions (numpy)

def _efun(x, s):
    x = np.asarray(x, float)
    small = np.abs(x / s) < 1e-6
    with np.errstate(invalid="ignore", divide="ignore"):
        full = x / (np.exp(x / s) - 1)
    return np.where(small, s * (1 - x / s / 2), full)


def hh2_rates(v, celsius):
    """(minf, hinf, ninf, mtau, htau, ntau) of hh2; taus in ms."""
    phi = 3.0 ** ((celsius - 6.3 - 30.7) / 10)
    am = 0.1 * _efun(-(v + 40), 10)
    bm = 4 * np.exp(-(v + 65) / 18)
    ah = 0.07 * np.exp(-(v + 65) / 20)
    bh = 1 / (1 + np.exp(-(v + 35) / 10))
    an = 0.01 * _efun(-(v + 55), 10)
    bn = 0.125 * np.exp(-(v + 65) / 80)
    return (am / (am + bm), ah / (ah + bh), an / (an + bn),
            1 / (phi * (am + bm)), 1 / (phi * (ah + bh)), 1 / (phi * (an + bn)))


def _tadj(celsius):
    return 2.3 ** ((celsius - 23 - 30.7) / 10)


def km_rates(v, celsius):
    x = v - (-30.0)
    a = 0.001 * x / (1 - np.exp(-x / 9))
    b = -0.001 * x / (1 - np.exp(x / 9))
    return a / (a + b), 1 / _tadj(celsius) / (a + b)


def ca_rates(v, celsius):
    x = -27 - v
    am = 0.055 * x / (np.exp(x / 3.8) - 1)
    bm = 0.94 * np.exp((-75 - v) / 17)
    ah = 0.000457 * np.exp((-13 - v) / 50)
    bh = 0.0065 / (np.exp((-v - 15) / 28) + 1)
    t = _tadj(celsius)
    return am / (am + bm), ah / (ah + bh), 1 / t / (am + bm), 1 / t / (ah + bh)


def cat_rates(v):
    minf = 1 / (1 + np.exp((-v - 56) / 6.2))
    mtau = 0.204 + 0.333 / (np.exp((v + 15.8) / 18.2) + np.exp((-v - 131) / 16.7))
    hinf = 1 / (1 + np.exp((v + 80) / 4))
    htau = np.where(v < -81, 0.333 * np.exp((v + 466) / 66.6),
                    9.32 + 0.333 * np.exp((-v - 21) / 10.5))
    return minf, hinf, mtau, htau


def ar_rates(v):
    return (1 / (1 + np.exp((v + 75) / 5.5)),
            1 / (np.exp(-14.6 - 0.086 * v) + np.exp(-1.87 + 0.07 * v)))


# ---------------------------------------------------------- behaviour (NEURON)

@pytest.fixture(scope="module")
def h():
    _compile.load_mechanisms()
    from neuron import h
    h.load_file("stdrun.hoc")
    return h


@pytest.fixture
def neuron_globals(h):
    saved = (h.celsius, h.dt, h.usetable_hh2, h.usetable_km, h.usetable_ca,
             h.usetable_cat, h.usetable_ar)
    yield h
    (h.celsius, h.dt, h.usetable_hh2, h.usetable_km, h.usetable_ca,
     h.usetable_cat, h.usetable_ar) = saved


def _compartment(h, mechs):
    sec = h.Section(name="cmp")
    sec.L = sec.diam = 10
    sec.nseg = 1
    for m in mechs:
        sec.insert(m)
    return sec


VOLTS = [-97.3, -80.0, -71.25, -65.0, -55.0, -40.0, -30.0, -27.0, -12.6, 0.0, 21.7, 38.0]


@pytest.mark.parametrize("celsius", [37.0, 23.0])
def test_channel_rates_match_published_equations(neuron_globals, celsius):
    h = neuron_globals
    h.celsius = celsius
    for name in ("hh2", "km", "ca", "cat", "ar"):
        setattr(h, f"usetable_{name}", 0)
    sec = _compartment(h, ["hh2", "km", "ca", "cat", "ar"])
    seg = sec(0.5)
    for v in VOLTS:
        if v in (-30.0, -27.0):
            continue  # removable singularities, checked separately
        h.finitialize(v)
        got = [seg.hh2.minf, seg.hh2.hinf, seg.hh2.ninf,
               seg.hh2.mtau, seg.hh2.htau, seg.hh2.ntau]
        np.testing.assert_allclose(got, hh2_rates(v, celsius), rtol=1e-12)
        np.testing.assert_allclose([seg.km.ninf, seg.km.ntau], km_rates(v, celsius), rtol=1e-12)
        np.testing.assert_allclose([seg.ca.minf, seg.ca.hinf, seg.ca.mtau, seg.ca.htau],
                                   ca_rates(v, celsius), rtol=1e-12)
        np.testing.assert_allclose([seg.cat.minf, seg.cat.hinf, seg.cat.mtau, seg.cat.htau],
                                   cat_rates(v), rtol=1e-12)
        np.testing.assert_allclose([seg.ar.minf, seg.ar.mtau], ar_rates(v), rtol=1e-12)
        # initial states: at steady state, except the published cat m = 0, ar m = 0.25
        assert seg.hh2.m == pytest.approx(seg.hh2.minf, rel=1e-14)
        assert seg.km.n == pytest.approx(seg.km.ninf, rel=1e-14)
        assert seg.ca.h == pytest.approx(seg.ca.hinf, rel=1e-14)
        assert seg.cat.m == 0 and seg.cat.h == pytest.approx(seg.cat.hinf, rel=1e-14)
        assert seg.ar.m == 0.25
        assert seg.km.tadj == pytest.approx(_tadj(celsius), rel=1e-14)
        assert seg.ca.tadj == pytest.approx(_tadj(celsius), rel=1e-14)


def test_removable_singularities_are_finite(neuron_globals):
    h = neuron_globals
    h.usetable_km = 0
    h.usetable_ca = 0
    h.celsius = 37.0
    sec = _compartment(h, ["km", "ca"])
    seg = sec(0.5)
    h.finitialize(-30.0)
    near = km_rates(-30.0 + 1e-4, 37.0)
    np.testing.assert_allclose([seg.km.ninf, seg.km.ntau], near, rtol=1e-4)
    h.finitialize(-27.0)
    near = ca_rates(-27.0 + 1e-4, 37.0)
    np.testing.assert_allclose([seg.ca.minf, seg.ca.mtau], [near[0], near[2]], rtol=1e-4)


def test_rate_tables_interpolate_closely(neuron_globals):
    h = neuron_globals
    h.celsius = 37.0
    sec = _compartment(h, ["hh2", "km", "ca", "cat", "ar"])
    seg = sec(0.5)
    for v in np.arange(-99.5, 39.0, 3.7):
        h.finitialize(v)
        np.testing.assert_allclose(seg.hh2.minf, hh2_rates(v, 37.0)[0], atol=5e-3)
        np.testing.assert_allclose(seg.km.ninf, km_rates(v, 37.0)[0], atol=5e-3)
        np.testing.assert_allclose(seg.ca.minf, ca_rates(v, 37.0)[0], atol=5e-3)
        np.testing.assert_allclose(seg.cat.hinf, cat_rates(v)[1], atol=5e-3)
        np.testing.assert_allclose(seg.ar.minf, ar_rates(v)[0], atol=5e-3)
    # on the hh2 table's 1 mV grid the lookup is exact
    for v in (-100.0, -65.0, -40.0, 0.0, 37.0, 100.0):
        h.finitialize(v)
        np.testing.assert_allclose(
            [seg.hh2.minf, seg.hh2.hinf, seg.hh2.ninf, seg.hh2.mtau, seg.hh2.htau,
             seg.hh2.ntau], hh2_rates(v, 37.0), rtol=1e-12)


def test_hh2_gating_relaxes_exponentially_at_fixed_voltage(neuron_globals):
    """With zero conductances v stays where it is put, and cnexp integrates
    each gate exactly: x(k dt) = xinf + (x0 - xinf) exp(-k dt / xtau)."""
    h = neuron_globals
    h.celsius = 30.0   # phi != 1, so the q10 scaling is exercised
    h.dt = 0.025
    sec = _compartment(h, ["hh2"])
    seg = sec(0.5)
    seg.hh2.gnabar = seg.hh2.gkbar = seg.hh2.gl = 0
    v0, v1 = -70.0, -20.0   # both on the table grid, where lookups are exact
    recs = [h.Vector().record(getattr(seg.hh2, f"_ref_{g}")) for g in "mhn"]
    vrec = h.Vector().record(seg._ref_v)
    h.finitialize(v0)
    seg.v = v1
    nsteps = 400
    for _ in range(nsteps):
        h.fadvance()
    # (v moves by ~1e-12 mV in the first step: NEURON's numerical di/dv)
    np.testing.assert_allclose(np.array(vrec)[1:], v1, rtol=0, atol=1e-9)
    inf0 = hh2_rates(v0, 30.0)
    inf1 = hh2_rates(v1, 30.0)
    k = np.arange(nsteps + 1)
    for i, rec in enumerate(recs):
        x0, xinf, tau = inf0[i], inf1[i], inf1[i + 3]
        expected = xinf + (x0 - xinf) * np.exp(-h.dt / tau) ** k
        np.testing.assert_allclose(np.array(rec), expected, rtol=1e-10, atol=1e-13)


def test_hh2_currents(neuron_globals):
    h = neuron_globals
    h.celsius = 37.0
    sec = _compartment(h, ["hh2"])
    seg = sec(0.5)
    seg.hh2.gnabar, seg.hh2.gkbar, seg.hh2.gl, seg.hh2.el = 0.18, 0.02, 3e-4, -65
    sec.ena, sec.ek = 50.0, -72.0
    h.finitialize(-60.0)
    h.fcurrent()
    m, hh, n = seg.hh2.m, seg.hh2.h, seg.hh2.n
    assert seg.ina == pytest.approx(0.18 * m ** 3 * hh * (-60 - 50.0), rel=1e-12)
    assert seg.ik == pytest.approx(0.02 * n ** 4 * (-60 + 72.0), rel=1e-12)
    assert seg.hh2.il == pytest.approx(3e-4 * (-60 + 65.0), rel=1e-12)


def test_kca_steady_state_follows_calcium(neuron_globals):
    h = neuron_globals
    h.celsius = 37.0
    sec = _compartment(h, ["kca"])
    seg = sec(0.5)
    for cai in (5e-5, 1e-3, 0.02):
        # nothing writes cai here, so it is a parameter of the segment
        seg.cai = cai
        h.finitialize(-65.0)
        a, b = 0.01 * cai, 0.02
        assert seg.kca.ninf == pytest.approx(a / (a + b), rel=1e-12)
        assert seg.kca.ntau == pytest.approx(1 / _tadj(37.0) / (a + b), rel=1e-12)
        assert seg.kca.n == pytest.approx(a / (a + b), rel=1e-12)


def test_cad_decays_to_rest_with_its_time_constant(neuron_globals):
    h = neuron_globals
    h.dt = 0.025
    sec = _compartment(h, ["cad"])
    seg = sec(0.5)
    seg.cad.taur = 20.0
    seg.cai = 0.3   # overwritten: cad initialises cai to cainf
    rec = h.Vector().record(seg._ref_cai)
    h.finitialize(-65.0)
    assert seg.cai == pytest.approx(100e-6, rel=1e-12)
    c0 = 0.05
    seg.cad.ca = c0
    nsteps = 4000   # 100 ms, five time constants
    for _ in range(nsteps):
        h.fadvance()
    t = np.arange(1, nsteps + 1) * h.dt
    expected = 100e-6 + (c0 - 100e-6) * np.exp(-t / 20.0)
    np.testing.assert_allclose(np.array(rec)[1:], expected, rtol=1e-9)


def test_cad_integrates_calcium_influx(neuron_globals):
    """Inward ica raises ca by -1e4 ica / (2 F depth) per ms (cnexp exact
    step with the current of the same step); outward ica is ignored."""
    h = neuron_globals
    h.celsius = 37.0
    h.dt = 0.025
    sec = _compartment(h, ["ca", "cad"])
    seg = sec(0.5)
    seg.ca.gbar = 80.0
    seg.cad.taur = 20.0
    seg.cad.depth = 0.1
    ic = h.IClamp(seg)
    ic.delay, ic.dur, ic.amp = 1.0, 4.0, 0.3
    ica = h.Vector().record(seg._ref_ica)
    cai = h.Vector().record(seg._ref_cai)
    h.finitialize(-65.0)
    h.continuerun(15.0)
    ica, cai = np.array(ica), np.array(cai)
    assert cai.max() > 10 * 100e-6   # the channel did let calcium in
    influx = np.maximum(0.0, -1e4 * ica[1:] / (2 * FARADAY * 0.1))
    decay = np.exp(-h.dt / 20.0)
    expected = cai[:-1] + (1 - decay) * (influx * 20.0 + 100e-6 - cai[:-1])
    np.testing.assert_allclose(cai[1:], expected, rtol=1e-10, atol=1e-15)


def test_event_replay_emits_exactly_the_given_times(h):
    times = [0.0, 0.1, 0.1, 3.3333333333, 7.77, 7.770000000000001, 99.99, 140.0]
    cell = h.EventReplay()
    vec = h.Vector(times)
    cell.play(vec)
    vec.x[0] = 55.0   # play() copied the times; later edits do not matter
    del vec
    assert cell.n_events() == len(times)
    rec = h.Vector()
    nc = h.NetCon(cell, None)
    nc.record(rec)
    h.dt = 0.025
    h.finitialize(-65.0)
    h.continuerun(150.0)
    assert list(rec) == times
    # a second run replays them again
    h.finitialize(-65.0)
    h.continuerun(50.0)
    assert list(rec) == [t for t in times if t <= 50.0]
    # replacing the times; those before the start are dropped
    cell.play(h.Vector([-5.0, -0.1, 2.0, 2.5]))
    h.finitialize(-65.0)
    h.continuerun(10.0)
    assert list(rec) == [2.0, 2.5]
    # no times: silent
    cell.play()
    h.finitialize(-65.0)
    h.continuerun(10.0)
    assert list(rec) == []
    assert cell.n_events() == 0


def test_event_replay_drives_a_synapse_after_the_delay(h):
    sec = _compartment(h, [])
    syn = h.ExpSyn(sec(0.5))
    cell = h.EventReplay()
    cell.play(h.Vector([2.0]))
    nc = h.NetCon(cell, syn)
    nc.delay, nc.weight[0] = 1.5, 0.01
    g = h.Vector().record(syn._ref_g)
    tvec = h.Vector().record(h._ref_t)
    h.dt = 0.025
    h.finitialize(-65.0)
    h.continuerun(6.0)
    g, tvec = np.array(g), np.array(tvec)
    # delivered at 3.5 ms, the start of the step 3.500 -> 3.525, over which
    # the ExpSyn conductance then decays
    assert np.all(g[tvec < 3.5 + 1e-9] == 0)
    after = np.argmin(np.abs(tvec - 3.525))
    assert g[after] == pytest.approx(0.01 * np.exp(-h.dt / syn.tau), rel=1e-12)


def test_event_replay_times_are_bit_exact(h):
    # arbitrary doubles, where t + (t_next - t) often differs from t_next in
    # the last bit; the replayed events must still carry the given values
    rng = np.random.default_rng(7)
    times = np.sort(np.concatenate([rng.uniform(0, 170, 1500), [3.0, 3.0, 1e-9]]))
    cell = h.EventReplay()
    cell.play(h.Vector(times))
    rec = h.Vector()
    nc = h.NetCon(cell, None)
    nc.record(rec)
    h.dt = 0.025
    h.finitialize(-65.0)
    h.continuerun(171.0)
    assert np.array_equal(np.array(rec), times)


def test_event_replay_rejects_unsorted_times(h):
    cell = h.EventReplay()
    with pytest.raises(RuntimeError, match="sorted"):
        cell.play(h.Vector([1.0, 3.0, 2.0]))


def _build_dipole_toy(h, cos_dend=0.8):
    """Soma plus a 3-segment dendrite with dipole, DipoleTip and DipoleSum
    wired as the network builder does; returns the objects to keep alive."""
    soma = h.Section(name="dsoma")
    soma.L, soma.diam, soma.nseg = 20.0, 20.0, 1
    dend = h.Section(name="ddend")
    dend.L, dend.diam, dend.nseg = 200.0, 2.0, 3
    dend.connect(soma(1))
    for sec in (soma, dend):
        sec.insert("hh2")
        sec.Ra = 200.0
    dsum = h.DipoleSum(soma(0.5))
    keep = [soma, dend, dsum]
    for sec, cos in ((soma, 1.0), (dend, cos_dend)):
        sec.insert("dipole")
        xs = [seg.x for seg in sec.allseg()]
        for prev, x in zip(xs[:-2], xs[1:-1]):
            mech = sec(x).dipole
            mech.ri = h.ri(x, sec=sec)
            mech._ref_pv = sec(prev)._ref_v
            mech._ref_qsum = dsum._ref_q
            mech.ztan = (x - prev) * sec.L * cos
        tip = h.DipoleTip(sec(1))
        tip.ri = h.ri(1, sec=sec)
        tip._ref_pv = sec(xs[-2])._ref_v
        tip._ref_qsum = dsum._ref_q
        tip.ztan = (1 - xs[-2]) * sec.L * cos
        keep.append(tip)
    return soma, dend, dsum, keep


def test_dipole_sum_equals_axial_currents_times_ztan(h):
    h.dt = 0.025
    soma, dend, dsum, keep = _build_dipole_toy(h)
    ic = h.IClamp(dend(0.9))
    ic.delay, ic.dur, ic.amp = 1.0, 2.0, 1.0
    qvec = h.Vector().record(dsum._ref_q)
    nodes = {}
    for sec in (soma, dend):
        for seg in sec.allseg():
            nodes[(sec.name(), seg.x)] = h.Vector().record(sec(seg.x)._ref_v)
    h.finitialize(-65.0)
    h.continuerun(10.0)
    q = np.array(qvec)

    expected = np.zeros_like(q)
    for sec, cos in ((soma, 1.0), (dend, 0.8)):
        xs = [seg.x for seg in sec.allseg()]
        for prev, x in zip(xs[:-1], xs[1:]):
            # a child's 0-end is its parent's connection node
            key = ("dsoma", 1.0) if (sec is dend and prev == 0) else (sec.name(), prev)
            v_prev = np.array(nodes[key])
            v_here = np.array(nodes[(sec.name(), x)])
            expected += (v_prev - v_here) / h.ri(x, sec=sec) * (x - prev) * sec.L * cos
    assert np.abs(q).max() > 10.0      # the stimulus produced a real dipole
    np.testing.assert_allclose(q, expected, rtol=1e-9, atol=1e-9 * np.abs(q).max())
    # re-initialising starts the sum afresh rather than adding to the old one
    h.finitialize(-65.0)
    h.continuerun(10.0)
    np.testing.assert_allclose(np.array(qvec), q, rtol=1e-12, atol=1e-12)


def test_coreneuron_build_runs_and_matches_neuron(tmp_path):
    """Compile with -coreneuron and run the dipole toy cell with an
    EventReplay drive under NEURON and under CoreNEURON."""
    code = f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from hnnfit.simulator import load_mechanisms, mechanism_library
        build = load_mechanisms(coreneuron=True)
        from neuron import h, coreneuron
        from test_mechanisms import _build_dipole_toy
        h.load_file("stdrun.hoc")
        pc = h.ParallelContext()
        soma, dend, dsum, keep = _build_dipole_toy(h)
        for sec in (soma, dend):
            sec.insert("cad"); sec.insert("ca"); sec.insert("kca"); sec.insert("km")
            for seg in sec:
                seg.ca.gbar = 60.0; seg.kca.gbar = 10.0; seg.km.gbar = 200.0
        syn = h.ExpSyn(dend(0.9)); syn.tau = 2.0
        drive = h.EventReplay()
        times = [1.0, 2.5, 2.5, 7.123456789, 12.0, 30.3]
        drive.play(h.Vector(times))
        # a second, silent-to-the-cell drive with awkward times
        import numpy as np
        rng = np.random.default_rng(3)
        awkward = np.sort(rng.uniform(0, 40, 300))
        drive2 = h.EventReplay()
        drive2.play(h.Vector(awkward))
        pc.set_gid2node(2, 0); pc.cell(2, h.NetCon(drive2, None))
        nc = h.NetCon(drive, syn); nc.delay = 0.5; nc.weight[0] = 0.05
        pc.set_gid2node(1, 0); pc.cell(1, h.NetCon(drive, None))
        pc.set_gid2node(0, 0)
        det = h.NetCon(soma(0.5)._ref_v, None, sec=soma); det.threshold = 0.0
        pc.cell(0, det)
        out = {{}}
        for core in (False, True):
            tv, idv = h.Vector(), h.Vector()
            pc.spike_record(-1, tv, idv)
            q = h.Vector().record(dsum._ref_q)
            h.cvode.cache_efficient(1)
            coreneuron.enable = core
            pc.set_maxstep(10)
            h.dt = 0.025
            h.finitialize(-65.0)
            pc.psolve(40.0)
            out[str(core)] = dict(q=list(q), t=list(tv), gid=list(idv))
        coreneuron.enable = False
        out["core_lib"] = [str(p) for p in build.glob("*/libcorenrnmech*")]
        out["awkward"] = [float(x).hex() for x in awkward]
        print(json.dumps(out))
    """
    out = _last_json(_run_python(code, {"HNNFIT_CACHE": str(tmp_path / "cache")}))
    assert out["core_lib"]
    plain, core = out["False"], out["True"]
    assert len(plain["q"]) == len(core["q"]) == 1601
    np.testing.assert_allclose(core["q"], plain["q"], rtol=0, atol=1e-6 * max(map(abs, plain["q"])))
    assert core["gid"] == plain["gid"]
    np.testing.assert_allclose(core["t"], plain["t"], atol=1e-9)
    drive_times = [t for t, g in zip(core["t"], core["gid"]) if g == 1]
    assert drive_times == [1.0, 2.5, 2.5, 7.123456789, 12.0, 30.3]
    awkward = [float.fromhex(x) for x in out["awkward"]]
    for run in (plain, core):
        replayed = sorted(t for t, g in zip(run["t"], run["gid"]) if g == 2)
        assert replayed == awkward      # bit-exact under both simulators
    assert 0.0 in core["gid"]   # the soma fired


def _replay_buffer_script(library, counter, body):
    """A script that runs EventReplay cells under CoreNEURON and can read the
    live replay-buffer count of one mechanism library (``live()``), then
    runs ``body``; ``add_cell(gid, times)`` makes a replay cell and
    ``solve(tv, idv, core)`` runs 20 ms, appending the count and the
    spikes to ``out``."""
    prelude = f"""
        import ctypes, json
        from hnnfit.simulator import load_mechanisms
        build = load_mechanisms(coreneuron=True)
        from neuron import h, coreneuron
        h.load_file("stdrun.hoc")
        pc = h.ParallelContext()
        lib = ctypes.CDLL(str(sorted(build.glob("*/{library}*"))[0]))
        live = lib.{counter}
        live.restype = ctypes.c_long
        out = dict(before=live(), counts=[], spikes=[])

        def add_cell(gid, times):
            cell = h.EventReplay()
            cell.play(h.Vector(times))
            pc.set_gid2node(gid, 0)
            nc = h.NetCon(cell, None)
            pc.cell(gid, nc)
            return cell, nc

        def solve(tv, idv, core=True):
            h.cvode.cache_efficient(1)
            coreneuron.enable = core
            pc.set_maxstep(10)
            h.finitialize(-65.0)
            pc.psolve(20.0)
            coreneuron.enable = False
            out["counts"].append(live())
            out["spikes"].append(sorted(zip(idv, tv)))
    """
    return textwrap.dedent(prelude) + textwrap.dedent(body)


def test_coreneuron_frees_the_replay_buffers_of_earlier_models():
    """CoreNEURON never runs EventReplay's DESTRUCTOR body, so the buffers its
    bbcore_read allocates are freed when the next model is read: after each
    run exactly the current model's buffers are alive, however many models
    the process ran before."""
    code = _replay_buffer_script("libcorenrnmech", "hnnfit_event_replay_live_buffers", """
        def run(n_cells):
            pc.gid_clear()
            keep = [add_cell(gid, [1.0 + gid, 5.0 + 0.5 * gid]) for gid in range(n_cells)]
            tv, idv = h.Vector(), h.Vector()
            pc.spike_record(-1, tv, idv)
            solve(tv, idv)

        for n in (6, 6, 6, 3, 8):
            run(n)
        print(json.dumps(out))
    """)
    out = _last_json(_run_python(code, {}))
    assert out["before"] == 0
    # without freeing, the count would grow to 6, 12, 18, 21, 29
    assert out["counts"] == [6, 6, 6, 3, 8]
    for n, spikes in zip((6, 6, 6, 3, 8), out["spikes"]):
        expected = sorted([(g, 1.0 + g) for g in range(n)] + [(g, 5.0 + 0.5 * g) for g in range(n)])
        assert [tuple(s) for s in spikes] == expected


def test_coreneuron_runs_replace_the_neuron_side_replay_buffers():
    """After a CoreNEURON run NEURON hands each EventReplay's data back
    through bbcore_read on its own side: the returned buffer must replace
    the instance's buffer, not leak it, and must replay the same times."""
    code = _replay_buffer_script("libnrnmech", "hnnfit_event_replay_neuron_buffers", """
        cells = [add_cell(gid, [2.0 + gid, 7.5 + 0.25 * gid]) for gid in range(5)]
        out["after_play"] = live()
        tv, idv = h.Vector(), h.Vector()
        pc.spike_record(-1, tv, idv)
        for core in (True, True, True, False):
            solve(tv, idv, core)
        cells[0][0].play(h.Vector([4.25]))
        solve(tv, idv)
        del cells[:]
        out["after_delete"] = live()
        print(json.dumps(out))
    """)
    out = _last_json(_run_python(code, {}))
    assert out["before"] == 0 and out["after_play"] == 5
    # a leaking hand-back would give 10, 15, 20, 20, 25
    assert out["counts"] == [5, 5, 5, 5, 5]
    expected = sorted([(g, 2.0 + g) for g in range(5)] + [(g, 7.5 + 0.25 * g) for g in range(5)])
    # the last NEURON run plays the buffers CoreNEURON handed back
    for spikes in out["spikes"][:4]:
        assert [tuple(s) for s in spikes] == expected
    replayed = sorted([(0, 4.25)] + [s for s in expected if s[0] != 0])
    assert [tuple(s) for s in out["spikes"][4]] == replayed
    assert out["after_delete"] == 0
