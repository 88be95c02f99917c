"""bench/fit_erp.py's option checks: bad combinations stop before any simulation."""
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fit_erp.py"


@pytest.fixture(scope="module")
def fit_erp():
    spec = importlib.util.spec_from_file_location("bench_fit_erp", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--select-means", "--polish", "cobyla"], "--select-means needs --polish cma"),
    (["--select-means"], "--select-means needs --polish cma"),
    (["--polish", "cma", "--surrogate-radius", "3"], "need --select-top or --select-means"),
    (["--polish", "cma", "--select-means", "--select-trials", "0"],
     "--select-trials must be at least 1, got 0"),
    (["--select-top", "2"], "needs --polish"),
    (["--fit-trials", "4", "--group-size", "3"], "--group-size must divide"),
    (["--held-out-groups", "0"], "--held-out-groups must be at least 1, got 0"),
])
def test_bad_options_exit_with_a_message(fit_erp, tmp_path, argv, message):
    with pytest.raises(SystemExit) as info:
        fit_erp.main(argv + ["--out", str(tmp_path)])
    assert message in str(info.value)
    # nothing was started: no study file written
    assert not list(tmp_path.iterdir())


def test_selection_seeds_must_not_overlap_fit_or_held_out_seeds(fit_erp, shared_dir,
                                                                 tmp_path):
    # --select-means re-scores on seeds 50.. : a choice made on held-out
    # trials, or on trials the fit used, would not be a fair choice
    data = shared_dir / "data" / "MEG_detection_data"
    argv = ["--task", "supra", "--polish", "cma", "--polish-evals", "24",
            "--polish-popsize", "12", "--polish-trials", "3", "--select-means",
            "--held-out", "48", "49", "50", "--data-dir", str(data), "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="--held-out seeds"):
        fit_erp.main(argv)
    # fit trials 0-50 reach the selection's first seed
    argv = ["--task", "supra", "--fit-trials", "51", "--polish", "cma", "--select-means",
            "--data-dir", str(data), "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="selection's seeds"):
        fit_erp.main(argv)
    assert not list(tmp_path.glob("*.sqlite"))
