"""SIGKILL a small fit at random moments, resume it, and count what was lost.

A 3x3 network (30 ms) is fitted by ``hnnfit fit`` (Bayesian optimisation,
``--n-evals`` evaluations on ``--n-jobs`` worker processes), once without
interruption and then under two kinds of kill:

* **process group**: ``SIGKILL`` of the fit's whole process group (what a
  batch scheduler or a node failure does) at a random moment between 0 and
  the uninterrupted run's duration: during the creation of the study, its
  opening, the replay of its log or an evaluation. The fit is started again
  (``hnnfit fit`` resumes an existing study) until it reaches its budget;
  then a new study is started, until ``--kills`` kills are done.
* **driver alone**: ``SIGKILL`` of the driving process only (what the
  kernel's out-of-memory killer does) during its evaluations; the worker
  processes it leaves are counted ``--grace`` seconds later, then the fit
  is resumed.

After each kill the study's rows are read from a copy of its files:

* **lost**: evaluations the killed run had reported done (its progress
  line) or that the file held before, and that are missing or changed;
* **duplicated**: two live evaluations of the same solver slot (batch,
  position) or of the same point;
* **same points**: every study finished under kills holds exactly the
  uninterrupted run's evaluations (points compared as stored, so bit for
  bit, and values).

Usage::

    python bench/kill_resume.py --kills 30 --driver-kills 10
    python bench/kill_resume.py --quick      # a few kills, for the tests

Prints a table.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-c", "import sys; from hnnfit.cli import main; sys.exit(main())"]
TSTOP = 30.0
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
"evdist1.mu" = [50.0, 70.0]

[solver]
name = "bayesian"
seed = 0
options = {{ n_initial_points = 4 }}

[run]
n_evals = {n_evals}
n_jobs = {n_jobs}
"""
PROGRESS = re.compile(r"\] (\d+)/\d+ eval")


def _env():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH"))
                                        if p)
    return env


def _hnnfit(args, cwd, **kwargs):
    return subprocess.run(CLI + [str(a) for a in args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, **kwargs)


def _start(args, cwd, log):
    """``hnnfit ARGS`` in a process group of its own, its stderr to ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen(CLI + [str(a) for a in args], cwd=cwd, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=fh,
                                start_new_session=True)


def rows_of(path):
    """The study's rows, read from a copy of the file and its log (so that
    the killed driver's files stay as it left them)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        for tail in ("", "-wal"):
            src = Path(f"{path}{tail}")
            if src.exists():
                shutil.copy(src, Path(tmp, f"s.sqlite{tail}"))
        conn = sqlite3.connect(Path(tmp, "s.sqlite"))
        try:
            return [dict(zip(("id", "stage", "batch", "position", "params", "value",
                              "status"), r)) for r in conn.execute(
                "SELECT id, stage, batch, position, params, value, status "
                "FROM evaluations ORDER BY id")]
        except sqlite3.OperationalError:
            return []   # killed before its tables were committed
        finally:
            conn.close()


def finished(rows):
    return {r["id"]: r for r in rows if r["status"] in ("complete", "failed")}


def duplicates(rows):
    live = [r for r in rows if r["status"] != "abandoned"]
    slots = [(r["stage"], r["batch"], r["position"]) for r in live]
    points = [(r["stage"], r["params"]) for r in live]
    return (len(slots) - len(set(slots))) + (len(points) - len(set(points)))


def points(rows):
    done = sorted((r for r in rows if r["status"] == "complete"),
                  key=lambda r: (r["batch"], r["position"]))
    return [(r["batch"], r["position"], r["params"], r["value"]) for r in done]


def reported_done(log):
    """The evaluations the run's last progress line reported as recorded."""
    found = PROGRESS.findall(Path(log).read_text(errors="replace"))
    return int(found[-1]) if found else 0


def group_members(pgid):
    """Pids of the live processes of process group ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        # a zombie is dead already, waiting for its parent to read its status
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Tally:
    def __init__(self):
        self.kills = self.lost = self.duplicated = self.studies = self.same = 0
        self.workers_left = []
        self.gone_after = []
        self.early = self.in_flight = 0   # kills before any row; with rows running

    def check(self, study, before, log=None):
        """Count what a kill lost or duplicated; return the rows now held."""
        rows = rows_of(study)
        now = finished(rows)
        self.lost += sum(1 for i, r in before.items() if now.get(i) != r)
        if log is not None:   # right after a kill
            self.lost += max(0, reported_done(log) - len(now))
            self.early += not rows
            self.in_flight += any(r["status"] == "running" for r in rows)
        self.duplicated += duplicates(rows)
        return now


def setup(work, n_evals, n_jobs):
    r = _hnnfit(["simulate", "default.json", "--out", "target.txt", "--tstop", TSTOP,
                 "--mesh", 3, 3, "--smooth", 10, "--scale", 3000], work)
    if r.returncode:
        sys.exit(f"simulating the target failed:\n{r.stderr}")
    config = work / "fit.toml"
    config.write_text(CONFIG.format(tstop=TSTOP, n_evals=n_evals, n_jobs=n_jobs))
    return config


def uninterrupted(work, config):
    t0 = time.monotonic()
    r = _hnnfit(["fit", config, "--study", "ref.sqlite"], work)
    if r.returncode:
        sys.exit(f"the uninterrupted fit failed:\n{r.stderr}")
    return time.monotonic() - t0, points(rows_of(work / "ref.sqlite"))


def group_kills(work, config, n_kills, t_ref, ref, rng, tally):
    """Kill whole process groups at random moments; resume until each study ends."""
    kills, k = 0, 0
    while kills < n_kills:
        study, kept = work / f"group{k}.sqlite", {}
        k += 1
        while True:
            log = work / "run.log"
            proc = _start(["fit", config, "--study", study], work, log)
            try:
                proc.wait(timeout=rng.uniform(0.0, t_ref))
            except subprocess.TimeoutExpired:
                kill_group(proc.pid)
                proc.wait()
                kills += 1
                kept = tally.check(study, kept, log)
                if kills < n_kills:
                    continue
                # the last kill: run the study to its end (a study killed
                # while it was created is created again)
                r = _hnnfit(["fit", config, "--study", study], work)
                if r.returncode:
                    sys.exit(f"resume failed:\n{r.stderr}")
            if proc.returncode not in (None, -signal.SIGKILL, 0):
                sys.exit(f"the fit failed (exit {proc.returncode}):\n{log.read_text()}")
            tally.check(study, kept)
            tally.studies += 1
            tally.same += points(rows_of(study)) == ref
            break
    tally.kills = kills


def driver_kills(work, config, n_kills, n_evals, ref, rng, grace, tally):
    """Kill the driver alone while its workers evaluate; count the workers left."""
    study, kept = work / "driver.sqlite", {}
    while tally.kills < n_kills:
        log = work / "run.log"
        proc = _start(["fit", config, "--study", study], work, log)
        # until an evaluation is in flight, so that the workers run
        while proc.poll() is None and not any(r["status"] == "running"
                                               for r in rows_of(study)):
            time.sleep(0.05)
        if proc.poll() is not None:
            break   # ended first: the budget is reached
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tally.kills += 1
        t_kill = time.monotonic()
        while group_members(proc.pid) and time.monotonic() < t_kill + grace:
            time.sleep(0.1)
        tally.workers_left.append(len(group_members(proc.pid)))
        # how long the last of them takes to go (given up after a minute)
        while group_members(proc.pid) and time.monotonic() < t_kill + 60.0:
            time.sleep(0.1)
        tally.gone_after.append(None if group_members(proc.pid) else
                                time.monotonic() - t_kill)
        kill_group(proc.pid)   # whatever is left, before the study is resumed
        kept = tally.check(study, kept, log)
    r = _hnnfit(["resume", study, "--n-evals", n_evals], work)
    if r.returncode:
        sys.exit(f"resume failed:\n{r.stderr}")
    tally.check(study, kept)
    tally.studies += 1
    tally.same += points(rows_of(study)) == ref


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=30,
                        help="process-group kills (default 30)")
    parser.add_argument("--driver-kills", type=int, default=10,
                        help="kills of the driver alone (default 10)")
    parser.add_argument("--n-evals", type=int, default=12,
                        help="evaluations of each fit (default 12)")
    parser.add_argument("--n-jobs", type=int, default=2,
                        help="worker processes of each fit (default 2)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds given to a killed driver's workers to exit "
                        "(default 10)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the kill moments (default: random, printed)")
    parser.add_argument("--quick", action="store_true",
                        help="3 group kills, 1 driver kill, 6 evaluations")
    parser.add_argument("--workdir", help="folder for the studies (default: a "
                        "temporary one, removed after)")
    args = parser.parse_args(argv)
    if args.quick:
        args.kills, args.driver_kills, args.n_evals = 3, 1, 6
    seed = random.randrange(10**6) if args.seed is None else args.seed
    rng = random.Random(seed)
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory()
        work = Path(tmp.name)
    else:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        config = setup(work, args.n_evals, args.n_jobs)
        t_ref, ref = uninterrupted(work, config)
        group, driver = Tally(), Tally()
        group_kills(work, config, args.kills, t_ref, ref, rng, group)
        driver_kills(work, config, args.driver_kills, args.n_evals, ref, rng,
                     args.grace, driver)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"3x3 network, {TSTOP:g} ms, Bayesian, {args.n_evals} evaluations, "
          f"{args.n_jobs} jobs; uninterrupted run {t_ref:.1f} s; seed {seed}")
    header = ("kill", "kills", "lost", "duplicated", "same points",
              f"kills leaving workers after {args.grace:g} s", "all gone after")
    rows = []
    for name, t in (("process group", group), ("driver alone", driver)):
        left, gone = "-", "-"
        if t.workers_left:
            n_left = sum(n > 0 for n in t.workers_left)
            left = f"{n_left} of {len(t.workers_left)}" + (
                f" (up to {max(t.workers_left)} processes)" if n_left else "")
            gone = ("over 60 s" if None in t.gone_after else
                    f"at most {max(t.gone_after):.1f} s")
        rows.append((name, t.kills, t.lost, t.duplicated,
                     f"{'yes' if t.same == t.studies else 'no'} "
                     f"({t.same}/{t.studies} studies)", left, gone))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    print(f"process-group kills: {group.early} before the study had a row, "
          f"{group.in_flight} with evaluations in flight, the others between "
          f"evaluations (opening, replay)")
    summary = {"seed": seed, "uninterrupted_s": round(t_ref, 2)}
    for name, t in (("group", group), ("driver", driver)):
        summary[name] = {"kills": t.kills, "lost": t.lost, "duplicated": t.duplicated,
                         "early": t.early, "in_flight": t.in_flight,
                         "studies": t.studies, "same_points": t.same,
                         "workers_left": t.workers_left,
                         "gone_after_s": [None if g is None else round(g, 1)
                                          for g in t.gone_after]}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
