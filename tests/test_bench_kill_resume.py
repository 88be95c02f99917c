"""bench/kill_resume.py: how it reads a killed study.

The script's end-to-end run (a few kills of each kind, nothing lost) is
``tests/test_reliability.py::test_kill_resume_bench_quick``.
"""

import pytest


@pytest.fixture(scope="module")
def kill_resume(load_bench):
    return load_bench("kill_resume")


def test_a_study_killed_before_its_tables_has_no_rows(kill_resume, tmp_path):
    # a kill can land before the file exists or before its tables are
    # committed: both read as no rows, not as an error
    import sqlite3

    assert kill_resume.rows_of(tmp_path / "missing.sqlite") == []
    path = tmp_path / "bare.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.commit()
    assert kill_resume.rows_of(path) == []
