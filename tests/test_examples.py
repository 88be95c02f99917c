"""The example workflows in ``examples/`` run to the end, headless.

Each script simulates the full-size network (three 170 ms runs), so these
tests are marked slow; CI still runs them.
"""
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_example(script, out_dir):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(out_dir)],
        capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, (
        f"{script} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _check_pngs(out_dir, names):
    written = sorted(p.name for p in out_dir.glob("*.png"))
    assert written == sorted(names)
    for name in names:
        path = out_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = mpimg.imread(path)
        assert image.shape[0] >= 300 and image.shape[1] >= 400
        # something was drawn: not a single flat colour
        assert np.ptp(image[..., :3]) > 0.5


@pytest.mark.slow
def test_simulate_evoked_example(tmp_path):
    out = _run_example("plot_simulate_evoked.py", tmp_path)
    lines = out.splitlines()
    # the full, sorted parameter listing, then the wildcard subset
    assert lines[0].startswith("Params with ")
    soma_header = lines.index("Params with 9 entries:")
    soma_keys = [line.split(":")[0].strip() for line in lines[soma_header + 1:soma_header + 10]]
    assert soma_keys == sorted(soma_keys)
    assert all(key.startswith("L2Pyr_soma_") for key in soma_keys)
    assert "L2Pyr_soma_gnabar_hh2" in soma_keys
    full_keys = [line.split(":")[0].strip() for line in lines[1:soma_header]]
    assert "tstop" in full_keys and set(soma_keys) <= set(full_keys)
    # the network of the page: the Jones 2009 column, drives added afterwards
    assert "16 connection rules; 0 drives" in out
    # written spikes read back equal
    assert "read back <CellResponse | 2 trials" in out
    assert "identical to the simulated spikes: True" in out
    # the dynamics of a synchronised drive
    assert "{'mu': 63.53, 'sigma': 3.85, 'numspikes': 1, 'sync_within_trial': True}" in out
    _check_pngs(tmp_path, [
        "evoked_cells.png", "evoked_dipoles_and_drive_hist.png", "evoked_raster.png",
        "evoked_raster_read_back.png", "evoked_sync_dipole.png",
        "evoked_sync_drive_hist.png"])


@pytest.mark.slow
def test_connectivity_example(tmp_path):
    out = _run_example("plot_connectivity.py", tmp_path)
    lines = out.splitlines()
    assert lines[0] == "38"
    assert lines[1:6] == [
        "L5_basket -> L5_pyramidal",
        "cell counts: 35 srcs, 100 targets",
        "connection probability: 1.0",
        "loc: 'soma'; receptor: 'gabaa'",
        "weight: 0.025; delay: 1.0; lamtha: 70.0",
    ]
    _check_pngs(tmp_path, [
        "connectivity_matrix_L5basket_L5pyr.png", "connectivity_cell_L5basket_L5pyr.png",
        "connectivity_raster_default.png", "connectivity_raster_all.png",
        "connectivity_raster_sparse.png", "connectivity_matrix_L2basket_L2basket_sparse.png",
        "connectivity_cell_L2basket_L2basket_sparse.png",
        "connectivity_dipole_comparison.png"])
