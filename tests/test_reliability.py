"""What a study survives: concurrent drivers, reused pids, SIGKILL at any
moment, reading commands, old files, bad paths, a full disk, a corrupt file.

Every test drives the ``hnnfit`` command in its own processes, as a user or
a batch scheduler would, on a 3x3 network simulated for 30 ms (about a
second per evaluation).
"""
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hnnfit
from hnnfit import cli
from hnnfit.fit.study import Study

ROOT = Path(hnnfit.__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TSTOP = 30.0
CLI = [sys.executable, "-c", "import sys; from hnnfit.cli import main; sys.exit(main())"]
# a driver that imports hnnfit, says so, and starts when told to (on stdin)
AT_ONCE = ("import sys\n"
           "from hnnfit.cli import main\n"
           "print('ready', flush=True)\n"
           "sys.stdin.readline()\n"
           "sys.exit(main(sys.argv[1:]))")

CONFIG = """\
[network]
params = "default.json"
mesh_shape = [3, 3]

[target]
file = "target.txt"
tmin = 0.0
tmax = {tstop}
columns = ["agg"]

[objective]
n_trials = 1
seeds = [0]
smooth_window = 10.0
scale = 3000.0
metric = "rmse"

[space]
"evprox1.mu" = [20.0, 35.0]
"evprox1.sigma" = {{ low = 1.0, high = 6.0, log = true }}

[solver]
name = "bayesian"
seed = 0
options = {{ n_initial_points = 2 }}

[run]
n_evals = 3
n_jobs = 1
"""


def env():
    e = dict(os.environ, MPLBACKEND="Agg")
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH")) if p)
    return e


def hnnfit_cmd(*args, timeout=900, **kwargs):
    """Run ``hnnfit ARGS`` in a new process; return the CompletedProcess."""
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          env=env(), timeout=timeout, **kwargs)


def start_fit(*args, **kwargs):
    """Start ``hnnfit ARGS`` in a process group of its own (a batch job)."""
    return subprocess.Popen(CLI + [str(a) for a in args], env=env(),
                            start_new_session=True, **kwargs)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def study_files(path):
    """The study and every file beside it that belongs to it."""
    path = Path(path)
    return [path] + [path.with_name(path.name + tail) for tail in ("-wal", "-shm", ".lock")]


def digests(path):
    return {p.name: digest(p) for p in study_files(path) if p.exists()}


def rows_of(path):
    """Every row of a study as the file holds it, read from a copy.

    A copy of the file and its write-ahead log is opened, so that the rows
    a killed driver committed are read without touching its files.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".read")
    tmp.mkdir(exist_ok=True)
    try:
        for src in (path, path.with_name(path.name + "-wal")):
            if src.exists():
                shutil.copy(src, tmp / src.name.replace(path.name, "s.sqlite"))
        conn = sqlite3.connect(tmp / "s.sqlite")
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(
                "SELECT id, stage, batch, position, params, value, status "
                "FROM evaluations ORDER BY id")]
        except sqlite3.OperationalError as err:
            # killed before the creation of its tables was committed
            assert "no such table" in str(err)
            return []
        finally:
            conn.close()
    finally:
        shutil.rmtree(tmp)


def complete(rows):
    return [r for r in rows if r["status"] == "complete"]


def check_no_duplicates(rows):
    """No two live (complete, failed or running) evaluations of one slot or point."""
    live = [r for r in rows if r["status"] != "abandoned"]
    slots = [(r["stage"], r["batch"], r["position"]) for r in live]
    points = [r["params"] for r in live]
    assert len(set(slots)) == len(slots), slots
    assert len(set(points)) == len(points), points


def process_start(pid):
    """Start time of process ``pid`` (field 22 of /proc/PID/stat, clock ticks)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[19])


def boot_id():
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def one_error_line(proc):
    """The single ``hnnfit: error:`` line of a failed command."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("hnnfit: error:")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0]), proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A simulated 3x3 target, a config fitting it, and a 3-evaluation study."""
    root = tmp_path_factory.mktemp("reliability")
    r = hnnfit_cmd("simulate", "default.json", "--out", root / "target.txt", "--tstop",
                   TSTOP, "--mesh", 3, 3, "--smooth", 10, "--scale", 3000)
    assert r.returncode == 0, r.stderr
    config = root / "small.toml"
    config.write_text(CONFIG.format(tstop=TSTOP))
    study = root / "small.sqlite"
    r = hnnfit_cmd("fit", config, "--study", study, cwd=root)
    assert r.returncode == 0, r.stderr
    return {"root": root, "config": config, "study": study}


@pytest.fixture
def study_copy(small, tmp_path):
    path = tmp_path / "studies" / "s.sqlite"
    path.parent.mkdir()
    shutil.copy(small["study"], path)
    return path


# --------------------------------------------------------------------------
# one driver at a time
# --------------------------------------------------------------------------
def test_two_drivers_started_at_once(study_copy):
    """Two ``resume`` commands started at the same instant, 20 times: one
    runs, the other is refused at opening and names the one that runs."""
    n = len(rows_of(study_copy))
    for rep in range(20):
        budget = n + rep + 1
        procs = [subprocess.Popen([sys.executable, "-c", AT_ONCE, "resume",
                                   str(study_copy), "--n-evals", str(budget)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env())
                 for _ in range(2)]
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=900) for p in procs]
        statuses = [p.returncode for p in procs]
        assert sorted(statuses) == [0, 2], (rep, statuses, outs)
        winner = procs[statuses.index(0)]
        loser = statuses.index(2)
        line = one_error_line(subprocess.CompletedProcess(
            [], 2, stdout=outs[loser][0], stderr=outs[loser][1]))
        assert f"is being run by pid {winner.pid} on host {socket.gethostname()}" in line
        assert "only one driver may write a study at a time" in line
        rows = rows_of(study_copy)
        # exactly the budget: no evaluation above it, none running or redone
        assert len(rows) == budget and len(complete(rows)) == budget, rep
        check_no_duplicates(rows)
    assert not Path(f"{study_copy}.lock").exists()


def test_reused_pid_is_not_a_live_driver(study_copy):
    """A running row and a lock file naming a live process by its pid but
    with another start time (the pid was reused) do not lock the study."""
    with Study.load(study_copy) as study:
        (row,) = study.storage.add_running([{"evprox1.mu": 30.0, "evprox1.sigma": 2.0}])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    holder = None
    try:
        wrong = process_start(sleeper.pid) + 1000
        conn = sqlite3.connect(study_copy)
        conn.execute("UPDATE evaluations SET pid = ?, pid_start = ? WHERE id = ?",
                     (sleeper.pid, wrong, row))
        conn.commit()
        conn.close()
        lock = Path(f"{study_copy}.lock")
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid,
                                    "start": wrong, "boot_id": boot_id(),
                                    "since": time.time()}))
        before = digests(study_copy)
        r = hnnfit_cmd("list", study_copy.parent, "--json")
        assert r.returncode == 0, r.stderr
        (rec,) = json.loads(r.stdout)
        assert (rec["state"], rec["pid"], rec["stale"], rec["running"]) == \
            ("interrupted", None, 1, 0)
        r = hnnfit_cmd("list", study_copy.parent)
        assert r.returncode == 0 and r.stdout.splitlines()[2].split()[:2] == \
            ["s.sqlite", "interrupted"], r.stdout
        assert digests(study_copy) == before
        # resume redoes the evaluation left running and goes on
        r = hnnfit_cmd("resume", study_copy, "--n-evals", 4)
        assert r.returncode == 0, r.stderr
        rows = rows_of(study_copy)
        assert [r["status"] for r in rows].count("abandoned") == 1
        assert len(complete(rows)) == 4
        check_no_duplicates(rows)
        assert sleeper.poll() is None

        # a lock really held by a process this host takes to be alive (say,
        # a driver whose node hangs): refused, unless taken over
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, json, os, socket, sys, time\n"
             "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\n"
             "os.write(fd, json.dumps({'host': socket.gethostname(),"
             " 'pid': os.getpid()}).encode())\n"
             "print('held', flush=True)\n"
             "time.sleep(300)\n", str(lock)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        before = digests(study_copy)
        r = hnnfit_cmd("resume", study_copy, "--n-evals", 5)
        assert r.returncode == 2
        line = one_error_line(r)
        assert f"being run by pid {holder.pid} on host {socket.gethostname()}" in line
        assert digests(study_copy) == before
        r = hnnfit_cmd("resume", study_copy, "--n-evals", 5, "--take-over")
        assert r.returncode == 0, r.stderr
        rows = rows_of(study_copy)
        assert len(complete(rows)) == 5
        check_no_duplicates(rows)
    finally:
        for proc in (sleeper, holder):
            if proc is not None:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------
# SIGKILL at any moment
# --------------------------------------------------------------------------
def test_sigkill_of_the_process_group_loses_nothing(small, tmp_path):
    """Five SIGKILLs of ``hnnfit fit``'s process group at random moments,
    each followed by a resume: nothing lost, nothing duplicated, the points
    of an uninterrupted run, bit for bit."""
    config = small["config"]
    ref = tmp_path / "ref.sqlite"
    t0 = time.monotonic()
    r = hnnfit_cmd("fit", config, "--study", ref, "--n-evals", 8, cwd=small["root"])
    assert r.returncode == 0, r.stderr
    t_ref = time.monotonic() - t0
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    killed = tmp_path / "killed.sqlite"
    budget, kills, kept = 8, 0, {}
    while kills < 5:
        proc = start_fit("fit", config, "--study", killed, "--n-evals", budget,
                         cwd=small["root"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(0.05, 0.7) * t_ref)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            kills += 1
        else:
            assert proc.returncode == 0, (seed, proc.returncode)
            budget += 4   # it ran to the end before its kill: give it more to do
        rows = rows_of(killed) if killed.exists() and killed.stat().st_size else []
        now = {r["id"]: r for r in complete(rows)}
        # every evaluation completed before this kill is still there, unchanged
        assert all(now.get(i) == r for i, r in kept.items()), seed
        check_no_duplicates(rows)
        kept = now
    r = hnnfit_cmd("resume", killed, "--n-evals", budget)
    assert r.returncode == 0, (seed, r.stderr)
    if budget > 8:
        ref = tmp_path / "ref_longer.sqlite"
        r = hnnfit_cmd("fit", config, "--study", ref, "--n-evals", budget,
                       cwd=small["root"])
        assert r.returncode == 0, r.stderr
    rows = rows_of(killed)
    check_no_duplicates(rows)
    assert all(r["status"] in ("complete", "abandoned") for r in rows)
    assert all(r in rows for r in kept.values())

    def points(rows):
        done = sorted(complete(rows), key=lambda r: (r["batch"], r["position"]))
        return [(r["batch"], r["position"], r["params"], r["value"]) for r in done]

    # the same points (their JSON text, so every bit of each float) and values
    assert points(rows) == points(rows_of(ref)), seed
    assert len(points(rows)) == budget


@pytest.fixture
def crashed(small, tmp_path):
    """A study whose driver was SIGKILLed during an evaluation."""
    path = tmp_path / "studies" / "crashed.sqlite"
    path.parent.mkdir()
    proc = start_fit("fit", small["config"], "--study", path, "--n-evals", 6,
                     cwd=small["root"], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        # killed as soon as the second evaluation is recorded as running
        while proc.poll() is None:
            if path.exists() and path.stat().st_size and \
                    [r["status"] for r in rows_of(path)] == ["complete", "running"]:
                break
            time.sleep(0.01)
    finally:
        kill_group(proc)
    rows = rows_of(path)
    assert [r["status"] for r in rows] == ["complete", "running"]
    for p in study_files(path):
        assert p.exists(), p
    return path


def test_reading_commands_leave_a_crashed_study_unchanged(crashed, tmp_path):
    before = digests(crashed)
    assert set(before) == {p.name for p in study_files(crashed)}
    commands = [["show", crashed], ["show", crashed, "--json"],
                ["list", crashed.parent], ["list", crashed.parent, "--json"],
                ["export", crashed, tmp_path / "best.json"],
                ["report", crashed, tmp_path / "report"]]
    for argv in commands:
        r = hnnfit_cmd(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert digests(crashed) == before, argv
    r = hnnfit_cmd("show", crashed, "--json")
    shown = json.loads(r.stdout)
    assert shown["counts"]["complete"] == 1
    r = hnnfit_cmd("list", crashed.parent, "--json")
    (rec,) = json.loads(r.stdout)
    assert (rec["state"], rec["stale"]) == ("interrupted", 1)
    assert json.loads((tmp_path / "best.json").read_text())
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == \
        ["convergence.png", "fit.png", "params.png"]


# --------------------------------------------------------------------------
# old files, bad paths, full disk, corrupt files, missing dask
# --------------------------------------------------------------------------
def test_schema1_study_shows_and_resumes(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(FIXTURES / "v1_bayesian.sqlite", path)
    before = digest(path)
    r = hnnfit_cmd("show", path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["complete"] == 6
    assert digest(path) == before and sorted(os.listdir(tmp_path)) == ["old.sqlite"]
    r = hnnfit_cmd("resume", path, "--n-evals", 8)
    assert r.returncode == 0, r.stderr
    expected = json.loads((FIXTURES / "v1_bayesian_resumed8.json").read_text())
    got = rows_of(path)
    assert len(got) == len(expected) == 8
    for row, want in zip(got, expected):
        assert (row["stage"], row["batch"], row["position"], row["status"]) == \
            (want["stage"], want["batch"], want["position"], want["status"])
        assert json.loads(row["params"]) == want["params"]
        assert row["value"] == pytest.approx(want["value"], rel=1e-9)


def test_export_never_overwrites_the_study(study_copy):
    before = digest(study_copy)
    for out in study_files(study_copy):
        r = hnnfit_cmd("export", study_copy, out)
        assert r.returncode == 2
        assert "OUT must not be the study file" in one_error_line(r)
        assert digest(study_copy) == before
    with Study.load(study_copy, readonly=True) as study:
        assert study.n_complete == 3


def test_resume_of_a_study_killed_while_created(small, tmp_path, capsys):
    path = tmp_path / "new.sqlite"
    path.write_bytes(b"")
    status = cli.main(["resume", str(path)])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.strip().splitlines() == [
        f"hnnfit: error: study file '{path}' is empty: the run that created it stopped "
        f"before recording anything; create the study again with: hnnfit fit CONFIG "
        f"--study {path}"]


def _limit_file_size(limit):
    def preexec():
        # a write past the limit fails (EFBIG) like one on a full disk;
        # ignored, SIGXFSZ does not kill the process first
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_full_disk_exits_74_and_keeps_the_study(study_copy):
    before = rows_of(study_copy)
    proc = subprocess.run(CLI + ["resume", str(study_copy), "--n-evals", "30"],
                          capture_output=True, text=True, env=env(), timeout=900,
                          preexec_fn=_limit_file_size(48 * 1024))
    assert proc.returncode == 74, proc.stderr
    line = one_error_line(proc)
    assert f"study {str(study_copy)!r}" in line
    # what it recorded is kept; the study opens and resumes
    rows = rows_of(study_copy)
    assert all(r in rows for r in before) and len(complete(rows)) < 30
    r = hnnfit_cmd("show", study_copy, "--json")
    assert r.returncode == 0, r.stderr
    n = len(complete(rows))
    r = hnnfit_cmd("resume", study_copy, "--n-evals", n + 1)
    assert r.returncode == 0, r.stderr
    assert len(complete(rows_of(study_copy))) == n + 1


def test_a_corrupt_study_among_others(small, tmp_path):
    folder = tmp_path / "studies"
    folder.mkdir()
    shutil.copy(small["study"], folder / "good.sqlite")
    data = bytearray(small["study"].read_bytes())
    for i in range(8192, len(data), 97):
        data[i] = (data[i] + 77) % 256
    (folder / "bad.sqlite").write_bytes(data)
    r = hnnfit_cmd("list", folder)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"1 study in {folder}:"
    assert lines[2].split()[:3] == ["good.sqlite", "done", "3/3"]
    assert lines[3].startswith("not a study: bad.sqlite (study file ")
    assert "is damaged (database disk image is malformed)" in lines[3]
    r = hnnfit_cmd("show", folder / "bad.sqlite")
    assert r.returncode == 74
    assert "is damaged (database disk image is malformed)" in one_error_line(r)
    junk = folder / "junk.sqlite"
    junk.write_bytes(b"not a database" * 100)
    r = hnnfit_cmd("show", junk)
    assert r.returncode == 2
    assert "is not an hnnfit study file" in one_error_line(r)


def test_dask_backend_missing_fails_before_recording_a_budget(study_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with Study.load(study_copy) as study:
        budget = study.storage.budget
        with pytest.raises(ImportError, match="backend='dask' needs dask.distributed"):
            study.optimize(5, n_jobs=2, backend="dask", progress=False)
        assert study.storage.budget == budget and study.n_complete == 3


def test_kill_resume_bench_quick(tmp_path):
    """The measurement behind the guarantees page, with a few kills: nothing
    lost or duplicated, the uninterrupted run's points, and no worker left
    5 s after its driver alone was killed."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "kill_resume.py"), "--quick",
                        "--grace", "5", "--workdir", tmp_path], capture_output=True,
                       text=True, env=env(), timeout=1200)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[:4] == ["kill", "kills", "lost", "duplicated"]
    summary = json.loads(lines[-1])
    group, driver = summary["group"], summary["driver"]
    assert group["kills"] == 3 and driver["kills"] == 1
    for tally in (group, driver):
        assert (tally["lost"], tally["duplicated"]) == (0, 0)
        assert tally["same_points"] == tally["studies"] >= 1
    # the workers of a driver killed alone are gone within seconds
    assert driver["workers_left"] == [0]
