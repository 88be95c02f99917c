"""bench/kill_resume.py: one kill of each kind on a tiny fit, nothing lost."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "kill_resume.py"


@pytest.fixture(scope="module")
def kill_resume():
    spec = importlib.util.spec_from_file_location("bench_kill_resume", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_kill_of_each_kind_loses_nothing(kill_resume, tmp_path, capsys):
    # a 3-evaluation fit on one worker, killed once as a group and once in
    # its driver alone, each time resumed to its budget
    assert kill_resume.main(["--kills", "1", "--driver-kills", "1", "--n-evals", "3",
                             "--n-jobs", "1", "--grace", "1", "--seed", "0",
                             "--workdir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["seed"] == 0 and summary["uninterrupted_s"] > 0
    for kind in ("group", "driver"):
        t = summary[kind]
        assert t["kills"] == 1 and t["studies"] >= 1
        assert (t["lost"], t["duplicated"]) == (0, 0)
        # every study finished under kills holds the uninterrupted run's points
        assert t["same_points"] == t["studies"]
    assert summary["driver"]["in_flight"] == 1
    lines = text.splitlines()
    assert lines[0] == (f"3x3 network, 30 ms, Bayesian, 3 evaluations, 1 jobs; "
                        f"uninterrupted run {summary['uninterrupted_s']:.1f} s; seed 0")
    group = lines[2].split()
    assert group[:5] == ["process", "group", "1", "0", "0"]
    studies = summary["group"]["studies"]
    assert " ".join(group[5:8]) == f"yes ({studies}/{studies} studies)"
    assert lines[3].split()[:5] == ["driver", "alone", "1", "0", "0"]


def test_a_study_killed_before_its_tables_has_no_rows(kill_resume, tmp_path):
    # a kill can land before the file exists or before its tables are
    # committed: both read as no rows, not as an error
    import sqlite3

    assert kill_resume.rows_of(tmp_path / "missing.sqlite") == []
    path = tmp_path / "bare.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.commit()
    assert kill_resume.rows_of(path) == []
