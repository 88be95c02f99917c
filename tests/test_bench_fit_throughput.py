"""bench/fit_throughput.py: throughput counts completed evaluations only."""
import json

import pytest


@pytest.fixture(scope="module")
def throughput(load_bench):
    return load_bench("fit_throughput")


def _run(module, capsys, *extra):
    module.main(["--mesh", "3", "--tstop", "30", "--n-evals", "2", "--jobs", "1", *extra])
    text = capsys.readouterr().out
    rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    table = [line for line in text.splitlines() if line.startswith("| 1 |")]
    return rows, table


def test_completed_evaluations_make_the_throughput(throughput, capsys):
    rows, table = _run(throughput, capsys)
    (row,) = rows
    assert (row["n_evals"], row["n_complete"], row["n_failed"]) == (2, 2, 0)
    assert row["evals_per_min"] == pytest.approx(120.0 / row["wall_s"])
    assert row["best_value"] > 0 and len(row["peak_rss_mb_per_worker"]) == 1
    assert table == [f"| 1 | 2 | 0 | {row['wall_s']:.1f} | {row['evals_per_min']:.2f} | "
                     f"1.00x | {row['peak_rss_mb_per_worker'][0]:.0f} |"]


def test_failed_evaluations_are_reported_not_counted(throughput, capsys):
    # a time limit no simulation meets: every evaluation fails
    rows, table = _run(throughput, capsys, "--timeout", "0.001")
    (row,) = rows
    assert (row["n_evals"], row["n_complete"], row["n_failed"]) == (2, 0, 2)
    assert row["evals_per_min"] == 0.0 and row["best_value"] is None
    assert table[0].startswith(f"| 1 | 2 | 2 | {row['wall_s']:.1f} | 0.00 | n/a |")


def test_throughput(throughput):
    assert throughput.throughput(3, 90.0) == 2.0
    assert throughput.throughput(0, 5.0) == 0.0
    with pytest.raises(ValueError, match="wall must be > 0 s, got 0.0"):
        throughput.throughput(1, 0.0)
