"""Tests of hnnfit.cell_response: CellResponse, its I/O, rates and plots."""
import json
import pickle

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from hnnfit.cell_response import CellResponse, read_spikes

@pytest.fixture(scope="module")
def gid_ranges(reference_dir):
    with open(reference_dir / "erp_default" / "network.json") as fid:
        spans = json.load(fid)["gid_ranges"]
    return {name: range(start, stop) for name, (start, stop) in spans.items()}


@pytest.fixture(scope="module")
def ref_spikes(reference_dir):
    return pd.read_csv(reference_dir / "erp_default" / "spikes.csv")


@pytest.fixture
def ref_response(reference_dir):
    return read_spikes(reference_dir / "erp_default" / "spikes.csv")


def _small():
    return CellResponse(
        spike_times=[[1.0, 2.5, 30.0, 40.0], [5.0], []],
        spike_gids=[[0, 2, 2, 7], [3], []],
        spike_types=[["L2_basket", "L2_pyramidal", "L2_pyramidal", "evprox1"],
                     ["L2_pyramidal"], []],
        cell_type_names=["L2_basket", "L2_pyramidal"],
    )


SMALL_RANGES = {"L2_basket": range(0, 2), "L2_pyramidal": range(2, 6),
                "evprox1": range(6, 8)}


# ----------------------------------------------------------------------
# construction and reading the reference

def test_read_reference_spikes(ref_response, ref_spikes, reference_dir, gid_ranges):
    cr = ref_response
    assert cr.n_trials == 2
    for trial in (0, 1):
        rows = ref_spikes[ref_spikes["trial"] == trial]
        np.testing.assert_array_equal(cr.spike_times[trial], rows["time_ms"])
        assert cr.spike_gids[trial] == rows["gid"].astype(int).tolist()
        assert cr.spike_types[trial] == rows["type"].tolist()
    # the types in the file agree with the network's gid ranges
    derived = read_spikes(reference_dir / "erp_default" / "spikes.csv",
                          gid_ranges=gid_ranges)
    assert derived.spike_types == cr.spike_types
    assert cr.cell_types == sorted(ref_spikes["type"].unique())


def test_constructor_validation():
    with pytest.raises(ValueError, match="one list per trial"):
        CellResponse(spike_times=[[1.0]], spike_gids=[])
    with pytest.raises(ValueError, match="one gid per spike"):
        CellResponse(spike_times=[[1.0, 2.0]], spike_gids=[[1]])
    with pytest.raises(ValueError, match="one type per spike"):
        CellResponse(spike_times=[[1.0]], spike_gids=[[1]], spike_types=[["a", "b"]])
    with pytest.raises(TypeError, match="spike_times"):
        CellResponse(spike_times=[1.0, 2.0], spike_gids=[[1], [2]])
    empty = CellResponse()
    assert empty.n_trials == 0 and empty.spike_times == []


def test_equality_and_pickle():
    a, b = _small(), _small()
    assert a == b
    b.spike_times[0][1] = 2.5000001
    assert a != b
    c = _small()
    c.spike_types[1][0] = "L5_pyramidal"
    assert a != c
    assert pickle.loads(pickle.dumps(a)) == a
    d = CellResponse([[1.0]], [[3]], times=np.arange(3.0),
                     vsoma=[{3: np.array([-65.0, -64.0, -63.0])}])
    e = pickle.loads(pickle.dumps(d))
    assert e == d and e.vsoma[0][3][2] == -63.0
    e.vsoma[0][3][2] = 0.0
    assert e != d


def test_update_types_and_add_trial():
    cr = CellResponse(spike_times=[[1.0, 2.0, 3.0]], spike_gids=[[7, 0, 3]])
    assert cr.spike_types == [[]]
    cr.update_types(SMALL_RANGES)
    assert cr.spike_types == [["evprox1", "L2_basket", "L2_pyramidal"]]
    cr._add_trial(np.array([4.0]), np.array([1]), vsoma={1: [0.0, 1.0]},
                  gid_ranges=SMALL_RANGES)
    assert cr.n_trials == 2 and cr.spike_types[1] == ["L2_basket"]
    assert cr.vsoma[0][1].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="disjoint"):
        cr.update_types({"a": range(0, 5), "b": range(4, 8)})
    with pytest.raises(ValueError, match="gid 7"):
        cr.update_types({"a": range(0, 5)})


# ----------------------------------------------------------------------
# I/O

def test_write_read_single_file_roundtrip(ref_response, tmp_path):
    fname = tmp_path / "spikes.txt"
    ref_response.write(fname)
    back = read_spikes(fname)
    assert back == ref_response
    assert fname.read_text().splitlines()[1] == "trial\ttime_ms\tgid\ttype"


def test_write_read_per_trial_roundtrip(ref_response, tmp_path):
    pattern = str(tmp_path / "spk_%d.txt")
    ref_response.write(pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spk_0.txt", "spk_1.txt"]
    assert read_spikes(pattern) == ref_response
    assert read_spikes(tmp_path / "spk_*.txt") == ref_response
    # each per-trial file reads as a single trial
    one = read_spikes(tmp_path / "spk_1.txt")
    assert one.n_trials == 1 and one.spike_times[0] == ref_response.spike_times[1]


def test_empty_trials_survive_roundtrip(tmp_path):
    cr = _small()
    cr.write(tmp_path / "s.txt")
    back = read_spikes(tmp_path / "s.txt")
    assert back == cr and back.n_trials == 3 and back.spike_times[2] == []


def test_glob_sorts_trials_naturally(tmp_path):
    times = [[float(k)] for k in range(12)]
    cr = CellResponse(times, [[1]] * 12, [["L2_basket"]] * 12)
    cr.write(str(tmp_path / "t%d.txt"))
    back = read_spikes(str(tmp_path / "t*.txt"))
    assert back.spike_times == times


def test_legacy_files_without_types(tmp_path):
    fname = tmp_path / "spk.txt"
    fname.write_text("1.5\t0\n2.25\t7\n")
    with pytest.raises(ValueError, match="gid_ranges must be given"):
        read_spikes(fname)
    cr = read_spikes(fname, gid_ranges=SMALL_RANGES)
    assert cr.spike_types == [["L2_basket", "evprox1"]]
    assert cr.spike_times == [[1.5, 2.25]]


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_spikes(tmp_path / "nothing_*.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1.0\tabc\tL2_basket\n")
    with pytest.raises(ValueError, match="numbers"):
        read_spikes(bad)


def test_write_needs_types(tmp_path):
    cr = CellResponse([[1.0]], [[1]])
    with pytest.raises(ValueError, match="update_types"):
        cr.write(tmp_path / "x.txt")


# ----------------------------------------------------------------------
# rates

def test_mean_rates_by_hand():
    cr = _small()
    dur_s = 0.1
    rates = cr.mean_rates(0, 100, SMALL_RANGES, mean_type="cell")
    # trial 0: gid 0 once; gid 2 twice; trial 1: gid 3 once
    assert rates["L2_basket"] == [[1 / dur_s, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert rates["L2_pyramidal"] == [[2 / dur_s, 0, 0, 0], [0, 1 / dur_s, 0, 0],
                                     [0, 0, 0, 0]]
    trial = cr.mean_rates(0, 100, SMALL_RANGES, mean_type="trial")
    assert trial["L2_pyramidal"] == pytest.approx([5.0, 2.5, 0.0])
    overall = cr.mean_rates(0, 100, SMALL_RANGES)
    assert overall["L2_pyramidal"] == pytest.approx(2.5)
    assert overall["L2_basket"] == pytest.approx(10 / 6)
    assert set(overall) == {"L2_basket", "L2_pyramidal"}
    # only spikes inside [tstart, tstop] count
    window = cr.mean_rates(0, 10, SMALL_RANGES, mean_type="cell")
    assert window["L2_pyramidal"][0] == [100.0, 0, 0, 0]


def test_mean_rates_reference(ref_response, ref_spikes, gid_ranges):
    rates = ref_response.mean_rates(0, 170, gid_ranges)
    n = ref_spikes[ref_spikes["type"] == "L5_pyramidal"].shape[0]
    assert rates["L5_pyramidal"] == pytest.approx(n / 2 / 100 / 0.170)


def test_mean_rates_errors():
    cr = _small()
    with pytest.raises(ValueError, match="tstop must be > tstart"):
        cr.mean_rates(10, 10, SMALL_RANGES)
    with pytest.raises(ValueError, match="mean_type"):
        cr.mean_rates(0, 10, SMALL_RANGES, mean_type="gid")
    with pytest.raises(ValueError, match="L2_pyramidal"):
        cr.mean_rates(0, 10, {"L2_basket": range(2)})


# ----------------------------------------------------------------------
# plots through the CellResponse methods

def _bar_total(container):
    return sum(patch.get_height() for patch in container.patches)


def test_hist_groups_type_prefixes(ref_response, ref_spikes, tmp_path):
    fig = ref_response.plot_spikes_hist(spike_types="evprox", show=False)
    ax = fig.axes[0]
    assert len(ax.containers) == 1
    n_prox = ref_spikes["type"].isin(["evprox1", "evprox2"]).sum()
    assert _bar_total(ax.containers[0]) == n_prox
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["evprox"]
    fig.savefig(tmp_path / "hist.png")
    assert (tmp_path / "hist.png").stat().st_size > 0

    fig = ref_response.plot_spikes_hist(spike_types=["evprox", "evdist"], show=False)
    ax = fig.axes[0]
    totals = [_bar_total(c) for c in ax.containers]
    assert totals == [n_prox, (ref_spikes["type"] == "evdist1").sum()]

    fig = ref_response.plot_spikes_hist(
        spike_types={"Evoked": ["evprox", "evdist"]}, bin_width=10, show=False)
    (container,) = fig.axes[0].containers
    assert _bar_total(container) == n_prox + (ref_spikes["type"] == "evdist1").sum()
    widths = {round(p.get_width(), 9) for p in container.patches}
    assert widths == {10.0}


def test_hist_defaults_and_errors(ref_response, ref_spikes):
    fig = ref_response.plot_spikes_hist(trial_idx=1, show=False)
    ax = fig.axes[0]
    # default: each drive type separately
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["evdist1", "evprox1", "evprox2"]
    trial1 = ref_spikes[ref_spikes["trial"] == 1]
    assert _bar_total(ax.containers[1]) == (trial1["type"] == "evprox1").sum()
    with pytest.raises(ValueError, match="'poisson'"):
        ref_response.plot_spikes_hist(spike_types="poisson", show=False)
    with pytest.raises(ValueError, match="one group"):
        ref_response.plot_spikes_hist(spike_types={"a": ["ev"], "b": ["evprox"]},
                                      show=False)
    with pytest.raises(TypeError, match="spike_types"):
        ref_response.plot_spikes_hist(spike_types=3, show=False)
    with pytest.raises(ValueError, match="trial_idx"):
        ref_response.plot_spikes_hist(trial_idx=5, show=False)


def test_raster(ref_response, ref_spikes, tmp_path):
    fig = ref_response.plot_spikes_raster(trial_idx=0, show=False)
    ax = fig.axes[0]
    # one event collection per cell that fired, per cell type
    trial0 = ref_spikes[(ref_spikes["trial"] == 0)]
    cells = trial0[trial0["type"].isin(["L2_basket", "L2_pyramidal", "L5_basket",
                                        "L5_pyramidal"])]
    assert len(ax.collections) == cells["gid"].nunique()
    n_events = sum(len(c.get_positions()) for c in ax.collections)
    assert n_events == len(cells)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["L2_basket spikes", "L2_pyramidal spikes", "L5_basket spikes",
                      "L5_pyramidal spikes"]
    fig.savefig(tmp_path / "raster.png")
    assert (tmp_path / "raster.png").stat().st_size > 0
