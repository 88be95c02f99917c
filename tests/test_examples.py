"""The gallery scripts in ``examples/`` run to the end, headless.

The documentation build executes them too (sphinx-gallery); these tests
check what they print and that every figure they leave open has something
drawn on it. They use a 3 x 3 network, so the two simulation examples take
seconds; the fit example runs 12 evaluations and is marked slow.
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

# run a script as sphinx-gallery does (as __main__, Agg backend), then save
# every figure it left open
_HARNESS = """
import runpy, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
runpy.run_path(sys.argv[1], run_name="__main__")
for number in plt.get_fignums():
    plt.figure(number).savefig(f"{sys.argv[2]}/figure_{number:02d}.png", dpi=60)
"""


def _run_example(script, out_dir):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-c", _HARNESS, str(EXAMPLES / script), str(out_dir)],
        capture_output=True, text=True, env=env, timeout=900, cwd=out_dir)
    assert proc.returncode == 0, (
        f"{script} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}")
    # the gallery teaches the current names: none of hnnfit's deprecated ones
    # (Python shows DeprecationWarning for code run as __main__)
    assert "DeprecationWarning" not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def _check_figures(out_dir, n_figures):
    written = sorted(out_dir.glob("figure_*.png"))
    assert len(written) == n_figures
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = mpimg.imread(path)
        # something was drawn: not a single flat colour
        assert np.ptp(image[..., :3]) > 0.5, path.name


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
    out = _run_example("plot_simulate_evoked.py", tmp_path)
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


def test_connectivity_example(tmp_path):
    out = _run_example("plot_connectivity.py", tmp_path)
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


@pytest.mark.slow
def test_fit_example(tmp_path):
    out = _run_example("plot_fit_evoked.py", tmp_path)
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
