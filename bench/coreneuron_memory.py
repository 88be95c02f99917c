"""Memory of a kept CoreNEURON worker over many warm trials.

A fit's evaluations run warm in one kept worker process per job: the model
is built once and each trial replaces the drives' event times and the
synaptic weights. This script runs ``--trials`` such trials of
``jones_2009_model(add_drives_from_params=True)`` (a new trial seed each
time, ``evprox1``'s time and L5 weight changed from trial to trial, as a
fit changes them) and reads the worker's resident memory after each.

The first ``--warmup`` trials allocate what the worker keeps (the model,
CoreNEURON's buffers) and are left out; the growth per trial is the slope
of a least-squares line through the resident memory of the others, and of
their second half alone (a worker that only reserved more memory once
grows by a step, not by a slope).

Usage::

    python bench/coreneuron_memory.py                       # full size, 200 trials
    python bench/coreneuron_memory.py --mesh 3 --tstop 40 --trials 300

Prints a JSON line per sample, then a markdown table. Linux only: the
worker's memory is read from ``/proc``.
"""
import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

DT = 0.025          # ms
KB = 1024.0


def _children(pid):
    """Process ids whose parent is ``pid``."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:         # the process ended while being listed
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip() or 0) == pid:
            out.append(int(status.parent.name))
    return out


def _rss_kb(pid):
    """Resident memory of process ``pid`` (kB), from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    raise RuntimeError(f"no VmRSS line for process {pid}")


def _worker_pid(before):
    """The CoreNEURON worker: the child process that uses the most memory
    among those started since ``before`` (loky also starts a small
    resource tracker)."""
    new = [pid for pid in _children(os.getpid()) if pid not in before]
    if not new:
        raise RuntimeError("no CoreNEURON worker process was started")
    return max(new, key=_rss_kb)


def growth_per_trial(trials, rss_kb):
    """Slope (kB per trial) of a least-squares line through ``rss_kb``."""
    trials = np.asarray(trials, dtype=float)
    if len(trials) < 2:
        raise ValueError(f"need at least 2 samples for a slope, got {len(trials)}")
    slope, _ = np.polyfit(trials, np.asarray(rss_kb, dtype=float), 1)
    return float(slope)


def make_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", dest="n_trials", type=int, default=200,
                   help="warm trials in all, warm-up included (default 200)")
    p.add_argument("--warmup", type=int, default=20,
                   help="first trials left out of the slope (default 20)")
    p.add_argument("--mesh", type=int, default=10,
                   help="pyramidal grid side (10 = the default model)")
    p.add_argument("--tstop", type=float, default=170.0, help="ms (default 170)")
    p.add_argument("--every", type=int, default=10,
                   help="print a JSON line every this many trials (default 10)")
    return p


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.n_trials < args.warmup + 2:
        parser.error(f"--warmup must be >= 1 and --trials at least --warmup + 2, got "
                     f"--warmup {args.warmup} and --trials {args.n_trials}")
    if args.mesh < 1 or not args.tstop > 0 or args.every < 1:
        parser.error(f"--mesh and --every must be >= 1 and --tstop > 0 ms, got "
                     f"{args.mesh}, {args.every} and {args.tstop}")
    if not Path("/proc/self/status").is_file():
        raise SystemExit("this script reads the worker's memory from /proc (Linux only)")

    from hnnfit import jones_2009_model
    from hnnfit.fit.space import Parameter, ParameterSpace
    from hnnfit.simulation import simulate_trials
    from hnnfit.sysinfo import machine_summary, sys_info

    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"# machine: {machine_summary(sys_info())}")
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, model {args.mesh}x{args.mesh}, "
          f"tstop {args.tstop} ms, {args.n_trials} warm CoreNEURON trials", flush=True)

    base = jones_2009_model(add_drives_from_params=True, mesh_shape=(args.mesh, args.mesh))
    space = ParameterSpace([Parameter("evprox1.mu", 0.0, 1e6),
                            Parameter("evprox1.ampa.L5_pyramidal", 0.0, 1e6)])
    start = space.current_values(base)
    factors = [1.0, 1.05, 0.95, 1.1]

    before = set(_children(os.getpid()))
    samples, worker = [], None
    for trial in range(args.n_trials):
        f = factors[trial % len(factors)]
        net = space.apply(base, {name: value * f for name, value in start.items()})
        simulate_trials(net, args.tstop, DT, [trial], warm=True, engine="coreneuron")
        if worker is None:
            worker = _worker_pid(before)
        rss = _rss_kb(worker)
        samples.append((trial, rss))
        if trial % args.every == 0 or trial == args.n_trials - 1:
            print(json.dumps({"trial": trial, "worker_rss_MB": round(rss / KB, 2)}),
                  flush=True)

    kept = samples[args.warmup:]
    late = kept[len(kept) // 2:]
    slope = growth_per_trial([t for t, _ in kept], [r for _, r in kept])
    late_slope = growth_per_trial([t for t, _ in late], [r for _, r in late])
    first, last = kept[0][1], kept[-1][1]
    print()
    print("| trials | worker RSS after warm-up (MB) | at the end (MB) | "
          "growth per trial (kB) | over the second half (kB) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.warmup} + {len(kept)} | {first / KB:.1f} | {last / KB:.1f} | "
          f"{slope:.2f} | {late_slope:.2f} |")


if __name__ == "__main__":
    main()
