"""Tests of hnnfit.viz: every plot renders headless and shows the right data."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import EventCollection
from matplotlib.figure import Figure

from hnnfit import viz
from hnnfit.cell_response import read_spikes
from hnnfit.dipole import Dipole


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _save(fig, path):
    assert isinstance(fig, Figure)
    fig.savefig(path)
    # something was drawn: not a single flat colour
    image = plt.imread(path)
    assert np.ptp(image[..., :3]) > 0.5


# ----------------------------------------------------------------------
# a small stand-in network with the attributes ARCHITECTURE.md lists

class _Record:
    """Connection record readable by attribute (as hnnfit's Connection)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


class FakeNet:
    """Two cell types on a 3 x 3 grid (1 um spacing) and one drive."""

    def __init__(self, record_type=dict):
        grid = [(float(x), float(y), 0.0) for x in range(3) for y in range(3)]
        self.cell_types = {"L2_basket": None, "L2_pyramidal": None}
        self.gid_ranges = {"L2_basket": range(0, 3), "L2_pyramidal": range(3, 12),
                           "evprox1": range(12, 21)}
        self.pos_dict = {
            "L2_basket": [(0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (2.0, 2.0, 0.0)],
            "L2_pyramidal": grid,
            "evprox1": grid,
            "origin": (1.0, 1.0, 0.0),
        }
        basket_to_pyr = {0: [3, 4, 5, 6], 1: list(range(3, 12)), 2: [11]}
        drive_to_pyr = {gid: [gid - 9] for gid in range(12, 21)}
        specs = [
            dict(src_type="L2_basket", target_type="L2_pyramidal", loc="soma",
                 receptor="gabaa", gid_pairs=basket_to_pyr,
                 nc_dict={"A_weight": 0.05, "A_delay": 1.0, "lamtha": 2.0}),
            dict(src_type="evprox1", target_type="L2_pyramidal", loc="proximal",
                 receptor="ampa", gid_pairs=drive_to_pyr,
                 nc_dict={"A_weight": 0.01, "A_delay": 0.1, "lamtha": 3.0}),
        ]
        for spec in specs:
            spec["src_gids"] = set(spec["gid_pairs"])
            spec["target_gids"] = {t for ts in spec["gid_pairs"].values() for t in ts}
        self.connectivity = [record_type(**spec) for spec in specs]

    def _pos(self, gid):
        for name, gids in self.gid_ranges.items():
            if gid in gids:
                return self.pos_dict[name][gid - gids[0]]
        raise KeyError(gid)

    def synaptic_netcons(self, conn_idx):
        conn = self.connectivity[conn_idx]
        get = conn.get if isinstance(conn, dict) else conn.__dict__.get
        nc = get("nc_dict")
        out = []
        for src, targets in get("gid_pairs").items():
            for target in targets:
                (x0, y0, _), (x1, y1, _) = self._pos(src), self._pos(target)
                g = np.exp(-((x1 - x0) ** 2 + (y1 - y0) ** 2) / nc["lamtha"] ** 2)
                out.append((src, target, nc["A_weight"] * g, nc["A_delay"] / g))
        return out


@pytest.fixture(params=[dict, _Record], ids=["dict-records", "attr-records"])
def fake_net(request):
    return FakeNet(request.param)


@pytest.fixture(scope="module")
def ref_dipoles(reference_dir):
    out = []
    for k in (0, 1):
        df = pd.read_csv(reference_dir / "erp_default" / f"dipole_trial{k}.csv")
        out.append(Dipole(df["time_ms"].to_numpy(), df[["agg", "L2", "L5"]].to_numpy()))
    return out


# ----------------------------------------------------------------------
# dipoles

def test_plot_dipole_layers_and_average(ref_dipoles, tmp_path):
    fig = viz.plot_dipole(ref_dipoles, layer=["agg", "L2", "L5"], average=True,
                          show=True)
    assert len(fig.axes) == 3
    for ax, layer in zip(fig.axes, ["agg", "L2", "L5"]):
        assert len(ax.lines) == 3                      # two trials + average
        mean = (ref_dipoles[0].data[layer] + ref_dipoles[1].data[layer]) / 2
        np.testing.assert_allclose(ax.lines[-1].get_ydata(), mean, rtol=1e-12,
                                   atol=1e-20)
        assert ax.get_legend().get_texts()[0].get_text() == "average"
    assert [ax.get_title() for ax in fig.axes] == ["Aggregate (L2/3 + L5)", "L2/3",
                                                    "L5"]
    _save(fig, tmp_path / "dipoles.png")


def test_plot_dipole_into_axes_with_labels(ref_dipoles):
    fig, axes = plt.subplots(2, 1)
    dpls = [d.copy().smooth(30).scale(3000) for d in ref_dipoles]
    out = viz.plot_dipole(dpls, ax=axes[0], layer="agg", label=["a", "b"], show=False)
    assert out is fig
    assert len(axes[0].lines) == 2 and len(axes[1].lines) == 0
    for line, dpl, label in zip(axes[0].lines, dpls, ["a", "b"]):
        assert line.get_label() == label
        np.testing.assert_array_equal(line.get_xdata(), dpl.times)
        np.testing.assert_array_equal(line.get_ydata(), dpl.data["agg"])
    assert "3000" in axes[0].get_ylabel()
    colours = {tuple(line.get_color()) if not isinstance(line.get_color(), str)
               else line.get_color() for line in axes[0].lines}
    assert len(colours) == 2                           # distinct default colours
    axes[0].legend(["Default", "Custom"])              # as in the examples


def test_plot_dipole_decim_tlim_and_errors(ref_dipoles):
    fig = viz.plot_dipole(ref_dipoles[0], decim=[5, 4], tmin=20, tmax=120,
                          color="r", show=False)
    (line,) = fig.axes[0].lines
    assert len(line.get_xdata()) == int(np.ceil(np.ceil(6801 / 5) / 4))
    assert fig.axes[0].get_xlim() == (20.0, 120.0)
    with pytest.raises(ValueError, match="scaled equally"):
        viz.plot_dipole([ref_dipoles[0], ref_dipoles[1].copy().scale(2)], show=False)
    with pytest.raises(ValueError, match="layer"):
        viz.plot_dipole(ref_dipoles[0], layer="L6", show=False)
    with pytest.raises(ValueError, match="decim"):
        viz.plot_dipole(ref_dipoles[0], decim=0, show=False)
    with pytest.raises(TypeError, match="dpl"):
        viz.plot_dipole("dipole", show=False)


def test_plot_psd_finds_rhythm(tmp_path):
    times = np.arange(0, 1000, 0.5)                    # 2 kHz, 1 s
    dpls = [Dipole(times, np.sin(2 * np.pi * 20.0 * times / 1000 + phase))
            for phase in (0.0, 1.0)]
    fig = viz.plot_psd(dpls, fmax=100, show=False)
    (line,) = fig.axes[0].lines
    freqs, power = line.get_xdata(), line.get_ydata()
    assert freqs[np.argmax(power)] == pytest.approx(20.0)
    assert fig.axes[0].get_xlim() == (0.0, 100.0)
    _save(fig, tmp_path / "psd.png")
    fig = viz.plot_psd(dpls[0], tmin=500, show=False)
    assert fig.axes[0].lines[0].get_xdata()[1] == pytest.approx(2.0, rel=1e-2)
    with pytest.raises(ValueError, match="fmax"):
        viz.plot_psd(dpls, fmin=50, fmax=10, show=False)


# ----------------------------------------------------------------------
# spikes

def test_spike_plots(reference_dir, tmp_path):
    cr = read_spikes(reference_dir / "erp_default" / "spikes.csv")
    # the oracle: the reference's spike table, read by pandas
    table = pd.read_csv(reference_dir / "erp_default" / "spikes.csv")
    cells = table[table["type"].isin(["L2_basket", "L2_pyramidal", "L5_basket",
                                      "L5_pyramidal"])]
    fig = viz.plot_spikes_raster(cr, show=False)
    assert len(fig.axes) == 1
    # one row per cell that fired (at -gid), holding its spikes of both trials
    drawn = {int(-c.get_lineoffset()): sorted(c.get_positions())
             for c in fig.axes[0].collections if isinstance(c, EventCollection)}
    expected = {int(gid): sorted(group["time_ms"])
                for gid, group in cells.groupby("gid")}
    assert drawn.keys() == expected.keys() and len(drawn) > 100
    for gid, times in expected.items():
        np.testing.assert_allclose(drawn[gid], times, rtol=1e-12)
    _save(fig, tmp_path / "raster.png")
    # one trial only
    fig = viz.plot_spikes_raster(cr, trial_idx=1, show=False)
    n_drawn = sum(len(c.get_positions()) for c in fig.axes[0].collections
                  if isinstance(c, EventCollection))
    assert n_drawn == (cells["trial"] == 1).sum()

    fig, axes = plt.subplots(2, 1)
    viz.plot_spikes_hist(cr, ax=axes[1], spike_types=["evprox", "evdist"], show=False)
    assert len(axes[1].containers) == 2 and not axes[0].containers
    # 5 ms bins from 0 to the end; the counts of each drive group's spikes
    for container, prefix in zip(axes[1].containers, ("evprox", "evdist")):
        lefts = np.array([p.get_x() for p in container.patches])
        widths = np.array([p.get_width() for p in container.patches])
        np.testing.assert_allclose(widths, 5.0)
        assert lefts[0] == 0.0
        times = table.loc[table["type"].str.startswith(prefix), "time_ms"]
        counts, _ = np.histogram(times, bins=np.append(lefts, lefts[-1] + 5.0))
        np.testing.assert_array_equal([p.get_height() for p in container.patches], counts)
        assert counts.sum() == len(times) > 0
    with pytest.raises(TypeError, match="cell_response"):
        viz.plot_spikes_raster([1, 2], show=False)


# ----------------------------------------------------------------------
# networks (stand-in)

def test_plot_cells(fake_net, tmp_path):
    fig = viz.plot_cells(fake_net, show=False)
    (ax,) = fig.axes
    assert ax.name == "3d"
    assert len(ax.collections) == 2
    xs = ax.collections[1]._offsets3d[0]
    np.testing.assert_array_equal(np.asarray(xs), [p[0] for p in
                                                   fake_net.pos_dict["L2_pyramidal"]])
    _save(fig, tmp_path / "cells.png")
    with pytest.raises(TypeError, match="3-D"):
        viz.plot_cells(fake_net, ax=plt.subplots()[1], show=False)


def test_plot_connectivity_matrix(fake_net, tmp_path):
    fig = viz.plot_connectivity_matrix(fake_net, 0, show=False)
    assert len(fig.axes) == 2                          # matrix + colour bar
    matrix = fig.axes[0].images[0].get_array()
    expected = np.zeros((3, 9))
    expected[0, :4] = 1
    expected[1, :] = 1
    expected[2, 8] = 1
    np.testing.assert_array_equal(matrix, expected)
    assert fig.axes[0].get_title() == "L2_basket -> L2_pyramidal (soma, gabaa)"
    _save(fig, tmp_path / "matrix.png")

    fig = viz.plot_connectivity_matrix(fake_net, 0, show_weight=True,
                                       colorbar=False, show=False)
    assert len(fig.axes) == 1
    weights = fig.axes[0].images[0].get_array()
    # basket 1 sits at (1, 1); pyramidal gid 3 at (0, 0): distance^2 = 2
    assert weights[1, 0] == pytest.approx(0.05 * np.exp(-2 / 4))
    assert weights[1, 4] == pytest.approx(0.05)
    assert weights[0, 8] == 0.0
    with pytest.raises(ValueError, match="conn_idx"):
        viz.plot_connectivity_matrix(fake_net, 7, show=False)


def test_plot_cell_connectivity(fake_net, tmp_path):
    fig = viz.plot_cell_connectivity(fake_net, 0, src_gid=1, show=False)
    assert len(fig.axes) == 3                          # sources, targets, colour bar
    ax_src, ax_tgt = fig.axes[:2]
    assert len(ax_src.collections) == 2
    connected = ax_tgt.collections[1]
    weights = {(s, t): w for s, t, w, _ in fake_net.synaptic_netcons(0) if s == 1}
    np.testing.assert_allclose(sorted(connected.get_array()), sorted(weights.values()))
    np.testing.assert_array_equal(ax_tgt.collections[2].get_offsets(), [[1.0, 1.0]])
    assert "L2_basket -> L2_pyramidal" in fig._suptitle.get_text()
    _save(fig, tmp_path / "cell_conn.png")

    fig = viz.plot_cell_connectivity(fake_net, 0, show=False)   # first source
    assert len(fig.axes[1].collections[1].get_offsets()) == 4
    fig = viz.plot_cell_connectivity(fake_net, 1, src_gid=15, colorbar=False,
                                     show=False)
    assert len(fig.axes) == 1                          # drive source: targets only
    assert len(fig.axes[0].collections[1].get_offsets()) == 1
    with pytest.raises(ValueError, match="src_gid"):
        viz.plot_cell_connectivity(fake_net, 0, src_gid=5, show=False)


# ----------------------------------------------------------------------
# networks (the real model, 3 x 3)

@pytest.fixture(scope="module")
def small_net():
    from hnnfit.network import jones_2009_model, pick_connection

    net = jones_2009_model(mesh_shape=(3, 3), add_drives_from_params=True)
    idx = pick_connection(net, src_gids="L5_basket", target_gids="L5_pyramidal",
                          loc="soma", receptor="gabaa")[0]
    return net, idx


def test_real_network_plots(small_net, tmp_path):
    net, idx = small_net
    fig = viz.plot_cells(net, show=False)
    assert len(fig.axes[0].collections) == 4
    for collection, cell_type in zip(fig.axes[0].collections,
                                     ["L2_basket", "L2_pyramidal", "L5_basket",
                                      "L5_pyramidal"]):
        drawn = np.column_stack([np.asarray(v, dtype=float)
                                 for v in collection._offsets3d])
        np.testing.assert_array_equal(drawn, net.pos_dict[cell_type])
    _save(fig, tmp_path / "net_cells.png")

    fig = viz.plot_connectivity_matrix(net, idx, show=False)
    conn = net.connectivity[idx]
    matrix = fig.axes[0].images[0].get_array()
    assert matrix.shape == (len(net.gid_ranges["L5_basket"]),
                            len(net.gid_ranges["L5_pyramidal"]))
    assert matrix.sum() == sum(len(t) for t in conn["gid_pairs"].values())
    _save(fig, tmp_path / "net_matrix.png")

    src_gid = conn["src_gids"].copy().pop()
    fig = viz.plot_cell_connectivity(net, idx, src_gid)
    netcons = [nc for nc in net.synaptic_netcons(idx) if nc[0] == src_gid]
    values = fig.axes[1].collections[1].get_array()
    np.testing.assert_allclose(sorted(values), sorted(w for _, _, w, _ in netcons))
    _save(fig, tmp_path / "net_cell_conn.png")

    drive_idx = next(i for i, c in enumerate(net.connectivity)
                     if c["src_type"] == "evprox1")
    fig = viz.plot_cell_connectivity(net, drive_idx, show=False)
    assert len(fig.axes) == 2                          # targets + colour bar
