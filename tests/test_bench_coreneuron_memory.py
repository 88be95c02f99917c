"""bench/coreneuron_memory.py: its slope, its input checks, and one tiny run."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_coreneuron import coreneuron_build  # noqa: E402,F401  (skips only without a compiler)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "coreneuron_memory.py"


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("coreneuron_memory")


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_growth_is_the_least_squares_slope(bench):
    trials = np.arange(10, 30)
    rss = 50_000.0 + 3.5 * trials + np.where(trials % 2, 1.0, -1.0)   # kB, +-1 kB jitter
    assert bench.growth_per_trial(trials, rss) == pytest.approx(3.5, abs=0.02)
    assert bench.growth_per_trial([0, 1, 2], [7.0, 7.0, 7.0]) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        bench.growth_per_trial([5], [1.0])


@pytest.mark.parametrize("args, named", [
    (["--trials", "3", "--warmup", "2"], "--trials 3"),
    (["--warmup", "0"], "--warmup 0"),
    (["--mesh", "0"], "got 0, 10"),
])
def test_bad_settings_are_refused_before_any_run(args, named):
    proc = _run(*args)
    assert proc.returncode == 2
    assert named in proc.stderr and "CoreNEURON" not in proc.stdout


def test_a_tiny_run_reads_the_worker_memory(coreneuron_build):
    proc = _run("--mesh", "3", "--tstop", "20", "--trials", "8", "--warmup", "2",
                "--every", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [s["trial"] for s in samples] == [0, 2, 4, 6, 7]
    # a worker process with NEURON and the model loaded, not this test's parent
    rss = [s["worker_rss_MB"] for s in samples]
    assert all(20 < r < 2000 for r in rss), rss
    row = proc.stdout.strip().splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "2 + 6"
    after, end, slope, late = (float(c) for c in cells[1:])
    assert after == pytest.approx(rss[1], abs=0.11) and end == pytest.approx(rss[-1], abs=0.11)
    # the slopes are kB per trial: bounded by the whole change over the trials
    assert abs(slope) <= abs(end - after) * 1024 + 1.0
    assert re.search(r"model 3x3, tstop 20.0 ms, 8 warm CoreNEURON trials", proc.stdout)
