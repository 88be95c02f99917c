"""The anchor task: hnn-core's "optimize evoked" example, solved by hnnfit.

The task, as measured with the reference implementation (hnn-core 0.6.1 on
this machine): fit ``evprox2``'s mean, sigma and AMPA weight onto L5
pyramidal cells to the recorded yes-trial S1 ERP; ranges (100, 150) ms,
(1, 20) ms, (0.01, 1.0) uS; start 120 ms, 1 ms, 0.1 uS; one trial; 30 ms
smoothing; scale 3000; the other two drives fixed at the hand-tuned values
of hnn-core's example (``examples/howto/optimize_evoked.py``: one shared
drive cell per drive, weights and delays as below).

This script runs hnnfit's Bayesian solver with three solver seeds and its
COBYLA solver on the same task, each for ``--n-evals`` evaluations into its
own study file, and reports the start RMSE, the best within the first 15
evaluations and after all of them, and the wall time.

With ``--baseline-python PATH`` (an environment with hnn-core 0.6.1) it also
runs hnn-core's own ``Optimizer`` on the same task in the same run: the
example's ``set_params`` (the three drives added to a fresh
``neymotin_2020_model``), the same start, ranges, target, smoothing, scale
and trials, hnn-core's ``dipole_rmse`` objective, for the same number of
evaluations, once per solver (Bayesian: NumPy's generator seeded with 0), in
a child process that imports hnn-core only. The table then holds both, the
time ratio is measured, and a PASS/FAIL line per acceptance point compares
with the baseline's scores of this run:

* Bayesian: median (over the seeds) best RMSE within 15 evaluations <= the
  baseline's best after all of them, and below it after all of them;
* COBYLA: below the baseline COBYLA's best (it may stop earlier by itself,
  once its trust region has shrunk below ``rhoend``).

Without a baseline, the goals of the published reference run (hnn-core
0.6.1 on the development machine: Bayesian 16.09 -> 14.41 in 30 evaluations,
1147 s; COBYLA 15.88, 1269 s) are printed as context for the full task only,
marked as published, not measured.

The scores use hnn-core's metric by default (``--metric hnn_rmse``: the
simulated dipole Fourier-resampled onto the data's sample count, as hnn-core
computes it), so hnnfit's and the baseline's values are on one scale.
``--metric rmse`` uses hnnfit's default objective instead (the dipole
interpolated at the data's time points), on which the same start point
scores about 0.9 % higher.

``--mesh`` and ``--tmax`` shrink the task (a smaller column, a shorter
window of the target) for smoke tests; the baseline gets the same.

Usage::

    python bench/anchor_task.py                     # engine 'auto' (CoreNEURON if it compiles)
    python bench/anchor_task.py --engine neuron --seeds 0 --solvers bayesian
    python bench/anchor_task.py --report --out DIR  # re-print the table of finished studies
    python bench/anchor_task.py --baseline-python ~/refvenv/bin/python   # hnn-core too
    python bench/anchor_task.py --mesh 3 --tmax 60 --n-evals 3 --seeds 0  # smoke run

Prints a JSON line per run, then a markdown table.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "MEG_detection_data"

# hnn-core 0.6.1 examples/howto/optimize_evoked.py: the hand-tuned drives
PROX_DELAYS = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0, "L5_pyramidal": 1.0}
DRIVES = [
    ("evprox1", dict(mu=26.61, sigma=2.47, numspikes=1, location="proximal",
                     weights_ampa={"L2_basket": 0.08831, "L2_pyramidal": 0.01525,
                                   "L5_basket": 0.19934, "L5_pyramidal": 0.00865},
                     synaptic_delays=PROX_DELAYS)),
    ("evdist1", dict(mu=63.53, sigma=3.85, numspikes=1, location="distal",
                     weights_ampa={"L2_basket": 0.006562, "L2_pyramidal": 0.000007,
                                   "L5_pyramidal": 0.142300},
                     weights_nmda={"L2_basket": 0.019482, "L2_pyramidal": 0.004317,
                                   "L5_pyramidal": 0.080074},
                     synaptic_delays={"L2_basket": 0.1, "L2_pyramidal": 0.1,
                                      "L5_pyramidal": 0.1})),
    ("evprox2", dict(mu=120.0, sigma=1.0, numspikes=1, location="proximal",
                     weights_ampa={"L2_basket": 0.000003, "L2_pyramidal": 1.438840,
                                   "L5_basket": 0.008958, "L5_pyramidal": 0.1},
                     synaptic_delays=PROX_DELAYS)),
]
SPACE = [("evprox2.mu", 100.0, 150.0), ("evprox2.sigma", 1.0, 20.0),
         ("evprox2.ampa.L5_pyramidal", 0.01, 1.0)]
X0 = {"evprox2.mu": 120.0, "evprox2.sigma": 1.0, "evprox2.ampa.L5_pyramidal": 0.1}
# the published reference run (hnn-core 0.6.1, 30 evaluations): context only
PUBLISHED = {"start": 16.09, "bayesian": 14.41, "bayesian_s": 1147.0, "cobyla": 15.88,
             "cobyla_s": 1269.0}
EARLY = 15


def add_drives(net, values):
    """Add the example's three drives to ``net`` (hnnfit's or hnn-core's), in place.

    ``values`` sets the fitted ones: ``evprox2.mu``, ``evprox2.sigma`` (ms)
    and ``evprox2.ampa.L5_pyramidal`` (uS), as the example's ``set_params``.
    """
    for name, kwargs in DRIVES:
        kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}
        if name == "evprox2":
            kwargs["mu"] = values["evprox2.mu"]
            kwargs["sigma"] = values["evprox2.sigma"]
            kwargs["weights_ampa"]["L5_pyramidal"] = values["evprox2.ampa.L5_pyramidal"]
        # one drive cell shared by all targets, as in the example
        net.add_evoked_drive(name, n_drive_cells=1, cell_specific=False, **kwargs)
    return net


def make_network(mesh=None):
    """The example's network: the default column and its three hand-tuned drives."""
    from hnnfit import neymotin_2020_model

    net = neymotin_2020_model(mesh_shape=None if mesh is None else (mesh, mesh))
    return add_drives(net, X0)


def _baseline_child(job_file):
    # runs under the baseline interpreter: hnn-core only, no hnnfit
    from fit_erp import hnn_core_optimize
    from hnn_core import neymotin_2020_model

    job = json.loads(Path(job_file).read_text())
    net = neymotin_2020_model(mesh_shape=tuple(job["mesh_shape"]))
    return hnn_core_optimize(net, add_drives, SPACE, X0, job["target_file"], job["solver"],
                             job["n_evals"], n_trials=1, smooth_window=30.0, scale=3000.0,
                             seed=job["seed"], early=EARLY)


def run_baseline(args, target, out_dir):
    """hnn-core's Optimizer on the same task, one run per solver it has."""
    from fit_erp import BASELINE_SOLVERS, run_baseline as run_child, write_target

    target_file = write_target(target, out_dir / "baseline_target.txt")
    mesh = [args.mesh, args.mesh] if args.mesh else [10, 10]
    runs = []
    for solver in args.solvers:
        if solver not in BASELINE_SOLVERS:
            print(f"# baseline: hnn-core's Optimizer has no {solver!r} here; skipped",
                  flush=True)
            continue
        rec = run_child(args.baseline_python, Path(__file__).resolve(),
                        {"mesh_shape": mesh, "target_file": target_file, "solver": solver,
                         "n_evals": args.n_evals, "seed": 0})
        rec["baseline"] = True
        print(json.dumps(rec), flush=True)
        runs.append(rec)
    return runs


def summarize(study, solver, seed, wall):
    """One run's record: start, best within ``EARLY`` evaluations, best overall."""
    import numpy as np

    df = study.evaluations.sort_values("id")
    values = df["value"].to_numpy(dtype=float)
    first = df.iloc[0]
    if any(abs(first[n] - X0[n]) > 1e-9 * max(1.0, abs(X0[n])) for n in X0):
        raise RuntimeError(f"the first evaluation of {study.path} is not the start point")
    if wall is None:
        # re-reported study: first start to last end (excludes the set-up)
        wall = float(df["end_time"].max() - df["start_time"].min())
    return {"solver": solver, "seed": seed, "n_evals": int(len(values)),
            "n_failed": int((df["status"] != "complete").sum()),
            "start_rmse": float(values[0]),
            # failed evaluations are NaN rows: they never count as a best
            "best_early": float(np.nanmin(values[:EARLY])),
            "best": float(np.nanmin(values)), "wall_s": wall,
            "best_params": study.best_params, "study": str(study.path)}


#: Initial designs of the Bayesian solver that ``--designs`` compares: the
#: default (the start point and a Latin hypercube), the uniform random design
#: of earlier versions, and the trust-region variant.
DESIGNS = {"lhs": {}, "random": {"initial_design": "random", "n_initial_points": 10},
           "trust": {"trust_region": True}}


def run_one(solver, seed, args, target, out_dir, design=None):
    """Run (or, with ``--report``, re-read) one study and print its JSON line."""
    from hnnfit.fit import Study

    tag = "" if design is None else f"_{design}"
    path = out_dir / f"anchor_{solver}{tag}_seed{seed}.sqlite"
    options = args.solver_options.get(solver)
    if design is not None:
        options = {**(options or {}), **DESIGNS[design]}
    if args.report:
        if not path.exists():
            print(f"# no study {path}", flush=True)
            return None
        study, wall = Study.load(path), None
    else:
        if path.exists():
            path.unlink()
        study = Study.create(
            path, make_network(args.mesh), target, SPACE, x0=X0, solver=solver, seed=seed,
            solver_options=options,
            objective={"n_trials": 1, "smooth_window": 30.0, "scale": 3000.0,
                       "metric": args.metric,
                       "engine": args.engine},
            description="bench/anchor_task.py")
        t0 = time.perf_counter()
        study.optimize(args.n_evals, n_jobs=args.n_jobs, progress=not args.quiet)
        wall = time.perf_counter() - t0
    rec = summarize(study, solver, seed, wall)
    if design is not None:
        rec["design"] = design
    study.close()
    print(json.dumps(rec), flush=True)
    return rec


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metric", default="hnn_rmse", choices=["rmse", "hnn_rmse"],
                        help="'hnn_rmse' (default): Fourier-resampled as hnn-core computes "
                             "it, the reference numbers' own scale; 'rmse': at the data's "
                             "time points (hnnfit's default objective)")
    parser.add_argument("--solvers", nargs="+", default=["bayesian", "cobyla"],
                        choices=["bayesian", "cobyla", "cma"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="solver seeds of the Bayesian runs (COBYLA is deterministic "
                             "and runs once, seed 0)")
    parser.add_argument("--n-evals", type=int, default=30)
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="evaluations at once (the reference ran them one by one)")
    parser.add_argument("--engine", default="auto",
                        help="'auto' (CoreNEURON where it compiles), 'coreneuron', 'neuron'")
    parser.add_argument("--data", help="the yes-trial ERP file (default: from "
                        "$HNNFIT_DATA if set, else ../shared/data beside the repository, "
                        "else downloaded into hnnfit's data cache)")
    parser.add_argument("--out", help="folder for the study files (default: temporary)")
    parser.add_argument("--solver-options", type=json.loads, default={},
                        help="JSON object of per-solver options, e.g. "
                             "'{\"bayesian\": {\"n_initial_points\": 5}}' (default: the "
                             "solvers' own defaults)")
    parser.add_argument("--designs", nargs="+", choices=sorted(DESIGNS),
                        help="run the Bayesian seeds once per initial design named and "
                             "compare them (lhs: the default; random: earlier versions' "
                             "10 random points; trust: the trust-region variant)")
    parser.add_argument("--goal", type=float,
                        help="with --designs: count the seeds whose best within 15 "
                             "evaluations is at or below this RMSE")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--baseline-python", metavar="PATH",
                        help="also run hnn-core's Optimizer on the same task with this "
                             "interpreter (an environment with hnn-core 0.6.1)")
    parser.add_argument("--mesh", type=int, default=None,
                        help="pyramidal grid side (default: the model's 10; smaller only "
                             "for smoke runs)")
    parser.add_argument("--tmax", type=float, default=None,
                        help="fit the target up to this time, ms (default: all of it)")
    parser.add_argument("--baseline-child", help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true",
                        help="do not run: re-read the study files in --out and print the "
                             "table (wall time then spans first start to last end)")
    args = parser.parse_args(argv)
    if args.baseline_child:
        print(json.dumps(_baseline_child(args.baseline_child)), flush=True)
        return
    if args.mesh is not None and args.mesh < 1:
        parser.error(f"--mesh must be at least 1, got {args.mesh}")
    if args.n_evals < 1:
        parser.error(f"--n-evals must be at least 1, got {args.n_evals}")

    from hnnfit.datasets import fetch_dataset
    from hnnfit.fit.targets import read_target

    if args.report and not args.out:
        parser.error("--report needs --out")
    shared_file = SHARED_DATA / "yes_trial_S1_ERP_all_avg.txt"
    if args.report:
        target = None  # the studies hold their target
    elif args.data:
        target = read_target(args.data, tmax=args.tmax)
    elif not os.environ.get("HNNFIT_DATA") and shared_file.is_file():
        # read in place: handing the shared folder to fetch_dataset as its
        # cache would let it delete a copy whose checksum does not match
        target = read_target(shared_file, tmax=args.tmax)
    else:
        target = read_target(fetch_dataset("yes_trial_S1_ERP_all_avg"), tmax=args.tmax)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="anchor_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    # what a result depends on besides its arguments (hnnfit.sysinfo)
    from hnnfit.sysinfo import machine_summary, sys_info
    print(f"# machine: {machine_summary(sys_info())}")
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, engine {args.engine}, "
          f"model {args.mesh or 10}x{args.mesh or 10}, target to "
          f"{'its end' if args.tmax is None else f'{args.tmax:g} ms'}, "
          f"{args.n_evals} evaluations per run, n_jobs {args.n_jobs}, studies in {out_dir}",
          flush=True)
    if args.solver_options:
        print(f"# solver options {json.dumps(args.solver_options)}", flush=True)

    runs = []
    for solver in args.solvers:
        for design in (args.designs or [None]) if solver == "bayesian" else [None]:
            for seed in (args.seeds if solver == "bayesian" else [0]):
                rec = run_one(solver, seed, args, target, out_dir, design)
                if rec is not None:
                    runs.append(rec)
    if args.designs:
        print("\n".join(design_report(runs, args.goal)))
    baseline = []
    if args.baseline_python and not args.report:
        baseline = run_baseline(args, target, out_dir)
    full_task = args.mesh in (None, 10) and args.tmax is None and args.data is None
    print("\n".join(report(runs, baseline, args.n_evals,
                           published=full_task and not baseline)))


def design_report(runs, goal=None):
    """A table of the Bayesian runs by initial design: median and worst early best."""
    k = EARLY
    lines = ["", f"| initial design | best in {k} evals, by seed | median | worst |"
             + (f" seeds <= {goal:g} |" if goal is not None else ""),
             "| --- | --- | ---: | ---: |" + (" ---: |" if goal is not None else "")]
    for design in DESIGNS:
        mine = [r for r in runs if r.get("design") == design]
        if not mine:
            continue
        early = [r["best_early"] for r in mine]
        row = (f"| {design} | {' / '.join(f'{v:.2f}' for v in early)} | "
               f"{statistics.median(early):.2f} | {max(early):.2f} |")
        if goal is not None:
            row += f" {sum(v <= goal for v in early)} of {len(early)} |"
        lines.append(row)
    return lines


def _per_eval(rec):
    return rec["wall_s"] / max(rec["n_evals"], 1)


def report(runs, baseline, n_evals, published=False):
    """The table and the PASS/FAIL lines of hnnfit's ``runs`` against ``baseline``.

    ``baseline`` holds hnn-core's records of this run (may be empty); with
    ``published``, and no baseline, the published reference's goals are
    printed as context.
    """
    k = min(EARLY, n_evals)
    lines = ["", f"| run | start RMSE | best in {k} evals | best in {n_evals} "
             "evals | evals | wall s | s per eval |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        design = f" ({r['design']})" if r.get("design") else ""
        lines.append(f"| hnnfit {r['solver']}{design}, seed {r['seed']} | "
                     f"{r['start_rmse']:.2f} | "
                     f"{r['best_early']:.2f} | {r['best']:.2f} | {r['n_evals']} | "
                     f"{r['wall_s']:.0f} | {_per_eval(r):.2f} |")
    bayes = [r for r in runs if r["solver"] == "bayesian"]
    early = final = None
    if bayes:
        early = statistics.median(r["best_early"] for r in bayes)
        final = statistics.median(r["best"] for r in bayes)
        lines.append(f"| hnnfit bayesian, median of {len(bayes)} | "
                     f"{statistics.median(r['start_rmse'] for r in bayes):.2f} | "
                     f"{early:.2f} | {final:.2f} | "
                     f"{statistics.median(r['n_evals'] for r in bayes):.0f} | "
                     f"{statistics.median(r['wall_s'] for r in bayes):.0f} | "
                     f"{statistics.median(_per_eval(r) for r in bayes):.2f} |")
    for b in baseline:
        lines.append(f"| {b['implementation']} {b['solver']} (this run) | "
                     f"{b['start_rmse']:.2f} | {b['best_early']:.2f} | {b['best']:.2f} | "
                     f"{b['n_evals']} | {b['wall_s']:.0f} | {_per_eval(b):.2f} |")
    lines.append("")
    for b in baseline:
        ours = [r for r in runs if r["solver"] == b["solver"]]
        if not ours:
            continue
        per_eval = statistics.median(_per_eval(r) for r in ours)
        lines.append(f"measured in this run: {b['solver']} wall time per evaluation, "
                     f"hnn-core {_per_eval(b):.2f} s / hnnfit {per_eval:.2f} s = "
                     f"{_per_eval(b) / per_eval:.2f}x")
        if b["solver"] == "bayesian":
            lines.append(f"{'PASS' if early <= b['best'] else 'FAIL'}: hnnfit Bayesian "
                         f"median best within {k} evaluations {early:.2f} (goal <= "
                         f"hnn-core's best after {b['n_evals']}, {b['best']:.2f})")
            lines.append(f"{'PASS' if final < b['best'] else 'FAIL'}: hnnfit Bayesian "
                         f"median best after {min(r['n_evals'] for r in bayes)} "
                         f"{final:.2f} (goal < {b['best']:.2f})")
        if b["solver"] == "cobyla":
            for r in ours:
                stopped = (f", stopped after {r['n_evals']}" if r["n_evals"] < n_evals
                           else "")
                lines.append(f"{'PASS' if r['best'] < b['best'] else 'FAIL'}: hnnfit "
                             f"COBYLA best within {n_evals} evaluations{stopped} "
                             f"{r['best']:.2f} (goal < hnn-core COBYLA's {b['best']:.2f})")
    if published and n_evals >= 30:
        lines.append(f"published, not measured here (hnn-core 0.6.1, an earlier run): "
                     f"Bayesian {PUBLISHED['start']} -> {PUBLISHED['bayesian']} in 30 "
                     f"evaluations ({PUBLISHED['bayesian_s']:.0f} s), COBYLA "
                     f"{PUBLISHED['cobyla']} ({PUBLISHED['cobyla_s']:.0f} s)")
        if bayes:
            lines.append(f"{'PASS' if early <= PUBLISHED['bayesian'] else 'FAIL'}: Bayesian "
                         f"median best within {EARLY} evaluations {early:.2f} (published "
                         f"goal <= {PUBLISHED['bayesian']})")
            lines.append(f"{'PASS' if final < PUBLISHED['bayesian'] else 'FAIL'}: Bayesian "
                         f"median best after {min(r['n_evals'] for r in bayes)} {final:.2f} "
                         f"(published goal < {PUBLISHED['bayesian']})")
        for r in runs:
            # COBYLA stops by itself once its trust region shrinks below
            # rhoend, possibly before the budget: judged on the budget asked for
            if r["solver"] == "cobyla":
                stopped = (f", stopped after {r['n_evals']}" if r["n_evals"] < n_evals
                           else "")
                lines.append(f"{'PASS' if r['best'] < PUBLISHED['cobyla'] else 'FAIL'}: "
                             f"COBYLA best within {n_evals} evaluations{stopped} "
                             f"{r['best']:.2f} (published goal < {PUBLISHED['cobyla']})")
    return lines


if __name__ == "__main__":
    main()
