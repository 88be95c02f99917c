"""Study storage: old files, migrations, read-only opening, the driver lock,
liveness, SQLite errors and listing."""
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hnnfit.exceptions import StudyError, StudyIOError
from hnnfit.fit.space import Parameter, ParameterSpace
from hnnfit.fit.storage import (SCHEMA_VERSION, Budget, EvalState, Evaluation,
                                StudyStorage, list_studies, lock_path, scan_studies)
from hnnfit.fit.targets import read_target

FIXTURES = Path(__file__).parent / "fixtures"
SPACE = ParameterSpace([Parameter("evprox1.mu", 10.0, 40.0),
                        Parameter("evprox1.numspikes", 1, 3, integer=True)])


def _target():
    t = np.arange(0.0, 100.0, 0.5)
    return read_target(np.c_[t, np.sin(t / 10.0)])


def _new(path, **kwargs):
    return StudyStorage.create(path, target=_target(), space=SPACE,
                               objective={"kind": "rmse"},
                               solver={"name": "cobyla", "seed": 0}, network=b"net",
                               **kwargs)


def _point(i):
    return {"evprox1.mu": 10.0 + i, "evprox1.numspikes": 1}


def _digests(folder):
    """sha256 of every file in ``folder`` by name (the -wal/-shm/.lock included)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).iterdir())}


def _start_ticks(pid):
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return int(text[text.rindex(")") + 2:].split()[19])


def _crashed_study(path, n_done=3, n_running=2):
    """A study whose driver was killed: rows complete and running, its -wal,
    -shm and lock file left behind."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_fit_storage import _new, _point
        st = _new({str(path)!r})
        ids = st.add_running([_point(i) for i in range({n_done + n_running})], batch=0)
        for i in ids[:{n_done}]:
            st.finish(i, state="complete", value=float(i))
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert Path(str(path) + "-wal").exists() and lock_path(path).exists()


# --------------------------------------------------------------------------- schema 1
def _fixture_copy(tmp_path, name):
    folder = tmp_path / "fixtures"
    folder.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / f"{name}.sqlite", folder / f"{name}.sqlite")
    return folder / f"{name}.sqlite"


def _expected(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _decoded(storage):
    """Metadata as the fixture's JSON holds it, without what a migration records
    (the seed offset 0 of each stage run before offsets were recorded)."""
    meta = {k: v for k, v in storage.metadata.items()
            if k not in ("network", "migrations")
            and not (k.startswith("seed_offset") and v == "0")}
    meta["network_sha256"] = hashlib.sha256(storage.network_blob).hexdigest()
    return meta


@pytest.mark.parametrize("name", ["v1_bayesian", "v1_staged"])
def test_schema_1_file_reads_the_same_read_only_and_migrated(tmp_path, name):
    path = _fixture_copy(tmp_path, name)
    expected = _expected(name)
    before = _digests(path.parent)
    with StudyStorage.load(path, readonly=True) as st:
        assert st.schema_version == 1 and st.readonly
        assert [r.to_dict() | {"status": r.state.value} for r in st.rows()] == [
            dict(r, state=r["status"]) for r in expected["rows"]]
        assert st.counts() == expected["counts"]
        assert _decoded(st) == expected["metadata"]
        assert st.budget.n_evals == 6 and st.budget.n_jobs == 1
    # reading an old file neither migrates nor writes it
    assert _digests(path.parent) == before

    with StudyStorage.load(path) as st:
        assert st.schema_version == SCHEMA_VERSION and not st.readonly
        assert [r.to_dict() | {"status": r.state.value} for r in st.rows()] == [
            dict(r, state=r["status"]) for r in expected["rows"]]
        meta = _decoded(st)
        assert meta == expected["metadata"]
        history = json.loads(st.get_metadata("migrations"))
        assert [(m["from"], m["to"]) for m in history] == [(1, 2)]
    con = sqlite3.connect(path)
    assert con.execute("SELECT version FROM hnnfit_schema").fetchone() == (SCHEMA_VERSION,)
    cols = [r[1] for r in con.execute("PRAGMA table_info(evaluations)")]
    assert "pid_start" in cols and "boot_id" in cols
    con.close()
    # a migrated file reopens as it is
    with StudyStorage.load(path) as st:
        assert st.schema_version == SCHEMA_VERSION
        assert len(json.loads(st.metadata["migrations"])) == 1


def test_migration_records_what_schema_1_left_to_guess(tmp_path):
    path = tmp_path / "old.sqlite"
    with _new(path) as st:
        ids = st.add_running([_point(0), _point(1)], stage="a", batch=0)
        for i in ids:
            st.finish(i, state=EvalState.COMPLETE, value=1.0)
        st.set_stage_schedule("b", "pipelined")
        (j,) = st.add_running([_point(2)], stage="b", batch=0)
        st.finish(j, state=EvalState.FAILED, error="x")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE hnnfit_schema SET version = 1")
        con.execute("ALTER TABLE evaluations DROP COLUMN pid_start")
        con.execute("ALTER TABLE evaluations DROP COLUMN boot_id")
    con.close()
    with StudyStorage.load(path, readonly=True) as st:
        # read as the migration will record it, without writing it
        assert st.stage_schedule("a") == "batches" and st.stage_seed_offset("a") == 0
        assert st.stage_schedule("b") == "pipelined"
        assert st.get_metadata("schedule[a]") == "batches"
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM metadata WHERE key = 'schedule[a]'"
                       ).fetchone() == (0,)
    con.close()
    with StudyStorage.load(path) as st:
        assert st.stage_schedule("a") == "batches"
        assert st.stage_schedule("b") == "pipelined"   # recorded ones are kept
        assert st.stage_seed_offset("b") == 0
        assert st.stage_schedule("c") is None
        assert [r.state for r in st.rows()] == [EvalState.COMPLETE] * 2 + [EvalState.FAILED]
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM metadata WHERE key = 'schedule[a]'"
                       ).fetchone() == ("batches",)
    con.close()


def test_a_file_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    _new(path).close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE hnnfit_schema SET version = ?", (SCHEMA_VERSION + 1,))
    con.close()
    for readonly in (False, True):
        with pytest.raises(StudyError, match=f"schema version {SCHEMA_VERSION + 1}, newer "
                                             f"than this hnnfit understands"):
            StudyStorage.load(path, readonly=readonly)
    assert not lock_path(path).exists()


@pytest.mark.parametrize("name,n_evals,kwargs", [
    ("v1_bayesian", 8, {}),
    ("v1_staged", 8, {"stage_evals": {"evprox1": 2, "evdist1": 2}})])
def test_schema_1_file_resumes_to_the_same_points(tmp_path, name, n_evals, kwargs):
    from hnnfit.fit.study import Study

    path = _fixture_copy(tmp_path, name)
    with Study.load(path) as study:
        summary = study.optimize(n_evals, progress=False, **kwargs)
        assert summary.n_evaluated == 2
        rows = study.storage.rows()
    want = json.loads((FIXTURES / f"{name}_resumed{n_evals}.json").read_text())
    assert len(rows) == len(want) == n_evals
    for got, ref in zip(rows, want):
        assert (got.id, got.stage, got.batch, got.position, got.seeds) == \
            (ref["id"], ref["stage"], ref["batch"], ref["position"], ref["seeds"])
        assert got.state == ref["status"] == "complete"
        assert got.params == pytest.approx(ref["params"], rel=1e-9)
        assert got.value == pytest.approx(ref["value"], rel=1e-6)


# --------------------------------------------------------------------------- records
def test_rows_are_typed_records(tmp_path):
    with _new(tmp_path / "s.sqlite") as st:
        ids = st.add_running([_point(0), _point(1)], stage="s", batch=3, seeds=[4, 5],
                             n_trials=2)
        st.finish(ids[0], state=EvalState.COMPLETE, value=2.5, scale=7.0, info={"r": 1})
        st.finish(ids[1], state="failed", error="boom")
        first, second = st.rows()
        assert isinstance(first, Evaluation)
        assert (first.state, second.state) == (EvalState.COMPLETE, EvalState.FAILED)
        assert (first.stage, first.batch, first.position) == ("s", 3, 0)
        assert first.seeds == [4, 5]
        assert (first.value, first.scale, first.info, first.n_trials) == (2.5, 7.0,
                                                                         {"r": 1}, 2)
        assert first.pid == os.getpid() and first.host == socket.gethostname()
        assert second.error == "boom" and second.value is None
        with pytest.raises(AttributeError):
            first.value = 1.0   # frozen
        assert st.best() == first
        assert st.rows(state=EvalState.FAILED) == [second]
        assert st.counts() == {EvalState.RUNNING: 0, EvalState.COMPLETE: 1,
                               EvalState.FAILED: 1, EvalState.ABANDONED: 0}
        with pytest.raises(ValueError, match="state must be one of 'running', 'complete', "
                                             "'failed', 'abandoned', got 'done'"):
            st.rows(state="done")
        assert st.budget is None
        st.record_budget(12, 2, {"a": 3})
        assert st.budget == Budget(12, 2, {"a": 3})
        assert st.get_metadata("cli_n_evals") == "12"   # the key older files use
        st.set_stage_solver("a", {"name": "cma", "seed": 1})
        assert st.stage_solver("a") == '{"name":"cma","seed":1}'
        # an unstaged run's solver is the one the study was created with
        assert st.stage_solver("") == '{"name":"cobyla","seed":0}'
        assert st.stage_solver("b") is None


# --------------------------------------------------------------------------- read-only
def test_reading_a_crashed_study_never_writes(tmp_path):
    path = tmp_path / "crashed.sqlite"
    _crashed_study(path)
    before = _digests(tmp_path)
    assert {"crashed.sqlite", "crashed.sqlite-wal", "crashed.sqlite-shm",
            "crashed.sqlite.lock"} <= set(before)
    db_and_log = {k: before[k] for k in ("crashed.sqlite", "crashed.sqlite-wal")}
    with StudyStorage.load(path, readonly=True) as st:
        # the rows still in the log are read
        assert st.counts()["complete"] == 3 and st.counts()["running"] == 2
        assert st.running_elsewhere() == [] and st.running_driver() is None
        with pytest.raises(StudyError, match="opened read-only"):
            st.add_running([_point(9)])
        with pytest.raises(StudyError, match="opened read-only"):
            st.set_metadata("x", "y")
        # the connection itself cannot write (SQLite's mode=ro)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            st.conn.execute("DELETE FROM evaluations")
    list_studies(tmp_path)
    after = _digests(tmp_path)
    assert set(after) == set(before)
    assert {k: after[k] for k in db_and_log} == db_and_log
    # a writer then marks the rows abandoned
    with StudyStorage.load(path) as st:
        assert st.counts()["abandoned"] == 2


def test_reading_a_closed_study_leaves_no_file_beside_it(tmp_path):
    path = tmp_path / "s.sqlite"
    with _new(path) as st:
        (i,) = st.add_running([_point(0)])
        st.finish(i, state="complete", value=1.0)
    before = _digests(tmp_path)
    assert list(before) == ["s.sqlite"]
    with StudyStorage.load(path, readonly=True) as st:
        assert st.n_complete == 1
    scan_studies(tmp_path)
    assert _digests(tmp_path) == before


def test_read_only_storage_opens_for_reading(tmp_path):
    """A study in a folder its reader cannot write to (run as an unprivileged
    user when the tests run as root, where permission bits do not bind)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    _crashed_study(folder / "crashed.sqlite")
    os.remove(folder / "crashed.sqlite.lock")
    path = folder / "s.sqlite"
    with _new(path) as st:
        (i,) = st.add_running([_point(0)])
        st.finish(i, state="complete", value=1.5)
    before = _digests(folder)
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    tmp_path.chmod(0o755)
    code = textwrap.dedent(f"""
        from hnnfit.exceptions import StudyError
        from hnnfit.fit.storage import StudyStorage
        with StudyStorage.load({str(path)!r}, readonly=True) as st:
            print(st.best_value)
        with StudyStorage.load({str(folder / 'crashed.sqlite')!r}, readonly=True) as st:
            print(st.counts()["complete"])
        try:
            StudyStorage.load({str(path)!r})
        except StudyError as err:
            print("refused:", err)
    """)
    argv = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        # permission bits do not bind root: read through a read-only bind mount
        # of the folder, in a mount namespace of the reader's own
        argv = ["unshare", "-m", "sh", "-c",
                'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && '
                'exec "$@"', str(folder)] + argv
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=env)
    finally:
        folder.chmod(0o755)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1.5"
    assert lines[1] == "3"   # the rows in the crashed driver's log are read
    assert lines[2].startswith("refused:") and "lock file" in lines[2], lines
    assert _digests(folder) == before


# --------------------------------------------------------------------------- listing
def test_list_studies_names_bad_files_and_lists_the_rest(tmp_path):
    good = tmp_path / "good.sqlite"
    with _new(good, description="fine") as st:
        ids = st.add_running([_point(0), _point(1)], batch=0)
        st.finish(ids[0], state="complete", value=2.0)
        st.finish(ids[1], state="complete", value=1.0)
        st.record_budget(4, 1)
    shutil.copy(good, tmp_path / "broken.sqlite")
    _corrupt(tmp_path / "broken.sqlite")
    (tmp_path / "notes.sqlite").write_text("not a database")
    plain = sqlite3.connect(tmp_path / "plain.sqlite")
    plain.execute("CREATE TABLE t (x)")
    plain.commit()
    plain.close()
    shutil.copy(FIXTURES / "v1_staged.sqlite", tmp_path / "old.sqlite")
    _crashed_study(tmp_path / "crashed.sqlite")
    before = _digests(tmp_path)
    df = list_studies(tmp_path).set_index("study")
    assert _digests(tmp_path) == before
    assert list(df.index) == ["broken.sqlite", "crashed.sqlite", "good.sqlite",
                              "notes.sqlite", "old.sqlite", "plain.sqlite"]
    assert df.loc["good.sqlite", "state"] == "stopped"
    assert (df.loc["good.sqlite", "evaluations"], df.loc["good.sqlite", "budget"]) == (2, 4)
    assert df.loc["good.sqlite", "best_value"] == 1.0
    assert df.loc["good.sqlite", "description"] == "fine"
    assert (df.loc["crashed.sqlite", "state"], df.loc["crashed.sqlite", "stale"]) == \
        ("interrupted", 2)
    assert df.loc["old.sqlite", "state"] == "done"
    assert df.loc["old.sqlite", "stage"] == "final"
    assert df.loc["old.sqlite", "best_value"] == pytest.approx(9.491795224973115)
    for bad in ("broken.sqlite", "notes.sqlite", "plain.sqlite"):
        assert df.loc[bad, "state"] == "not a study"
        assert "\n" not in df.loc[bad, "error"]
    assert "damaged" in df.loc["broken.sqlite", "error"]
    assert "not an hnnfit study file" in df.loc["notes.sqlite", "error"]
    assert "not an hnnfit study file" in df.loc["plain.sqlite", "error"]
    with pytest.raises(ValueError, match="folder must be an existing folder"):
        list_studies(tmp_path / "missing")


def test_list_studies_never_unpickles_the_network(tmp_path):
    # a network blob no one can unpickle does not matter to the listing
    with _new(tmp_path / "s.sqlite") as st:
        st.set_metadata("network", b"\x80\x05cno_such_module\nthing\n.")
    (rec,) = scan_studies(tmp_path)
    assert rec["state"] == "empty" and rec["error"] is None


# --------------------------------------------------------------------------- the lock
def _open_for_writing(path, barrier, release, queue):
    barrier.wait()
    try:
        st = StudyStorage.load(path)
    except StudyError as err:
        queue.put(("refused", str(err)))
        return
    queue.put(("opened", os.getpid()))
    # hold the study until the other one has tried
    release.wait(60)
    st.close()


def test_one_driver_at_a_time(tmp_path):
    path = tmp_path / "s.sqlite"
    _new(path).close()
    ctx = multiprocessing.get_context("fork")
    host = socket.gethostname()
    for _ in range(20):
        barrier, release, queue = ctx.Barrier(2), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_for_writing,
                             args=(path, barrier, release, queue)) for _ in range(2)]
        for p in procs:
            p.start()
        try:
            results = sorted([queue.get(timeout=60), queue.get(timeout=60)])
        finally:
            release.set()
            for p in procs:
                p.join(timeout=60)
        assert [r[0] for r in results] == ["opened", "refused"], results
        winner, message = results[0][1], results[1][1]
        assert f"is being run by pid {winner} on host {host}" in message
        assert "only one driver" in message and "\n" not in message
        assert [p.exitcode for p in procs] == [0, 0]
        assert not lock_path(path).exists()


def test_the_lock_is_per_study_and_reentrant_in_one_process(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with _new(a), _new(b):
        assert lock_path(a).exists() and lock_path(b).exists()
        holder = json.loads(lock_path(a).read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        assert holder["start"] == _start_ticks(os.getpid())
        with StudyStorage.load(a) as again:   # the same process may reopen it
            assert again.counts()["running"] == 0
        assert lock_path(a).exists()
    assert not lock_path(a).exists() and not lock_path(b).exists()
    # reopening through create(exist_ok=True) holds it once, until close
    with _new(a, exist_ok=True):
        assert lock_path(a).exists()
    assert not lock_path(a).exists()


def test_a_killed_driver_leaves_no_lock_behind(tmp_path):
    path = tmp_path / "s.sqlite"
    _crashed_study(path)
    holder = json.loads(lock_path(path).read_text())
    assert holder["pid"] != os.getpid()
    # the kernel dropped the dead driver's lock: the next one opens
    with StudyStorage.load(path) as st:
        assert st.counts() == {"running": 0, "complete": 3, "failed": 0, "abandoned": 2}
        assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()


# --------------------------------------------------------------------------- liveness
def test_a_reused_pid_does_not_hold_a_study(tmp_path):
    path = tmp_path / "s.sqlite"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with _new(path) as st:
            ids = st.add_running([_point(i) for i in range(4)], batch=0)
            con = st.conn
            start = _start_ticks(sleeper.pid)
            # a live process with its own start time: still running
            con.execute("UPDATE evaluations SET pid=?, pid_start=? WHERE id=?",
                        (sleeper.pid, start, ids[0]))
            # the same pid recorded with another start time: a process that
            # had the pid before
            con.execute("UPDATE evaluations SET pid=?, pid_start=? WHERE id=?",
                        (sleeper.pid, start + 1, ids[1]))
            # this very process's pid from an earlier process
            con.execute("UPDATE evaluations SET pid_start=? WHERE id=?",
                        (_start_ticks(os.getpid()) + 7, ids[2]))
            # a boot before this one
            con.execute("UPDATE evaluations SET pid=?, pid_start=?, boot_id=? WHERE id=?",
                        (sleeper.pid, start, "0" * 32, ids[3]))
        with StudyStorage.load(path, readonly=True) as st:
            assert st.running_elsewhere() == [ids[0]]
            assert st.running_driver().pid == sleeper.pid
        with StudyStorage.load(path) as st:
            state = {r.id: r.state for r in st.rows()}
            assert state == {ids[0]: "running", ids[1]: "abandoned", ids[2]: "abandoned",
                             ids[3]: "abandoned"}
            assert st.running_elsewhere() == [ids[0]]
        # a lock file left by a process whose pid was reused names no driver
        lock_path(path).write_text(json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(),
            "start": _start_ticks(os.getpid()) + 3, "boot_id": None, "since": 0.0}))
        with StudyStorage.load(path, readonly=True) as st:
            assert st.running_driver().pid == sleeper.pid   # from its live row only
        # take_over: what a live-looking process left running is redone
        with StudyStorage.load(path, take_over=True) as st:
            assert st.counts() == {"running": 0, "complete": 0, "failed": 0,
                                   "abandoned": 4}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_take_over_breaks_a_held_lock(tmp_path):
    path = tmp_path / "s.sqlite"
    _new(path).close()
    code = textwrap.dedent(f"""
        import sys, time
        from hnnfit.fit.storage import StudyStorage
        st = StudyStorage.load({str(path)!r})
        st.add_running([{{"evprox1.mu": 12.0, "evprox1.numspikes": 1}}])
        print("holding", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StudyError, match=f"being run by pid {holder.pid} on host"):
            StudyStorage.load(path)
        with pytest.raises(ValueError, match="take_over is for opening a study to write"):
            StudyStorage.load(path, readonly=True, take_over=True)
        with StudyStorage.load(path, take_over=True) as st:
            assert st.counts()["abandoned"] == 1
            assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- errors
def _corrupt(path):
    """Overwrite the pages in the middle of a study file with garbage."""
    size = path.stat().st_size
    page = 4096
    assert size >= 4 * page
    with open(path, "r+b") as fh:
        fh.seek(page)
        fh.write(bytes(range(256)) * (16 * (size // page - 2)))


def test_damaged_file_gives_a_one_line_io_error(tmp_path):
    path = tmp_path / "s.sqlite"
    with _new(path) as st:
        ids = st.add_running([_point(i) for i in range(50)], batch=0)
        for i in ids:
            st.finish(i, state="complete", value=float(i), info={"pad": "x" * 400})
    _corrupt(path)
    for readonly in (True, False):
        with pytest.raises(StudyIOError) as err:
            with StudyStorage.load(path, readonly=readonly) as st:
                st.rows()
        text = str(err.value)
        assert "\n" not in text and str(path) in text
        assert "is damaged (database disk image is malformed)" in text
        assert "backup copy" in text
    assert not lock_path(path).exists()


def test_full_disk_gives_an_io_error_and_keeps_the_file(tmp_path):
    path = tmp_path / "s.sqlite"
    with _new(path) as st:
        (i,) = st.add_running([_point(0)])
        st.finish(i, state="complete", value=3.0)
        pages = st.conn.execute("PRAGMA page_count").fetchone()[0]
        # the database may not grow: what a full disk does to SQLite
        st.conn.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(StudyIOError) as err:
            st.add_running([{"evprox1.mu": 10.0 + k, "evprox1.numspikes": 1,
                             "pad": "x" * 4000} for k in range(20)])
        text = str(err.value)
        assert "\n" not in text and "full" in text and "resume" in text
        assert isinstance(err.value, StudyError)
        # the failed batch left nothing behind, the study goes on
        assert st.counts()["running"] == 0 and st.n_complete == 1
    with StudyStorage.load(path) as st:
        assert st.integrity_check() == "ok"
        assert [(r.value, r.state) for r in st.rows()] == [(3.0, "complete")]


def test_unusable_paths_give_one_line_study_errors(tmp_path):
    with pytest.raises(StudyError) as err:
        _new("/proc/s.sqlite")
    assert "\n" not in str(err.value) and "/proc/s.sqlite" in str(err.value)
    with pytest.raises(ValueError, match="existing study file"):
        StudyStorage.load(tmp_path / "missing.sqlite")
    with pytest.raises(ValueError, match="path must be a study file, got the folder"):
        _new(tmp_path)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 300)
    for readonly in (True, False):
        with pytest.raises(StudyError, match="not an hnnfit study file"):
            StudyStorage.load(tmp_path / "junk.sqlite", readonly=readonly)


def _try_to_open(path, queue):
    try:
        StudyStorage.load(path).close()
        queue.put("opened")
    except StudyError as err:
        queue.put(str(err))


def test_a_forked_child_does_not_share_its_parent_s_hold(tmp_path):
    path = tmp_path / "s.sqlite"
    ctx = multiprocessing.get_context("fork")
    with _new(path):
        queue = ctx.Queue()
        child = ctx.Process(target=_try_to_open, args=(path, queue))
        child.start()
        message = queue.get(timeout=60)
        child.join(timeout=60)
    assert f"being run by pid {os.getpid()}" in message
    assert not lock_path(path).exists()


def _drive(path, barrier, queue):
    from hnnfit.fit.optimize import run_optimization
    from hnnfit.fit.solvers import make_solver

    def objective(params, seeds):
        return (params["evprox1.mu"] - 21.0) ** 2 + params["evprox1.numspikes"]

    barrier.wait()
    try:
        with StudyStorage.load(path) as st:
            run_optimization(st, make_solver("cobyla", SPACE, seed=0), objective, 8)
    except StudyError as err:
        queue.put(("refused", str(err)))
        return
    queue.put(("ran", os.getpid()))


def test_two_drivers_started_at_once_never_duplicate_an_evaluation(tmp_path):
    from hnnfit.fit.solvers import make_solver

    ctx = multiprocessing.get_context("fork")
    for k in range(5):
        path = tmp_path / f"s{k}.sqlite"
        settings = make_solver("cobyla", SPACE, seed=0).settings()
        StudyStorage.create(path, target=_target(), space=SPACE, solver=settings).close()
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_drive, args=(path, barrier, queue)) for _ in range(2)]
        for p in procs:
            p.start()
        results = sorted([queue.get(timeout=120), queue.get(timeout=120)])
        for p in procs:
            p.join(timeout=60)
        outcomes = [r[0] for r in results]
        # the loser is refused, or started after the winner was done
        assert outcomes in (["ran", "refused"], ["ran", "ran"]), results
        if outcomes[1] == "refused":
            assert "only one driver may write a study" in results[1][1]
        with StudyStorage.load(path, readonly=True) as st:
            rows = st.rows()
            assert len(rows) == 8 and st.counts()["complete"] == 8
            assert len({(r.batch, r.position) for r in rows}) == 8
