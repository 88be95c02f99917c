"""Tests of hnnfit.dipole: the Dipole container, its operations and I/O."""
import pickle

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from hnnfit.dipole import Dipole, average_dipoles, read_dipole


def _hamming(n):
    # textbook Hamming window, written out so the tests do not rely on numpy's
    k = np.arange(n)
    return 0.54 - 0.46 * np.cos(2 * np.pi * k / (n - 1))


def _dirichlet(omega, n):
    """sum_{k=0}^{n-1} cos(omega * (k - (n-1)/2)), in closed form."""
    omega = np.asarray(omega, dtype=float)
    small = np.abs(np.sin(omega / 2)) < 1e-12
    safe = np.where(small, 1.0, np.sin(omega / 2))
    return np.where(small, float(n), np.sin(n * omega / 2) / safe)


def _hamming_gain(freq, sfreq, n):
    """Gain of a unit-sum n-point Hamming smoother for a sinusoid.

    Writing w[k] = 0.54 + 0.46 cos(theta (k - c)), theta = 2 pi / (n - 1),
    c = (n - 1) / 2, the centred response is
    0.54 D(omega) + 0.23 (D(omega + theta) + D(omega - theta)), D being the
    Dirichlet sum above, and the window sums to 0.54 n - 0.46 (D(theta) = -1).
    """
    omega = 2 * np.pi * freq / sfreq
    theta = 2 * np.pi / (n - 1)
    num = 0.54 * _dirichlet(omega, n) + 0.23 * (
        _dirichlet(omega + theta, n) + _dirichlet(omega - theta, n))
    return float(num / (0.54 * n - 0.46))


@pytest.fixture(scope="module")
def ref_frames(reference_dir):
    folder = reference_dir / "erp_default"
    return [pd.read_csv(folder / f"dipole_trial{k}.csv") for k in (0, 1)]


@pytest.fixture
def ref_dpl(ref_frames):
    df = ref_frames[0]
    return Dipole(df["time_ms"].to_numpy(), df[["agg", "L2", "L5"]].to_numpy())


# ----------------------------------------------------------------------
# construction

def test_construct_from_array_and_dict(ref_frames):
    df = ref_frames[0]
    times = df["time_ms"].to_numpy()
    from_array = Dipole(times, df[["agg", "L2", "L5"]].to_numpy())
    from_dict = Dipole(times, {k: df[k].to_numpy() for k in ("agg", "L2", "L5")})
    assert from_array == from_dict
    assert list(from_array.data) == ["agg", "L2", "L5"]
    np.testing.assert_array_equal(from_array.data["L5"], df["L5"].to_numpy())
    assert from_array.sfreq == pytest.approx(40000.0)
    assert from_array.nave == 1 and from_array.scale_applied == 1
    one_col = Dipole(times, df[["agg"]].to_numpy())
    assert list(one_col.data) == ["agg"]
    flat = Dipole(times, df["agg"].to_numpy())
    np.testing.assert_array_equal(flat.data["agg"], df["agg"].to_numpy())


def test_data_is_copied_not_shared():
    times = np.arange(5.0)
    agg = np.ones(5)
    dpl = Dipole(times, {"agg": agg})
    dpl.scale(2)
    np.testing.assert_array_equal(agg, np.ones(5))


@pytest.mark.parametrize(
    "times, data, match",
    [
        (np.arange(5.0), np.zeros(4), "one value per time point"),
        (np.arange(5.0), np.zeros((5, 2)), "shape"),
        (np.arange(5.0), {"L2": np.zeros(5)}, "'agg'"),
        (np.array([0.0, 1.0, 1.0]), np.zeros(3), "strictly increasing"),
        (np.array([0.0]), np.zeros(1), "at least 2"),
        (np.arange(3.0), np.array([0.0, np.nan, 1.0]), "finite"),
    ],
)
def test_constructor_rejects_bad_input(times, data, match):
    with pytest.raises(ValueError, match=match):
        Dipole(times, data)


def test_nave_must_be_positive_int():
    with pytest.raises(ValueError, match="nave"):
        Dipole(np.arange(3.0), np.zeros(3), nave=0)
    with pytest.raises(TypeError, match="nave"):
        Dipole(np.arange(3.0), np.zeros(3), nave=1.5)


# ----------------------------------------------------------------------
# scale / copy / chaining

def test_scale_chains_and_accumulates(ref_dpl, ref_frames):
    out = ref_dpl.scale(3000).scale(0.5)
    assert out is ref_dpl
    assert ref_dpl.scale_applied == 1500
    np.testing.assert_allclose(ref_dpl.data["L2"], ref_frames[0]["L2"] * 1500,
                               rtol=1e-15)


def test_copy_is_independent(ref_dpl):
    dup = ref_dpl.copy()
    assert dup == ref_dpl
    dup.scale(2)
    assert dup != ref_dpl
    assert ref_dpl.scale_applied == 1


def test_pickle_roundtrip(ref_dpl):
    ref_dpl.smooth(10).scale(3)
    back = pickle.loads(pickle.dumps(ref_dpl))
    assert back == ref_dpl


# ----------------------------------------------------------------------
# smoothing

def test_smooth_preserves_constant_away_from_edges():
    sfreq = 1000.0
    times = np.arange(200) * 1000.0 / sfreq
    dpl = Dipole(times, np.full(200, 7.5)).smooth(21)   # 21 samples
    n, half = 21, 10
    np.testing.assert_allclose(dpl.data["agg"][half:-half], 7.5, rtol=1e-13)
    # the signal counts as zero outside the record: the first output sample
    # sees only the window's second half (sample 10 is its centre)
    w = _hamming(n)
    assert dpl.data["agg"][0] == pytest.approx(7.5 * w[half:].sum() / w.sum(), rel=1e-12)
    assert dpl.data["agg"][-1] == pytest.approx(7.5 * w[:half + 1].sum() / w.sum(),
                                                rel=1e-12)


@pytest.mark.parametrize("freq", [20.0, 60.0, 130.0])
def test_smooth_attenuates_sine_by_hamming_gain(freq):
    sfreq, n = 1000.0, 21
    times = np.arange(1000) * 1000.0 / sfreq
    signal = np.sin(2 * np.pi * freq * times / 1000.0)
    dpl = Dipole(times, signal).smooth(21.0)
    gain = _hamming_gain(freq, sfreq, n)
    interior = slice(n, -n)
    np.testing.assert_allclose(dpl.data["agg"][interior], gain * signal[interior],
                               atol=1e-12)
    assert abs(gain) < 1.0


def test_smooth_even_window_is_shifted_half_a_sample():
    sfreq, n, freq = 1000.0, 20, 40.0
    times = np.arange(600) * 1000.0 / sfreq
    dpl = Dipole(times, np.sin(2 * np.pi * freq * times / 1000.0)).smooth(20.0)
    gain = _hamming_gain(freq, sfreq, n)
    # an even window cannot be centred; its centre falls half a sample late
    expected = gain * np.sin(2 * np.pi * freq * (times - 0.5) / 1000.0)
    np.testing.assert_allclose(dpl.data["agg"][n:-n], expected[n:-n], atol=1e-12)


def test_smooth_window_length_from_sfreq(ref_dpl, ref_frames):
    # 30 ms at 40 kHz is 1200 samples; a 30 Hz sine is attenuated accordingly
    times = ref_dpl.times
    sine = np.sin(2 * np.pi * 30.0 * times / 1000.0)
    dpl = Dipole(times, {"agg": sine, "L2": sine, "L5": np.zeros_like(sine)})
    dpl.smooth(30)
    gain = _hamming_gain(30.0, 40000.0, 1200)
    expected = gain * np.sin(2 * np.pi * 30.0 * (times - 0.5 / 40.0) / 1000.0)
    np.testing.assert_allclose(dpl.data["L2"][1200:-1200], expected[1200:-1200],
                               atol=1e-9)
    np.testing.assert_array_equal(dpl.data["L5"], 0.0)


def test_smooth_is_linear_over_layers(ref_dpl):
    dpl = ref_dpl.copy().smooth(30)
    np.testing.assert_allclose(dpl.data["agg"], dpl.data["L2"] + dpl.data["L5"],
                               atol=1e-12)


@pytest.mark.parametrize(
    "window, exc, match",
    [
        (500.0, ValueError, "longer than the signal"),
        (0, ValueError, "window_len must be > 0"),
        (-5, ValueError, "window_len must be > 0"),
        (0.001, ValueError, "at least one sample"),
        (float("nan"), ValueError, "finite"),
        ("30", TypeError, "window_len"),
    ],
)
def test_smooth_rejects_bad_windows(window, exc, match):
    times = np.arange(200) * 1.0
    dpl = Dipole(times, np.zeros(200))
    with pytest.raises(exc, match=match):
        dpl.smooth(window)


def test_savgol_keeps_low_order_polynomials_and_damps_noise():
    times = np.arange(0, 200, 0.5)       # 2 kHz
    poly = 1e-6 * (times - 100) ** 5 - 3e-3 * times ** 2 + 2.0
    dpl = Dipole(times, poly).savgol_filter(100.0)
    np.testing.assert_allclose(dpl.data["agg"], poly, rtol=1e-9, atol=1e-8)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(times))
    filt = Dipole(times, noise).savgol_filter(50.0).data["agg"]
    assert filt.std() < 0.5 * noise.std()


@pytest.mark.parametrize("h_freq, match", [(-1.0, "h_freq must be > 0"),
                                           (1000.0, "half the sampling"),
                                           (600.0, "polynomial order"),
                                           (0.5, "longer than the signal")])
def test_savgol_rejects_bad_h_freq(h_freq, match):
    dpl = Dipole(np.arange(0, 200, 0.5), np.zeros(400))
    with pytest.raises(ValueError, match=match):
        dpl.savgol_filter(h_freq)


# ----------------------------------------------------------------------
# raw simulator output -> reference units

def test_baseline_renormalize_matches_reference_offsets(ref_dpl, ref_frames):
    # The simulated raw dipole is exactly zero at t = 0, so the reference's
    # first sample is the baseline correction alone.
    times = ref_dpl.times
    raw = Dipole(times, {"agg": np.full(len(times), 123.0),   # ignored: recomputed
                         "L2": np.zeros(len(times)), "L5": np.zeros(len(times))})
    raw._baseline_renormalize(10, 10)._convert_fAm_to_nAm()
    first = ref_frames[0].iloc[0]
    assert raw.data["L2"][0] == pytest.approx(first["L2"], rel=1e-12)
    assert raw.data["L5"][0] == pytest.approx(first["L5"], rel=1e-12)
    assert raw.data["agg"][0] == pytest.approx(first["agg"], rel=1e-9)
    np.testing.assert_allclose(raw.data["agg"], raw.data["L2"] + raw.data["L5"],
                               rtol=1e-15)
    # L2: constant 0.0443 fAm per cell; L5: piecewise linear drift
    np.testing.assert_allclose(raw.data["L2"], -100 * 0.0443 * 1e-6, rtol=1e-15)
    i = np.searchsorted(times, 100.0)
    assert raw.data["L5"][i] == pytest.approx(
        -100 * (3.4770508e-3 * 100.0 - 51.231085) * 1e-6, rel=1e-12)
    assert raw.data["L5"][np.searchsorted(times, 37.0)] == pytest.approx(
        100 * 49.0502 * 1e-6, rel=1e-12)


def test_baseline_renormalize_late_piece_and_grid_size():
    times = np.array([0.0, 500.0, 749.0, 750.0, 1000.0])
    raw = Dipole(times, {"agg": np.zeros(5), "L2": np.ones(5), "L5": np.zeros(5)})
    raw._baseline_renormalize(3, 3)
    n = 9
    np.testing.assert_allclose(raw.data["L2"], 1 - n * 0.0443)
    np.testing.assert_allclose(
        raw.data["L5"],
        [n * 49.0502,
         -n * (3.4770508e-3 * 500 - 51.231085),
         -n * (3.4770508e-3 * 749 - 51.231085),
         -n * (1.01e-4 * 750 - 48.412078),
         -n * (1.01e-4 * 1000 - 48.412078)], rtol=1e-13)


def test_baseline_renormalize_needs_layers():
    dpl = Dipole(np.arange(3.0), np.zeros(3))
    with pytest.raises(ValueError, match="'L2'"):
        dpl._baseline_renormalize(10, 10)


# ----------------------------------------------------------------------
# I/O

def test_write_read_roundtrip_exact(ref_dpl, tmp_path):
    ref_dpl.smooth(30).scale(3000)
    fname = tmp_path / "dpl.txt"
    ref_dpl.write(fname)
    back = read_dipole(fname)
    assert back == ref_dpl
    np.testing.assert_array_equal(back.data["agg"], ref_dpl.data["agg"])
    assert back.scale_applied == 3000
    text = fname.read_text().splitlines()
    assert text[0].startswith("# hnnfit dipole")
    assert "time_ms\tagg\tL2\tL5" in text


def test_write_read_roundtrip_average_and_agg_only(tmp_path):
    times = np.linspace(0, 10, 11)
    dpl = Dipole(times, np.sin(times), nave=4)
    dpl.scale_applied = 2.5
    dpl.write(tmp_path / "a.txt")
    back = read_dipole(tmp_path / "a.txt")
    assert back == dpl and back.nave == 4 and list(back.data) == ["agg"]


def test_read_reference_csv(reference_dir, ref_frames):
    dpl = read_dipole(reference_dir / "erp_default" / "dipole_trial1.csv")
    df = ref_frames[1]
    np.testing.assert_array_equal(dpl.times, df["time_ms"].to_numpy())
    for key in ("agg", "L2", "L5"):
        np.testing.assert_array_equal(dpl.data[key], df[key].to_numpy())


def test_read_recorded_two_column_file(shared_dir):
    fname = shared_dir / "data" / "MEG_detection_data" / "yes_trial_S1_ERP_all_avg.txt"
    table = np.loadtxt(fname)
    dpl = read_dipole(fname)
    assert list(dpl.data) == ["agg"]
    np.testing.assert_array_equal(dpl.times, table[:, 0])
    np.testing.assert_array_equal(dpl.data["agg"], table[:, 1])
    assert dpl.sfreq == pytest.approx(1000.0 / table[1, 0])


def test_read_reference_style_tab_file(tmp_path, ref_frames):
    df = ref_frames[0].iloc[:50]
    fname = tmp_path / "hnn.txt"
    np.savetxt(fname, df.to_numpy(), fmt=["%3.3f", "%5.4f", "%5.4f", "%5.4f"],
               delimiter="\t")
    dpl = read_dipole(fname)
    assert list(dpl.data) == ["agg", "L2", "L5"]
    np.testing.assert_allclose(dpl.data["L5"], df["L5"].to_numpy(), atol=5e-5)


def test_read_rejects_bad_files(shared_dir, tmp_path):
    with pytest.raises(ValueError, match="2 columns"):
        read_dipole(shared_dir / "data" / "MEG_detection_data" / "S1_ongoing.txt")
    with pytest.raises(FileNotFoundError):
        read_dipole(tmp_path / "missing.txt")
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("0 1\n1 2 3\n")
    with pytest.raises(ValueError, match="same number of columns"):
        read_dipole(ragged)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="data rows"):
        read_dipole(empty)


# ----------------------------------------------------------------------
# averaging

def test_average_dipoles(ref_frames):
    dpls = [Dipole(df["time_ms"].to_numpy(), df[["agg", "L2", "L5"]].to_numpy())
            for df in ref_frames]
    avg = average_dipoles(dpls)
    assert avg.nave == 2
    for key in ("agg", "L2", "L5"):
        np.testing.assert_allclose(
            avg.data[key], (ref_frames[0][key] + ref_frames[1][key]) / 2, rtol=1e-14,
            atol=1e-20)
    # inputs untouched
    np.testing.assert_array_equal(dpls[0].data["agg"], ref_frames[0]["agg"])


def test_average_weights_by_nave():
    times = np.arange(4.0)
    a, b, c = (Dipole(times, np.full(4, v)) for v in (1.0, 2.0, 6.0))
    ab = average_dipoles([a, b])
    abc = average_dipoles([ab, c])
    assert abc.nave == 3
    np.testing.assert_allclose(abc.data["agg"], 3.0)


def test_average_keeps_scale(ref_dpl):
    dpls = [ref_dpl.copy().scale(10), ref_dpl.copy().scale(10)]
    avg = average_dipoles(dpls)
    assert avg.scale_applied == 10
    np.testing.assert_allclose(avg.data["agg"], dpls[0].data["agg"])


def test_average_rejects_mismatches():
    times = np.arange(4.0)
    a = Dipole(times, np.zeros(4))
    with pytest.raises(ValueError, match="same times"):
        average_dipoles([a, Dipole(times + 1, np.zeros(4))])
    with pytest.raises(ValueError, match="scaled equally"):
        average_dipoles([a, a.copy().scale(2)])
    with pytest.raises(ValueError, match="same layers"):
        average_dipoles([a, Dipole(times, np.zeros((4, 3)))])
    with pytest.raises(ValueError, match="at least one"):
        average_dipoles([])
    with pytest.raises(TypeError, match="dpls\\[1\\]"):
        average_dipoles([a, "not a dipole"])


# ----------------------------------------------------------------------
# plots through the Dipole methods

def test_dipole_plot_methods(ref_dpl, tmp_path):
    fig = ref_dpl.plot(layer="L5", show=False)
    (ax,) = fig.axes
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), ref_dpl.data["L5"])
    fig.savefig(tmp_path / "dpl.png")
    assert (tmp_path / "dpl.png").stat().st_size > 0
    fig = ref_dpl.plot_psd(fmax=200, show=False)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    assert fig.axes[0].get_xlim() == (0.0, 200.0)
