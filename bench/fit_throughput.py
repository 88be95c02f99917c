"""Evaluations per minute of a Bayesian fit, at n_jobs=1 and n_jobs=2.

The fit: the default ERP model (``jones_2009_model(add_drives_from_params=
True)``, 170 ms, 1 trial per evaluation) against a synthetic ERP-shaped
target, six drive parameters (timings and weights), Bayesian optimisation,
each evaluation run by :class:`hnnfit.fit.objective.DipoleObjective` through
:func:`hnnfit.fit.optimize.run_optimization` into a fresh study file. The
wall time of the whole run (solver included) gives evaluations per minute;
only completed evaluations count as throughput, failed ones are reported in
their own column.

Peak memory is each evaluating process's peak resident set (``VmHWM`` in
``/proc/<pid>/status``, Linux): this process for ``n_jobs=1`` (it evaluates
in-process), the joblib worker processes for ``n_jobs > 1`` (read while they
are still alive after the run).

Usage::

    python bench/fit_throughput.py                      # 20 evaluations, n_jobs 1 and 2
    python bench/fit_throughput.py --n-evals 2          # smoke run
    python bench/fit_throughput.py --keep tp-studies     # keep the study files

Prints a JSON line per configuration, then a markdown table.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PARAMETERS = [
    # name, low, high (ms or uS), around the default ERP model's values
    ("evprox1.mu", 18.0, 35.0),
    ("evprox1.ampa.L5_pyramidal", 0.0002, 0.002),
    ("evdist1.mu", 55.0, 75.0),
    ("evdist1.ampa.L2_pyramidal", 0.0005, 0.005),
    ("evprox2.mu", 120.0, 150.0),
    ("evprox2.ampa.L5_pyramidal", 0.0002, 0.002),
]


def _target(tstop):
    from hnnfit.fit.targets import read_target

    # an ERP-like waveform (nAm): early positive, negative, late positive
    t = np.arange(0.0, tstop + 1e-9, 0.5)
    values = (20.0 * np.exp(-((t - 25.0) / 6.0) ** 2)
              - 40.0 * np.exp(-((t - 65.0) / 12.0) ** 2)
              + 60.0 * np.exp(-((t - 125.0) / 18.0) ** 2))
    return read_target(np.c_[t, values])


def _proc_status(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0       # kB -> MB
    except OSError:
        return None
    return None


def _children(pid):
    """Pids of the descendants of ``pid`` with their command lines."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents[int(entry.name)] = (ppid, cmd)
    out, frontier = [], {pid}
    while frontier:
        nxt = {p for p, (pp, _) in parents.items() if pp in frontier}
        out += [(p, parents[p][1]) for p in nxt]
        frontier = nxt
    return out


def _worker_peaks():
    """Peak RSS (MB) of this process's joblib/loky worker processes."""
    peaks = {}
    for pid, cmd in _children(os.getpid()):
        if "loky" in cmd and "resource_tracker" not in cmd:
            hwm = _proc_status(pid, "VmHWM")
            if hwm is not None:
                peaks[pid] = hwm
    return peaks


def throughput(n_complete, wall):
    """Completed evaluations per minute in ``wall`` seconds (failed ones excluded)."""
    if not wall > 0:
        raise ValueError(f"wall must be > 0 s, got {wall}")
    return 60.0 * n_complete / wall


def run_fit(n_jobs, n_evals, mesh, tstop, folder, timeout=None):
    from hnnfit import jones_2009_model
    from hnnfit.fit.objective import DipoleObjective
    from hnnfit.fit.optimize import run_optimization
    from hnnfit.fit.solvers import make_solver
    from hnnfit.fit.space import Parameter, ParameterSpace
    from hnnfit.fit.storage import StudyStorage as Study

    net = jones_2009_model(add_drives_from_params=True, mesh_shape=(mesh, mesh))
    target = _target(tstop)
    space = ParameterSpace([Parameter(*p) for p in PARAMETERS])
    objective = DipoleObjective(net, target, space, n_trials=1, scale="fit", timeout=timeout)
    solver = make_solver("bayesian", space, seed=0,
                         n_initial_points=min(10, max(2, n_evals // 2)))
    path = Path(folder) / f"throughput_n{n_jobs}.sqlite"
    study = Study.create(path, target=target, space=space, objective=objective.settings(),
                         solver=solver.settings())
    t0 = time.perf_counter()
    summary = run_optimization(study, solver, objective, n_evals, n_jobs=n_jobs)
    wall = time.perf_counter() - t0
    peaks = _worker_peaks() if n_jobs > 1 else {os.getpid(): _proc_status(os.getpid(),
                                                                          "VmHWM")}
    return {
        "n_jobs": n_jobs,
        "n_evals": summary.n_complete + summary.n_failed,
        "n_complete": summary.n_complete,
        "n_failed": summary.n_failed,
        "wall_s": wall,
        "evals_per_min": throughput(summary.n_complete, wall),
        "peak_rss_mb_per_worker": sorted(peaks.values()),
        "best_value": summary.best_value,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-evals", type=int, default=20)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mesh", type=int, default=10,
                        help="pyramidal grid side (10 = the default model)")
    parser.add_argument("--tstop", type=float, default=170.0)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds an evaluation may take before it fails (default: "
                             "no limit)")
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="write the study files here and keep them (for their "
                             "per-evaluation timestamps); default: a temporary folder")
    args = parser.parse_args(argv)

    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    # what a result depends on besides its arguments (hnnfit.sysinfo)
    from hnnfit.sysinfo import machine_summary, sys_info
    print(f"# machine: {machine_summary(sys_info())}")
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, model {args.mesh}x{args.mesh}, "
          f"tstop {args.tstop} ms, {args.n_evals} evaluations", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = tmp
        if args.keep is not None:
            folder = Path(args.keep)
            folder.mkdir(parents=True, exist_ok=True)
            for n_jobs in args.jobs:
                (folder / f"throughput_n{n_jobs}.sqlite").unlink(missing_ok=True)
        for n_jobs in args.jobs:
            row = run_fit(n_jobs, args.n_evals, args.mesh, args.tstop, folder, args.timeout)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(table(rows))


def table(rows):
    """Markdown table of the runs; speed-up relative to the first row."""
    base = rows[0]["evals_per_min"]
    lines = ["| n_jobs | evaluations | failed | wall s | completed evaluations / min | "
             "speed-up | peak RSS per worker (MB) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        rss = ", ".join(f"{m:.0f}" for m in row["peak_rss_mb_per_worker"]) or "n/a"
        speedup = f"{row['evals_per_min'] / base:.2f}x" if base > 0 else "n/a"
        lines.append(f"| {row['n_jobs']} | {row['n_evals']} | {row['n_failed']} | "
                     f"{row['wall_s']:.1f} | {row['evals_per_min']:.2f} | {speedup} | "
                     f"{rss} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
