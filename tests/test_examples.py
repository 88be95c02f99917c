"""The gallery scripts in ``examples/`` run to the end, headless.

The documentation build executes them too (sphinx-gallery); these tests
check what they print and that every figure they leave open has something
drawn on it. They use a 3 x 3 network, so the two simulation examples take
seconds; the fit example runs 12 evaluations and is marked slow.
"""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from hnnfit import jones_2009_model, simulate_dipole
from hnnfit.cells import CELL_TYPES

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# run a script as sphinx-gallery does (as __main__, Agg backend), then save
# every figure it left open, the data drawn on each of its axes, and the
# script variables the test names (argv[3], comma-separated), pickled
_HARNESS = """
import pickle, runpy, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import EventCollection

def drawn(ax):
    events, offsets = [], []
    for c in ax.collections:
        if isinstance(c, EventCollection):
            events.append((c.get_lineoffset(), np.asarray(c.get_positions(), float)))
        elif hasattr(c, "_offsets3d"):
            offsets.append(np.column_stack([np.asarray(v, float) for v in c._offsets3d]))
        else:
            offsets.append(np.asarray(c.get_offsets(), float))
    return {
        "title": ax.get_title(),
        "lines": [(line.get_label(), np.asarray(line.get_xdata(), float),
                   np.asarray(line.get_ydata(), float)) for line in ax.lines],
        "bars": [(c.get_label(), np.array([p.get_x() for p in c.patches]),
                  np.array([p.get_height() for p in c.patches])) for c in ax.containers],
        "events": events, "offsets": offsets,
        "images": [np.asarray(im.get_array()) for im in ax.images],
        "legend": [t.get_text() for t in ax.get_legend().get_texts()]
                  if ax.get_legend() else [],
    }

scope = runpy.run_path(sys.argv[1], run_name="__main__")
figures = []
for number in plt.get_fignums():
    fig = plt.figure(number)
    fig.savefig(f"{sys.argv[2]}/figure_{number:02d}.png", dpi=60)
    figures.append([drawn(ax) for ax in fig.axes])
names = [n for n in sys.argv[3].split(",") if n] if len(sys.argv) > 3 else []
with open(f"{sys.argv[2]}/drawn.pkl", "wb") as f:
    pickle.dump({"figures": figures, "scope": {n: scope[n] for n in names}}, f)
"""


def _run_example(script, out_dir, keep=()):
    """Run ``script``; return its stdout, the data of its figures (one list of
    axes dicts per figure) and the script variables named in ``keep``."""
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-c", _HARNESS, str(EXAMPLES / script), str(out_dir),
         ",".join(keep)],
        capture_output=True, text=True, env=env, timeout=900, cwd=out_dir)
    assert proc.returncode == 0, (
        f"{script} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}")
    # the gallery teaches the current names: none of hnnfit's deprecated ones
    # (Python shows DeprecationWarning for code run as __main__)
    assert "DeprecationWarning" not in proc.stderr, proc.stderr[-4000:]
    with open(out_dir / "drawn.pkl", "rb") as f:
        drawn = pickle.load(f)
    return proc.stdout, drawn["figures"], drawn["scope"]


def _check_figures(out_dir, n_figures):
    written = sorted(out_dir.glob("figure_*.png"))
    assert len(written) == n_figures
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = mpimg.imread(path)
        # something was drawn: not a single flat colour
        assert np.ptp(image[..., :3]) > 0.5, path.name


def _raster_rows(cell_response, cell_types):
    """gid -> sorted spike times (ms) of the given cell types, all trials pooled."""
    rows = {}
    for times, gids, types in zip(cell_response.spike_times, cell_response.spike_gids,
                                  cell_response.spike_types):
        for t, gid, kind in zip(times, gids, types):
            if kind in cell_types:
                rows.setdefault(int(gid), []).append(float(t))
    return {gid: sorted(ts) for gid, ts in rows.items()}


def _check_raster(axes, cell_response):
    """The raster's rows are the cells' spikes: one row per gid that fired."""
    (ax,) = axes
    drawn = {int(-offset): sorted(times.tolist()) for offset, times in ax["events"]}
    expected = _raster_rows(cell_response, CELL_TYPES)
    assert drawn.keys() == expected.keys() and len(drawn) > 0
    for gid, times in expected.items():
        np.testing.assert_allclose(drawn[gid], times, rtol=1e-12)


def _check_drive_hist(ax, cell_response):
    """Histogram bars of 'evprox' and 'evdist' hold every drive spike once."""
    kinds = [k for ts in cell_response.spike_types for k in ts]
    assert ax["legend"] == ["evprox", "evdist"] and len(ax["bars"]) == 2
    for (_, _, heights), prefix in zip(ax["bars"], ax["legend"]):
        assert heights.sum() == sum(k.startswith(prefix) for k in kinds) > 0


def test_every_example_is_a_gallery_script():
    # sphinx-gallery executes the files named plot_*.py and needs a titled
    # docstring; a script outside that pattern would be shown, not run
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert scripts
    for script in scripts:
        assert script.name.startswith("plot_"), script.name
        text = script.read_text()
        assert text.startswith('"""\n'), script.name
        title, underline = text.splitlines()[1:3]
        assert underline == "=" * len(title), script.name


def test_simulate_evoked_example(tmp_path):
    out, figures, scope = _run_example(
        "plot_simulate_evoked.py", tmp_path,
        keep=("params", "net", "dpls", "cell_response", "net_sync", "dpls_sync"))
    lines = [line for line in out.splitlines() if not line.startswith("Trial ")]
    # the full, sorted parameter listing, then the wildcard subset
    assert lines[0].startswith("Params with ")
    soma_header = lines.index("Params with 9 entries:")
    soma_keys = [line.split(":")[0].strip() for line in lines[soma_header + 1:soma_header + 10]]
    assert soma_keys == sorted(soma_keys)
    assert all(key.startswith("L2Pyr_soma_") for key in soma_keys)
    assert "L2Pyr_soma_gnabar_hh2" in soma_keys
    full_keys = [line.split(":")[0].strip() for line in lines[1:soma_header]]
    assert "tstop" in full_keys and set(soma_keys) <= set(full_keys)
    # the network of the page: the Jones 2009 column on a 3 x 3 grid,
    # drives added afterwards
    assert ("<Network | 3 L2_basket, 9 L2_pyramidal, 3 L5_basket, 9 L5_pyramidal cells; "
            "16 connection rules; 0 drives>") in out
    # written spikes read back equal
    assert "read back <CellResponse | 2 trials" in out
    assert "identical to the simulated spikes: True" in out
    # the dynamics of a synchronised drive
    assert "{'mu': 63.53, 'sigma': 3.85, 'numspikes': 1, 'sync_within_trial': True}" in out
    # cells; dipoles + drive histogram; raster; raster read back; sync dipole;
    # sync drive histogram
    _check_figures(tmp_path, 6)
    net, dpls, params = scope["net"], scope["dpls"], scope["params"]
    # the cells at their grid positions
    (cells,) = figures[0]
    assert cells["legend"] == list(CELL_TYPES)
    for drawn, cell_type in zip(cells["offsets"], CELL_TYPES):
        np.testing.assert_array_equal(drawn, net.pos_dict[cell_type])
    assert {tuple(p[:2]) for p in cells["offsets"][3]} == {(x, y) for x in (0.0, 1.0, 2.0)
                                                           for y in (0.0, 1.0, 2.0)}
    # both trials' dipoles, post-processed with the parameter file's
    # smoothing and scale, and their average
    dipoles, hist = figures[1]
    assert len(dpls) == 2 and len(dipoles["lines"]) == 3
    for dpl in dpls:
        assert dpl.scale_applied == params["dipole_scalefctr"]
    for (_, x, y), dpl in zip(dipoles["lines"], dpls):
        np.testing.assert_array_equal(x, dpl.times)
        np.testing.assert_array_equal(y, dpl.data["agg"])
    assert not np.array_equal(dpls[0].data["agg"], dpls[1].data["agg"])
    np.testing.assert_allclose(dipoles["lines"][2][2],
                               (dpls[0].data["agg"] + dpls[1].data["agg"]) / 2, rtol=1e-12)
    _check_drive_hist(hist, net.cell_response)
    # the raster of both trials, and the same spikes read back from files
    _check_raster(figures[2], net.cell_response)
    _check_raster(figures[3], scope["cell_response"])
    # the synchronous drives: every drive cell of a drive fires at one time,
    # so each drive's histogram is one bar holding all its spikes
    (sync_dipole,) = figures[4]
    np.testing.assert_array_equal(sync_dipole["lines"][0][2], scope["dpls_sync"][0].data["agg"])
    sync = scope["net_sync"].cell_response
    (sync_hist,) = figures[5]
    assert sync_hist["legend"] == ["evdist1", "evprox1", "evprox2"]
    for (_, _, heights), name in zip(sync_hist["bars"], sync_hist["legend"]):
        times = [t for t, kind in zip(sync.spike_times[0], sync.spike_types[0]) if kind == name]
        assert len(set(times)) == 1
        assert (heights > 0).sum() == 1 and heights.sum() == len(times) == \
            len(scope["net_sync"].gid_ranges[name])


def test_connectivity_example(tmp_path):
    out, figures, scope = _run_example(
        "plot_connectivity.py", tmp_path,
        keep=("net_erp", "net_all", "net_sparse", "conn_idx", "src_gid", "dpls"))
    lines = [line for line in out.splitlines() if not line.startswith("Trial ")]
    assert lines[0] == "38"
    assert lines[1:6] == [
        "L5_basket -> L5_pyramidal",
        "cell counts: 3 srcs, 9 targets",
        "connection probability: 1.0",
        "loc: 'soma'; receptor: 'gabaa'",
        "weight: 0.025; delay: 1.0; lamtha: 70.0",
    ]
    # matrix and cell plot of the default rule, three rasters, matrix and cell
    # plot of the sparse rule, the dipole comparison
    _check_figures(tmp_path, 8)
    erp, full, sparse = scope["net_erp"], scope["net_all"], scope["net_sparse"]
    # the default L5 basket -> L5 pyramidal rule connects every pair
    np.testing.assert_array_equal(figures[0][0]["images"][0], np.ones((3, 9)))
    # the rasters are the three networks' spikes
    for axes, net in zip(figures[2:5], (erp, full, sparse)):
        _check_raster(axes, net.cell_response)
    # the sparse L2 basket -> L2 basket rule: the matrix holds its pairs
    conn = sparse.connectivity[scope["conn_idx"]]
    assert (conn["src_type"], conn["target_type"]) == ("L2_basket", "L2_basket")
    first = sparse.gid_ranges["L2_basket"][0]
    expected = np.zeros((3, 3))
    for src, targets in conn["gid_pairs"].items():
        for target in targets:
            expected[src - first, target - first] = 1
    np.testing.assert_array_equal(figures[5][0]["images"][0], expected)
    assert 0 < expected.sum() < 9
    # the cell plot colours the source cell's targets by their weights (uS)
    weights = [w for src, _, w, _ in sparse.synaptic_netcons(scope["conn_idx"])
               if src == scope["src_gid"]]
    assert sorted(figures[6][1]["offsets"][1][:, 0]) == sorted(
        sparse.pos_dict["L2_basket"][t - first][0] for t in conn["gid_pairs"][scope["src_gid"]])
    assert len(weights) == len(figures[6][1]["offsets"][1])
    # the three dipoles as plotted; the default one as a direct simulation of
    # the parameter file's network gives it (30 ms smoothing, x3000)
    dipoles, hist = figures[7]
    assert dipoles["legend"] == ["Default", "Custom All", "Custom Sparse"]
    for (_, x, y), dpl in zip(dipoles["lines"], scope["dpls"]):
        np.testing.assert_array_equal(x, dpl.times)
        np.testing.assert_array_equal(y, dpl.data["agg"])
    (direct,) = simulate_dipole(jones_2009_model(add_drives_from_params=True,
                                                 mesh_shape=(3, 3)),
                                tstop=170.0, n_trials=1, verbose=False)
    expected = direct.smooth(30).scale(3000).data["agg"]
    np.testing.assert_allclose(dipoles["lines"][0][2], expected, rtol=1e-12,
                               atol=1e-12 * np.abs(expected).max())
    ys = [line[2] for line in dipoles["lines"]]
    assert not np.allclose(ys[0], ys[1]) and not np.allclose(ys[1], ys[2])
    _check_drive_hist(hist, erp.cell_response)


@pytest.mark.slow
def test_fit_example(tmp_path):
    out, figures, scope = _run_example("plot_fit_evoked.py", tmp_path,
                                       keep=("dipole", "noisy"))
    values = {}
    for line in out.splitlines():
        if line.startswith(("start:", "best:")):
            key, _, rest = line.partition(":")
            values[key] = rest
    assert "'evprox1.mu': 26.61" in values["start"]
    assert "'evdist1.mu': 63.53" in values["start"]
    # the table holds the 12 evaluations and the best is the table's minimum
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] and line.split()[0].isdigit() and len(line.split()) == 5]
    assert [int(row[1]) for row in rows] == list(range(1, 13))
    best_rmse = float(values["best"].rsplit("RMSE", 1)[1].split()[0])
    assert best_rmse == pytest.approx(min(float(row[4]) for row in rows), abs=0.006)
    # the fit moved the distal drive to the truth (57 ms) from 63.53 ms
    best_dist = float(values["best"].split("'evdist1.mu': ")[1].split(",")[0].rstrip("}"))
    assert abs(best_dist - 57.0) < 2.0
    assert "expected RMSE of a 2-trial average:" in out
    # convergence and fit
    _check_figures(tmp_path, 2)
    # the convergence plot draws the table's values and their running best
    values = np.array([float(row[4]) for row in rows])
    dots, running = figures[0][0]["lines"][:2]
    np.testing.assert_allclose(dots[2], values, atol=0.006)
    np.testing.assert_allclose(running[2], np.minimum.accumulate(dots[2]), rtol=1e-12)
    # the fit plot: the noisy target the script made, and a best dipole
    # whose RMSE against it is the best value printed
    target, initial, best = figures[1][0]["lines"][:3]
    np.testing.assert_array_equal(target[1], scope["dipole"].times)
    np.testing.assert_allclose(target[2], scope["noisy"], rtol=1e-12)
    assert np.sqrt(np.mean((best[2] - target[2]) ** 2)) == pytest.approx(best_rmse, abs=0.006)
    assert np.sqrt(np.mean((initial[2] - target[2]) ** 2)) == pytest.approx(values[0],
                                                                          abs=0.006)
