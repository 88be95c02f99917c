"""hnnfit's ``Optimizer`` and hnn-core's on the same small task, in one run.

The task: the Jones et al. (2009) column on a 3 x 3 grid (``--mesh``) with
one proximal evoked drive (``evprox1``: AMPA weights below, 0.1 ms delays,
event seed 4) whose timing is known: mu = 15 ms, sigma = 2 ms. The target
is that network's own dipole (one trial, ``--tstop`` ms at dt = 0.025 ms,
smoothed over 5 ms, scaled x3000), simulated by hnnfit; both optimizers
fit mu in [10, 20] ms and sigma in [0.5, 5] ms from (12, 4) ms with
``--max-iter`` evaluations, through hnn-core's ``Optimizer`` interface
(``set_params`` hook, ``fit(target=..., n_trials=1, scale_factor=3000,
smooth_window_len=5)``).

* **hnnfit**: :class:`hnnfit.optimization.Optimizer` in this process, into a
  fresh study file (so nothing is resumed), one job.
* **hnn-core**: with ``--baseline-python PATH`` (an interpreter with
  ``hnn-core==0.6.1``), ``hnn_core.optimization.Optimizer`` in a child
  process of that interpreter; the child imports hnn-core only and reads
  the task (target samples included) from a JSON file.

Each optimizer reports its own objective values; as the two compute the
RMSE slightly differently (hnn-core leaves out the last sample), the start
and final points of both are also scored again here by one scorer (hnnfit's
simulation, smoothing and scaling; RMSE over all samples), the columns
marked "rescored". Wall times cover ``fit()`` only: the mechanisms and the
solvers' libraries are loaded before. hnn-core's Bayesian solver evaluates its start point and
then ``max_iter`` more; its COBYLA stops at ``max_iter``.

Usage::

    python bench/optimizer_compare.py --baseline-python REFVENV/bin/python
    python bench/optimizer_compare.py --solver cobyla --max-iter 20

Prints a JSON line per optimizer, then a markdown table and the speed ratio.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

DT = 0.025                       # ms
TSTOP = 40.0                     # ms
SMOOTH = 5.0                     # ms
SCALE = 3000.0
#: The drive timing that made the target (ms), the start and the bounds.
TRUTH = {"mu": 15.0, "sigma": 2.0}
START = {"mu": 12.0, "sigma": 4.0}
CONSTRAINTS = {"mu": (10.0, 20.0), "sigma": (0.5, 5.0)}
AMPA = {"L2_basket": 0.08, "L2_pyramidal": 0.02, "L5_basket": 0.2, "L5_pyramidal": 0.02}
EVENT_SEED = 4
REFERENCE = "hnn-core 0.6.1"


def make_net(jones_2009_model, mesh, params=TRUTH):
    """The task's network, from either package's ``jones_2009_model``."""
    net = jones_2009_model(mesh_shape=(mesh, mesh))
    net.add_evoked_drive("evprox1", mu=params["mu"], sigma=params["sigma"], numspikes=1,
                         location="proximal", weights_ampa=AMPA, synaptic_delays=0.1,
                         event_seed=EVENT_SEED)
    return net


def set_params(net, params):
    """hnn-core's hook: the drive's timing, in place (ms)."""
    net.external_drives["evprox1"]["dynamics"]["mu"] = float(params["mu"])
    net.external_drives["evprox1"]["dynamics"]["sigma"] = float(params["sigma"])


# -- the baseline, in a child process of the baseline interpreter -------------
def _child_baseline(spec_path):
    # hnn-core only: no hnnfit in this process
    import numpy as np
    from hnn_core import jones_2009_model
    from hnn_core.dipole import Dipole
    from hnn_core.network_builder import load_custom_mechanisms
    from hnn_core.optimization import Optimizer

    # its Bayesian solver's module (scikit-learn's Gaussian processes) is
    # imported inside fit(); import it before the clock starts
    import hnn_core.externals.bayesopt  # noqa: F401

    spec = json.loads(open(spec_path).read())
    load_custom_mechanisms()
    np.random.seed(spec["seed"])     # hnn-core's Bayesian solver draws from numpy's global RNG
    target = Dipole(np.asarray(spec["times"]), np.asarray(spec["target"]))
    opt = Optimizer(make_net(jones_2009_model, spec["mesh"]), spec["tstop"],
                    {k: tuple(v) for k, v in spec["constraints"].items()}, set_params,
                    initial_params=dict(spec["start"]), solver=spec["solver"],
                    max_iter=spec["max_iter"])
    # every evaluation's value, in order: hnn-core's obj_ keeps a running
    # minimum of the first max_iter only (its Bayesian solver runs one more)
    values = []
    objective = opt.obj_fun

    def recorded(**kwargs):
        value = objective(**kwargs)
        values.append(float(value))
        return value

    opt.obj_fun = recorded
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        opt.fit(target=target, n_trials=1, scale_factor=spec["scale"],
                smooth_window_len=spec["smooth"], dt=spec["dt"])
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "n_evals": len(values), "start_value": values[0],
            "final_value": min(values),
            "final": {k: float(v) for k, v in zip(spec["constraints"], opt.opt_params_)}}


def _run_baseline(python, spec_path):
    from child_process import check_interpreter, run_json_child

    check_interpreter(python)
    return run_json_child([python, os.path.abspath(__file__), "--child-spec", spec_path])


# -- hnnfit, in this process ----------------------------------------------------
def _target(mesh, tstop):
    """The task's target: times (ms) and the smoothed, scaled dipole (nAm)."""
    from hnnfit import jones_2009_model
    from hnnfit.simulation import simulate_trials

    dpl = simulate_trials(make_net(jones_2009_model, mesh), tstop, DT, [0])[0]
    dpl.smooth(SMOOTH).scale(SCALE)
    return dpl


def rescore(params, target, mesh, tstop):
    """RMSE (nAm) of the network at ``params`` against ``target``, all samples."""
    import numpy as np

    from hnnfit import jones_2009_model
    from hnnfit.simulation import simulate_trials

    net = make_net(jones_2009_model, mesh)
    set_params(net, params)
    dpl = simulate_trials(net, tstop, DT, [0])[0]
    dpl.smooth(SMOOTH).scale(SCALE)
    return float(np.sqrt(np.mean((dpl.data["agg"] - target.data["agg"]) ** 2)))


def _run_hnnfit(target, args, solver_options):
    from hnnfit import jones_2009_model
    from hnnfit.fit import make_solver
    from hnnfit.fit.space import ParameterSpace
    from hnnfit.optimization import Optimizer

    # the solver's libraries (scikit-optimize: seconds) are imported before
    # the clock starts, as the baseline child imports hnn-core's before it
    make_solver(args.solver, ParameterSpace([(k, lo, hi) for k, (lo, hi)
                                             in CONSTRAINTS.items()]), **solver_options)
    with tempfile.TemporaryDirectory() as tmp:
        opt = Optimizer(make_net(jones_2009_model, args.mesh), args.tstop, CONSTRAINTS,
                        set_params, initial_params=dict(START), solver=args.solver,
                        max_iter=args.max_iter, study_path=os.path.join(tmp, "s.sqlite"),
                        seed=args.seed, solver_options=solver_options)
        t0 = time.perf_counter()
        opt.fit(target=target, n_trials=1, scale_factor=SCALE, smooth_window_len=SMOOTH,
                dt=DT, progress=False)
        wall = time.perf_counter() - t0
        opt.study_.close()
    return {"wall_s": wall, "n_evals": len(opt.obj_values_),
            "start_value": float(opt.obj_values_[0]), "final_value": float(opt.obj_[-1]),
            "final": dict(zip(CONSTRAINTS, map(float, opt.opt_params_)))}


def _table(results):
    lines = ["| optimizer | evaluations | start RMSE | final RMSE | start RMSE (rescored) "
             "| final RMSE (rescored) | final mu ms | final sigma ms | wall s | s / eval |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['n_evals']} | {r['start_value']:.3f} | {r['final_value']:.3f} | "
            f"{r['start_rescored']:.3f} | {r['final_rescored']:.3f} | "
            f"{r['final']['mu']:.3f} | {r['final']['sigma']:.3f} | {r['wall_s']:.1f} | "
            f"{r['wall_s'] / r['n_evals']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python",
                        help="interpreter with hnn-core 0.6.1 installed (runs its Optimizer)")
    parser.add_argument("--solver", default="bayesian", choices=["bayesian", "cobyla"])
    parser.add_argument("--max-iter", type=int, default=12,
                        help="evaluations of each optimizer (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both solvers")
    parser.add_argument("--n-initial-points", type=int, default=3,
                        help="random points before hnnfit's Bayesian solver models the "
                             "objective (hnn-core's models it from its start point on)")
    parser.add_argument("--mesh", type=int, default=3, help="pyramidal grid side")
    parser.add_argument("--tstop", type=float, default=TSTOP, help="simulated ms")
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_spec:
        print(json.dumps(_child_baseline(args.child_spec)), flush=True)
        return
    if args.max_iter < 2:
        parser.error(f"--max-iter must be at least 2, got {args.max_iter}")
    if args.mesh < 1:
        parser.error(f"--mesh must be at least 1, got {args.mesh}")
    if args.tstop <= TRUTH["mu"]:
        parser.error(f"--tstop must be later than the drive's {TRUTH['mu']} ms, "
                     f"got {args.tstop}")
    if args.n_initial_points < 1:
        parser.error(f"--n-initial-points must be at least 1, got {args.n_initial_points}")

    from hnnfit.simulator import load_mechanisms
    from hnnfit.sysinfo import machine_summary, sys_info

    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"# machine: {machine_summary(sys_info())}")
    options = {"n_initial_points": args.n_initial_points} if args.solver == "bayesian" else {}
    print(f"# task: {args.mesh}x{args.mesh} network, evprox1 timing fitted from "
          f"{START} to {TRUTH} ms, {args.tstop} ms, 1 trial; solver {args.solver}, "
          f"seed {args.seed}, max_iter {args.max_iter}; hnnfit options {options}",
          flush=True)
    load_mechanisms()
    target = _target(args.mesh, args.tstop)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_python:
            spec = {"times": target.times.tolist(), "target": target.data["agg"].tolist(),
                    "mesh": args.mesh, "tstop": args.tstop, "dt": DT, "smooth": SMOOTH,
                    "scale": SCALE, "constraints": CONSTRAINTS, "start": START,
                    "solver": args.solver, "max_iter": args.max_iter, "seed": args.seed}
            spec_path = os.path.join(tmp, "task.json")
            with open(spec_path, "w") as f:
                json.dump(spec, f)
            results[REFERENCE] = _run_baseline(args.baseline_python, spec_path)
        results["hnnfit"] = _run_hnnfit(target, args, options)
    start_rescored = rescore(START, target, args.mesh, args.tstop)
    for name, r in results.items():
        r["start_rescored"] = start_rescored
        r["final_rescored"] = rescore(r["final"], target, args.mesh, args.tstop)
        print(json.dumps({"optimizer": name, **r}), flush=True)
    print()
    print(_table(results))
    if REFERENCE in results:
        ref, own = results[REFERENCE], results["hnnfit"]
        print()
        print(f"speed ratio {REFERENCE} / hnnfit: {ref['wall_s'] / own['wall_s']:.2f} "
              f"(wall), {(ref['wall_s'] / ref['n_evals']) / (own['wall_s'] / own['n_evals']):.2f}"
              f" (per evaluation)")


if __name__ == "__main__":
    main()
