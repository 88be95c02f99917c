"""The study file: schema, identity, rows, abandoned evaluations."""
import os
import sqlite3
import subprocess
import sys
from importlib import metadata

import numpy as np
import pandas as pd
import pytest

import hnnfit
from hnnfit.exceptions import StudyError
from hnnfit.fit.space import Parameter, ParameterSpace
from hnnfit.fit.storage import SCHEMA_VERSION
from hnnfit.fit.storage import StudyStorage as Study
from hnnfit.fit.targets import read_target

SPACE = ParameterSpace([Parameter("evprox1.mu", 10.0, 40.0),
                        Parameter("evprox1.numspikes", 1, 3, integer=True)])
OBJECTIVE = {"kind": "rmse", "smooth_ms": 30.0, "scale": "fit"}


@pytest.fixture
def target():
    t = np.arange(0.0, 100.0, 0.5)
    return read_target(np.c_[t, np.sin(t / 10.0)])


@pytest.fixture
def study(tmp_path, target):
    st = Study.create(tmp_path / "s.db", target=target, space=SPACE, objective=OBJECTIVE,
                      solver={"name": "cobyla", "seed": 0}, network=b"\x80pickled-net")
    yield st
    st.close()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _start_ticks(pid):
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return int(text[text.rindex(")") + 2:].split()[19])


def test_round_trip(study, target, tmp_path):
    pts = [{"evprox1.mu": 20.0, "evprox1.numspikes": 1},
           {"evprox1.mu": 25.5, "evprox1.numspikes": 2},
           {"evprox1.mu": 30.0, "evprox1.numspikes": 3}]
    ids = study.add_running(pts, stage="s1", batch=0, seeds=[1, 2], n_trials=2)
    study.finish(ids[0], status="complete", value=3.5, scale=12.0, sim_seconds=4.0,
                 info={"rmse": 3.5})
    study.finish(ids[1], status="complete", value=1.25, scale=10.0, sim_seconds=4.5)
    study.finish(ids[2], status="failed", error="SimulationError: boom")
    study.close()

    again = Study.load(tmp_path / "s.db", target=target, space=SPACE, objective=OBJECTIVE)
    assert again.counts() == {"running": 0, "complete": 2, "failed": 1, "abandoned": 0}
    assert again.best_value == 1.25
    assert again.best_params == pts[1]
    assert isinstance(again.best_params["evprox1.numspikes"], int)
    assert again.target == target
    np.testing.assert_array_equal(again.target.values, target.values)
    assert again.space == SPACE
    assert again.objective == OBJECTIVE
    assert again.network_blob == b"\x80pickled-net"
    meta = again.metadata
    assert meta["hnnfit_version"] == hnnfit.__version__
    assert meta["neuron_version"] == metadata.version("neuron")
    # where the study began, decoded (hnnfit.sysinfo)
    assert meta["machine"]["packages"]["numpy"] == metadata.version("numpy")
    assert meta["machine"]["hnnfit"] == hnnfit.__version__
    assert meta["target_hash"] == target.hash()

    df = again.trials
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert list(df["evprox1.mu"]) == [20.0, 25.5, 30.0]
    assert list(df["status"]) == ["complete", "complete", "failed"]
    assert list(df["scale"])[:2] == [12.0, 10.0]
    assert df["error"].iloc[2] == "SimulationError: boom"
    assert list(df["stage"]) == ["s1"] * 3
    assert df["n_trials"].tolist() == [2, 2, 2]
    assert df["info"].iloc[0] == {"rmse": 3.5}
    rows = again.rows(status="complete")
    assert [r["seeds"] for r in rows] == [[1, 2], [1, 2]]
    assert all(r["host"] and r["pid"] == os.getpid() for r in rows)
    assert all(r["end_time"] >= r["start_time"] for r in rows)
    again.close()


def test_identity_is_enforced(study, target, tmp_path):
    path = tmp_path / "s.db"
    study.close()
    with pytest.raises(StudyError, match="already exists"):
        Study.create(path, target=target, space=SPACE)
    # same identity: exist_ok opens it
    with Study.create(path, target=target, space=SPACE, objective=OBJECTIVE,
                      exist_ok=True) as st:
        assert st.counts()["complete"] == 0
    other_target = read_target(np.c_[target.times, target.values * 2])
    with pytest.raises(StudyError, match="different target"):
        Study.create(path, target=other_target, space=SPACE, exist_ok=True)
    other_space = ParameterSpace([Parameter("evprox1.mu", 10.0, 50.0),
                                  Parameter("evprox1.numspikes", 1, 3, integer=True)])
    # the message names the entry that differs, with both values
    with pytest.raises(StudyError, match=r"different space.*\(parameters\[0\]\.high: "
                                         r"stored 40\.0, given 50\.0\)"):
        Study.load(path, space=other_space)
    with pytest.raises(StudyError, match=r"different objective.*\(smooth_ms: stored 30\.0, "
                                         r"given 20\.0\)"):
        Study.load(path, objective={**OBJECTIVE, "smooth_ms": 20.0})
    with pytest.raises(StudyError, match="different network"):
        Study.load(path, network=b"another net")
    with pytest.raises(StudyError, match="different solver"):
        Study.load(path, solver={"name": "bayesian", "seed": 0})


def test_refuses_foreign_or_newer_files(tmp_path, study):
    plain = tmp_path / "plain.db"
    con = sqlite3.connect(plain)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StudyError, match="not an hnnfit study file"):
        Study.load(plain)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StudyError, match="not an hnnfit study file"):
        Study.load(junk)
    study.close()
    con = sqlite3.connect(tmp_path / "s.db")
    con.execute("UPDATE hnnfit_schema SET version=?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(StudyError, match="newer than this hnnfit understands"):
        Study.load(tmp_path / "s.db")
    with pytest.raises(ValueError, match="existing study file"):
        Study.load(tmp_path / "missing.db")


def test_abandoned_rows(study, tmp_path):
    pts = [{"evprox1.mu": 10.0 + i, "evprox1.numspikes": 1} for i in range(4)]
    ids = study.add_running(pts, batch=0)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        con = study.conn
        con.execute("UPDATE evaluations SET pid=? WHERE id=?", (_dead_pid(), ids[0]))
        con.execute("UPDATE evaluations SET host='elsewhere.example' WHERE id=?", (ids[1],))
        con.execute("UPDATE evaluations SET pid=?, pid_start=? WHERE id=?",
                    (sleeper.pid, _start_ticks(sleeper.pid), ids[2]))
        study.finish(ids[3], status="complete", value=1.0)
        study.close()
        st = Study.load(tmp_path / "s.db")
        status = {r["id"]: r["status"] for r in st.rows()}
        assert status == {ids[0]: "abandoned", ids[1]: "abandoned", ids[2]: "running",
                          ids[3]: "complete"}
        # the live process on this host still owns its row
        assert st.running_elsewhere() == [ids[2]]
        st.close()
    finally:
        sleeper.kill()
        sleeper.wait()
    st = Study.load(tmp_path / "s.db")
    assert st.counts() == {"running": 0, "complete": 1, "failed": 0, "abandoned": 3}
    st.close()


def test_finish_checks(study):
    (rid,) = study.add_running([{"evprox1.mu": 12.0, "evprox1.numspikes": 2}])
    with pytest.raises(ValueError, match="status must be one of 'complete', 'failed'"):
        study.finish(rid, status="done", value=1.0)
    with pytest.raises(ValueError, match="value must be given"):
        study.finish(rid, status="complete")
    with pytest.raises(StudyError, match="no complete evaluation"):
        study.best_value


def test_fit_modules_do_not_import_heavy_libraries():
    code = ("import sys, hnnfit.fit.targets, hnnfit.fit.space, hnnfit.fit.solvers, "
            "hnnfit.fit.study, hnnfit.fit.optimize; "
            "print(sorted(m for m in ('neuron', 'skopt', 'scipy.optimize', 'pandas', "
            "'joblib', 'cma') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
