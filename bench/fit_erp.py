"""Run a fit configuration and judge it on held-out trials.

The fits the README reports are configuration files in ``bench/configs/``
(see :mod:`hnnfit.config`): the network, target, parameter space,
objective, solver, stage budgets and polish of each. This script

1. optionally scores parameter files as they are (``--score``, e.g. the
   hand-tuned files) with the configuration's objective: one trial (seed
   0), the average of three (seeds 0-2; the convention of the numbers
   measured with the reference implementation, printed next to ours) and
   the held-out seeds;
2. runs the fit and its ``[polish]`` exactly as ``hnnfit fit CONFIG``
   does, into ``--out`` (a study there is continued, as the command
   continues it);
3. reports, after each stage of a staged fit, the RMSE of the point carried
   forward on the whole waveform (fit seeds), and the evaluations and wall
   time of each part;
4. optionally keeps CMA-ES' averaged mean instead of the polish's lowest
   value (``--take-cma-mean``) and refines the point kept with a
   deterministic stencil search on fixed trials (``--refine-evals``);
5. scores the point kept on held-out seeds (``--held-out``, default
   100-102: trials no part of the fit used), the acceptance measure; with
   ``--held-out-groups K`` also on K-1 further groups of as many unseen
   seeds, and the expected score of a group with its split into bias and
   trial noise. Held-out trials are simulated at the fit's own time step,
   whatever step a polish searched at.

With ``--baseline-python PATH`` (an environment with hnn-core 0.6.1) the same
run also measures the reference instead of quoting it: hnn-core scores the
``--score`` files (its own RMSE, trial 0 and the average of trials 0-2),
and hnn-core's ``Optimizer`` fits the configuration's whole parameter space
(hnn-core has no staged fit or polish) from the same start with as many
evaluations as the fit and its polish used, with the configuration's solver
when hnn-core has it (Bayesian or COBYLA; else Bayesian), on the same
target window, smoothing, fixed scale and number of trials; its best point
is scored by hnnfit on the same held-out trials. Both run in a child
process of that interpreter that imports hnn-core only.

Steps 4 and 5 are flags, not configuration keys: a configuration describes
one fit and one polish, and a second refinement that starts from CMA-ES'
averaged mean has no place there yet; held-out scoring judges a fit and is
not part of it (``hnnfit budget`` does the same for any study).

Usage::

    python bench/fit_erp.py bench/configs/yes_trial_erp.toml \
        --score ERPYes100Trials.json --score default.json
    python bench/fit_erp.py bench/configs/supra_four_drives.toml --held-out-groups 10
    python bench/fit_erp.py bench/configs/yes_trial_erp.toml --score ERPYes100Trials.json \
        --baseline-python ~/refvenv/bin/python

Each configuration's header gives the command of its README run. The
recorded datasets come from ``$HNNFIT_DATA``, else from the project's
shared data folder beside the repository when it exists, else a download.
Prints a JSON line per result and a markdown table.
"""
import argparse
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "MEG_detection_data"

# RMSE published from an earlier run of hnn-core 0.6.1 (fixed scale 3000) on
# the datasets named: 1 trial (seed 0) / the average of 3 trials (seeds 0-2).
# Context only: --baseline-python measures them in the same run instead.
PUBLISHED = {
    ("yes_trial_S1_ERP_all_avg", "ERPYes100Trials"): (15.02, 6.53),
    ("yes_trial_S1_ERP_all_avg", "default"): (7.01, 5.37),
    ("S1_SupraT", "ERPYesSupraT"): (30.92, 21.78),
}
TIME_LIMIT_S = 2 * 3600.0
REFINE_SEED0 = 2000   # the refinement's fixed trials start here, or above every fit seed


# -- hnn-core's Optimizer as the baseline ------------------------------------------
# The baseline runs in a child process of the interpreter given as
# --baseline-python (an environment with hnn-core 0.6.1); that process imports
# hnn-core, never hnnfit. The parent hands it a JSON file and reads back one
# JSON line.
BASELINE_SOLVERS = ("bayesian", "cobyla")


def hnn_core_optimize(net, set_params, space, x0, target_file, solver, n_evals, *,
                      n_trials=1, smooth_window=None, scale=None, seed=0, early=15):
    """Run hnn-core's ``Optimizer`` on a task; runs under the baseline interpreter.

    Parameters
    ----------
    net : hnn_core.Network
        The network ``set_params`` changes (a copy per evaluation).
    set_params : callable
        ``set_params(net, params)`` with ``params`` keyed by ``space``'s names.
    space : list of (str, float, float)
        Parameter names and ranges (the parameters' units).
    x0 : dict
        Start point; the first evaluation.
    target_file : str
        Two-column text file (ms, nAm) read by ``hnn_core.read_dipole``; the
        simulation runs to its last time.
    solver : {'bayesian', 'cobyla'}
    n_evals : int
        Evaluations asked for (hnn-core's Bayesian optimizer evaluates the
        start and then ``max_iter`` points, so ``max_iter = n_evals - 1``;
        COBYLA may stop earlier by itself).
    n_trials : int
        Trials averaged per evaluation.
    smooth_window : float | None
        Smoothing window, ms (hnn-core's ``smooth_window_len``).
    scale : float | None
        Fixed scale factor (hnn-core's ``scale_factor``).
    seed : int
        Seed of NumPy's global generator, which hnn-core's Bayesian
        optimizer draws its candidates from.
    early : int
        The record's ``best_early`` is the best of the first ``early``
        evaluations.

    Returns
    -------
    dict
        ``values`` (each evaluation's RMSE, nAm), ``start_rmse``,
        ``best_early``, ``best``, ``best_params``, ``n_evals``, ``wall_s``
        (the whole ``fit`` call) and ``eval_s`` (summed evaluation times).
    """
    import contextlib
    import io
    import time

    import hnn_core
    import neuron
    import numpy as np
    from hnn_core import read_dipole
    from hnn_core.optimization import Optimizer
    from hnn_core.optimization.objective_functions import _rmse_evoked

    if solver not in BASELINE_SOLVERS:
        raise ValueError(f"solver must be one of {BASELINE_SOLVERS}, got {solver!r}")
    values, seconds = [], []

    def objective(**kwargs):
        # hnn-core's own RMSE objective, timed and recorded per evaluation
        t = time.perf_counter()
        value = _rmse_evoked(**kwargs)
        seconds.append(time.perf_counter() - t)
        values.append(float(value))
        return value

    target = read_dipole(target_file)
    names = [name for name, _, _ in space]
    optim = Optimizer(net, tstop=float(target.times[-1]),
                      constraints={n: (lo, hi) for n, lo, hi in space},
                      set_params=set_params, initial_params={n: x0[n] for n in names},
                      solver=solver, obj_fun=objective,
                      max_iter=n_evals - 1 if solver == "bayesian" else n_evals)
    kwargs = {"target": target, "n_trials": n_trials}
    if smooth_window:
        kwargs["smooth_window_len"] = smooth_window
    if scale is not None:
        kwargs["scale_factor"] = scale
    np.random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        optim.fit(**kwargs)
        wall = time.perf_counter() - t0
    best = int(np.argmin(values))
    return {"implementation": f"hnn-core {hnn_core.__version__}, NEURON "
                              f"{neuron.__version__}",
            "solver": solver, "seed": seed, "n_evals": len(values), "values": values,
            "start_rmse": values[0], "best_early": min(values[:early]),
            "best": values[best], "wall_s": wall, "eval_s": sum(seconds),
            "best_params": {n: float(v) for n, v in zip(names, optim.opt_params_)}}


def run_baseline(python, script, payload):
    """Run ``script --baseline-child FILE`` under ``python``; its JSON record.

    ``payload`` (a JSON-able dict) is written to a temporary file the child
    reads. A failed child raises RuntimeError with the end of its stderr.
    """
    from child_process import check_interpreter, run_json_child

    check_interpreter(python)
    with tempfile.TemporaryDirectory(prefix="baseline_") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps(payload))
        return run_json_child([python, script, "--baseline-child", job])


def write_target(target, path):
    """Write a target as the two-column text (ms, nAm) hnn-core reads."""
    import numpy as np

    np.savetxt(path, np.c_[target.times, target.values], fmt="%.17g")
    return str(path)


def _baseline_network(job):
    # runs under the baseline interpreter: hnn-core only, no hnnfit
    from hnn_core import Network, read_params

    net = Network(read_params(job["params"]),
                  add_drives_from_params=job.get("add_drives_from_params", True),
                  legacy_mode=job.get("legacy_mode", False),
                  mesh_shape=tuple(job["mesh_shape"]))
    for drive in job.get("evoked_drives", []):
        drive = dict(drive)
        name = drive.pop("name")
        drive.setdefault("numspikes", 1)
        net.add_evoked_drive(name, **drive)
    return net


def _set_dotted(net, params):
    # hnnfit's dotted parameter names written into an hnn-core network
    from single_eval import apply_to_hnn_core

    apply_to_hnn_core(net, params)


def _baseline_child(job_file):
    """The baseline process's work: a fit or the scores of parameter files."""
    job = json.loads(Path(job_file).read_text())
    if job["kind"] == "fit":
        net = _baseline_network(job)
        return hnn_core_optimize(net, _set_dotted, job["space"], job["x0"],
                                 job["target_file"], job["solver"], job["n_evals"],
                                 n_trials=job["n_trials"],
                                 smooth_window=job["smooth_window"], scale=job["scale"],
                                 seed=job["seed"])
    # scores of parameter files as they are: hnn-core's RMSE of trial 0 and of
    # the average of trials 0-2, smoothed and scaled as the objective does
    import contextlib
    import io

    import hnn_core
    from hnn_core import read_dipole, simulate_dipole
    from hnn_core.dipole import _rmse, average_dipoles

    target = read_dipole(job["target_file"])
    tstop = float(target.times[-1])
    scores = {}
    for name, path in job["files"].items():
        net = _baseline_network({**job, "params": path, "add_drives_from_params": True,
                                 "evoked_drives": []})
        with contextlib.redirect_stdout(io.StringIO()):
            dpls = simulate_dipole(net, tstop=tstop, n_trials=3)
        for dpl in dpls:
            dpl.scale(job["scale"])
            if job["smooth_window"]:
                dpl.smooth(job["smooth_window"])
        scores[name] = [float(_rmse(dpls[0], target, tstop=tstop)),
                        float(_rmse(average_dipoles(dpls), target, tstop=tstop))]
    return {"implementation": f"hnn-core {hnn_core.__version__}", "scores": scores}


def _emit(record):
    print(json.dumps(record), flush=True)


def _seed_list(text):
    """Seeds from ``A-B`` ranges and integers (``100-102``, ``7``)."""
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last) if sep else int(first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a seed or a range A-B, got {text!r}") \
            from None
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"must be a seed >= 0 or a range A-B with A <= B, "
                                         f"got {text!r}")
    return list(range(lo, hi + 1))


def _optimize(study, n_evals, n_jobs):
    """Run ``study.optimize``; stop the script if it was interrupted.

    An interrupted loop returns normally (what finished is recorded); going
    on would judge an unfinished fit.
    """
    summary = study.optimize(n_evals, n_jobs=n_jobs, progress=True)
    if getattr(summary, "interrupted", False):
        raise SystemExit(f"interrupted; {study.n_complete + study.n_failed} evaluations "
                         f"recorded in {study.path}. Run the same command with the same "
                         f"--out to continue.")
    return summary


def _span(*studies):
    """Seconds from the first evaluation to the last of ``studies`` (None if empty)."""
    tables = [t for t in (st.evaluations for st in studies if st is not None) if len(t)]
    if not tables:
        return None
    return (max(float(t["end_time"].max()) for t in tables)
            - min(float(t["start_time"].min()) for t in tables))


def _fmt_value(value):
    # a CMA-ES mean kept by --take-cma-mean was never evaluated during the fit
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _score_files(names, config, setup, held_out, n_jobs, baseline_python=None):
    """Score parameter files as they are with the configuration's objective.

    With ``baseline_python``, hnn-core scores the same files in the same run
    (its own RMSE, trial 0 and the average of trials 0-2); otherwise the
    published figures, where known, are shown as context.
    """
    from hnnfit import Network
    from hnnfit.fit import DipoleObjective
    from hnnfit.fit.space import evoked_space
    from hnnfit.params import read_params

    from hnnfit.params import _resolve

    dataset = config.target.dataset
    measured = None
    scale = setup.objective.get("scale", 3000.0)
    if baseline_python:
        if isinstance(scale, str):
            raise SystemExit(f"--baseline-python needs a fixed [objective] scale (hnn-core "
                             f"has no fitted scale), got {scale!r}")
        with tempfile.TemporaryDirectory(prefix="fit_erp_target_") as tmp:
            job = {"kind": "score", "mesh_shape": list(config.network.mesh_shape),
                   "legacy_mode": config.network.legacy_mode,
                   "files": {n: str(_resolve(n)) for n in names},
                   "target_file": write_target(setup.target, Path(tmp) / "target.txt"),
                   "smooth_window": setup.objective.get("smooth_window"), "scale": scale}
            measured = run_baseline(baseline_python, Path(__file__).resolve(), job)
    rows = []
    for name in names:
        net = Network(read_params(name), add_drives_from_params=True,
                      mesh_shape=config.network.mesh_shape)
        space = evoked_space(net, tstop=float(setup.target.times[-1]))
        settings = {k: v for k, v in setup.objective.items()
                    if k not in ("n_trials", "seeds", "group_size", "resample")}
        values = {}
        for label, seeds in (("rmse_1trial", [0]), ("rmse_3trials", [0, 1, 2]),
                             ("rmse_held_out", held_out)):
            obj = DipoleObjective(net, setup.target, space, n_trials=len(seeds),
                                  seeds=seeds, **settings)
            values[label] = obj(space.current_values(net))["value"]
        if measured is not None:
            ref, source = measured["scores"][name], measured["implementation"]
        else:
            ref = PUBLISHED.get((dataset, Path(name).stem))
            ref = ref if ref and scale == 3000.0 else None
            source = "published"
        rec = {"kind": "hand-tuned", "file": name, **values,
               "reference_1trial": ref[0] if ref else None,
               "reference_3trials": ref[1] if ref else None,
               "reference_source": source if ref else None}
        _emit(rec)
        rows.append(rec)
    what = (f"{measured['implementation']}, this run, its own RMSE" if measured is not None
            else "hnn-core 0.6.1, published from an earlier run, not measured here")
    lines = [f"| parameter file | RMSE 1 trial (seed 0) | 3 trials (0-2) | held-out "
             f"{held_out} | reference 1 / 3 trials ({what}) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ref = (f"{r['reference_1trial']:.2f} / {r['reference_3trials']:.2f}"
               if r["reference_1trial"] is not None else "n/a")
        lines.append(f"| {r['file']} | {r['rmse_1trial']:.2f} | {r['rmse_3trials']:.2f} | "
                     f"{r['rmse_held_out']:.2f} | {ref} |")
    return lines + [""]


def _cma_mean(study):
    """CMA-ES' mean averaged over the second half of its generations, or None."""
    if study.solver_settings.get("name") != "cma" or study.stages is not None:
        return None
    solver = study.replay_solver()
    if len(solver.means) < 2:
        return None
    k = solver.averaging_window()
    return study.space.clip(solver.averaged_mean(k)), k


def _refine(base, point, args, n_jobs, out_dir, stem):
    """A pattern search from ``point`` on fixed trials (a study beside the others)."""
    used = max(base.used_seeds())
    first = max(REFINE_SEED0, 1000 * (used // 1000 + 1))
    objective = {"seeds": list(range(first, first + args.refine_trials)), "resample": False}
    if args.refine_dt is not None:
        objective["dt"] = args.refine_dt
    options = {"step": args.refine_step}
    if args.refine_line is not None:
        options["line"] = args.refine_line
    try:
        refine = base.create_polish(
            out_dir / f"{stem}_refine.sqlite", only=args.refine_only, objective=objective,
            solver="pattern", solver_options=options,
            start={n: point[n] for n in base.space.names},
            description=f"bench/fit_erp.py {stem} refine", exist_ok=True)
    except ValueError as err:
        raise SystemExit(f"--refine-only / --refine-step / --refine-line: {err}") from None
    _optimize(refine, args.refine_evals, n_jobs)
    return refine


def run(args):
    """Run the configuration ``args.config``; return the report's lines."""
    import numpy as np

    from hnnfit import cli
    from hnnfit.config import build_fit, load_config
    from hnnfit.fit import Study
    from hnnfit.validation import format_seeds

    config = load_config(args.config)
    setup = build_fit(config)
    stem = Path(args.config).stem
    held_out = sorted({s for chunk in args.held_out for s in chunk})
    groups = [held_out] + [[max(held_out) + 1 + g * len(held_out) + i
                            for i in range(len(held_out))]
                           for g in range(args.held_out_groups - 1)]
    all_held = {s for g in groups for s in g}
    planned = set(setup.objective.get("seeds", [0]))
    if config.polish is not None:
        planned |= set(config.polish.objective.get("seeds", []))
    if planned & all_held:
        raise SystemExit(f"--held-out seeds {format_seeds(all_held)} overlap the fit's "
                         f"seeds {format_seeds(planned)}")
    n_jobs = args.n_jobs or config.run.n_jobs
    title = config.target.dataset or Path(config.target.file).name
    lines = [f"### {stem}: {title} ({setup.objective.get('smooth_window', 0):g} ms "
             f"smoothing, scale {setup.objective.get('scale', 3000.0)})", ""]
    if args.score:
        lines += _score_files(args.score, config, setup, held_out, n_jobs,
                              args.baseline_python)
    if args.score_only:
        return lines

    # the fit and its polish, as 'hnnfit fit' runs them
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fit_erp_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.sqlite"
    status = cli.main(["fit", str(args.config), "--study", str(path), "--n-jobs",
                       str(n_jobs)])
    if status != cli.EXIT_OK:
        raise SystemExit(status)
    study = Study.load(path)
    polish = None
    if config.polish is not None:
        polish = Study.load(config.polish.study_path(path))

    # after each stage: the carried point on the whole waveform
    start_value = study.objective(study.space.clip(study.x0))["value"]
    stage_lines = ["| after | parameters | window (ms) | evaluations | simulation s "
                   "(summed over workers) | whole-waveform RMSE (fit seeds) |",
                   "| --- | ---: | --- | ---: | ---: | ---: |",
                   f"| (start: {Path(config.network.params).name}) | | | | | "
                   f"{start_value:.2f} |"]
    if study.stages is not None:
        for st, row in zip(study.stages, study.stage_summary().to_dict("records")):
            value = study.objective(study.stage_point(st.name))["value"]
            _emit({"kind": "stage", "stage": st.name, "n_params": row["n_params"],
                   "window": [row["t_start"], row["t_end"]],
                   "n_complete": row["n_complete"], "n_failed": row["n_failed"],
                   "stage_best": row["best_value"], "whole_rmse": value,
                   "eval_seconds": row["seconds"]})
            stage_lines.append(f"| {st.name} | {row['n_params']} | {row['t_start']:.0f}-"
                               f"{row['t_end']:.0f} | {row['n_complete'] + row['n_failed']} "
                               f"| {row['seconds']:.0f} | {value:.2f} |")
    n_evals = int(len(study.evaluations))
    best_params, fit_value = dict(study.best_params), study.best_value
    label = f"{study.solver_settings['name']}, seed {study.solver_settings.get('seed', 0)}"
    chosen = study
    if polish is not None:
        n_evals += int(len(polish.evaluations))
        _emit({"kind": "polish", "solver": polish.solver_settings["name"],
               "n_evals": int(len(polish.evaluations)), "staged_best": study.best_value,
               "polish_best": polish.best_value})
        stage_lines.append(f"| polish ({polish.solver_settings['name']}) | "
                           f"{len(polish.space)} | whole | {len(polish.evaluations)} | | "
                           f"{polish.best_value:.2f} |")
        best_params.update(polish.best_params)
        fit_value, chosen = polish.best_value, polish
        label += f" + {polish.solver_settings['name']} polish"
    if args.take_cma_mean:
        mean = None if polish is None else _cma_mean(polish)
        if mean is None:
            raise SystemExit("--take-cma-mean needs an unstaged CMA-ES [polish] with at "
                             "least 2 completed generations")
        point, k = mean
        best_params.update(point)
        fit_value = math.nan
        label = f"{label}, cma mean averaged over the last {k} generations"
    refine = None
    if args.refine_evals:
        refine = _refine(polish or study, best_params, args, n_jobs, out_dir, stem)
        rows = refine.evaluations
        rec = {"kind": "refine", "n_evals": int(len(rows)), "seeds": refine.objective.seeds,
               "start_value": float(rows["value"].iloc[0]), "refine_best": refine.best_value}
        _emit(rec)
        stage_lines.append(f"| refine (pattern, seeds {format_seeds(rec['seeds'])}) | "
                           f"{len(refine.space)} | whole | {rec['n_evals']} | | "
                           f"{refine.best_value:.2f} (start {rec['start_value']:.2f}) |")
        n_evals += rec["n_evals"]
        best_params.update(refine.best_params)
        fit_value, chosen = refine.best_value, refine
        label += " + pattern refine"
    wall = _span(study, polish, refine) or 0.0

    # held-out trials, at the fit's own time step; further groups of as many
    # seeds show how much one group's score moves from trial noise alone
    # judged with the polish's objective (its trials' grouping), whose network
    # holds the staged values of any parameter the polish left out
    last = polish or study
    pobj = last.objective
    if pobj.dt != study.objective.dt:
        pobj = pobj.with_settings(dt=study.objective.dt)
    point = last.space.clip({**last.x0, **best_params})
    used = set(study.used_seeds()) | set(polish.used_seeds() if polish else ()) | set(
        refine.used_seeds() if refine else ())
    if used & all_held:
        raise SystemExit(f"--held-out seeds {format_seeds(all_held)} overlap seeds the fit "
                         f"used: {format_seeds(used & all_held)}")
    budget = None
    if len(groups) > 1 and pobj.metric == "rmse":
        full = pobj.error_budget(point, [s for g in groups for s in g], k=len(held_out))
        budget = {k: full[k] for k in ("expected", "bias2", "var", "k", "n_trials")}
        budget["share_below_goal"] = (float(np.mean(full["group_rmse"] < args.goal))
                                      if args.goal is not None else None)
    if budget is not None and pobj.scale != "fit":
        # smoothing and a fixed scale are linear: a group's score is that of
        # the average of its processed trials, already simulated above
        k = len(held_out)
        group_rmse = [float(np.sqrt(np.mean((full["trials"][i:i + k].mean(axis=0)
                                             - study.target.values) ** 2)))
                      for i in range(0, len(full["trials"]), k)]
        held = {"value": group_rmse[0], "scale": full["scale"]}
    else:
        held = pobj(point, seeds=held_out)
        group_rmse = [held["value"]] + [pobj(point, seeds=g)["value"] for g in groups[1:]]
    rec = {"kind": "fit", "config": str(args.config), "n_evals": n_evals, "wall_s": wall,
           "fit_seeds": chosen.used_seeds(), "fit_rmse": fit_value,
           "held_out": held_out, "held_out_rmse": held["value"],
           "held_out_scale": held["scale"], "goal": args.goal,
           "held_out_groups": groups, "held_out_group_rmse": group_rmse,
           "held_out_budget": budget, "best_params": best_params,
           "start_params": study.space.current_values(setup.net),
           "study": str(chosen.path)}
    _emit(rec)
    base = None
    if args.baseline_python:
        base = _baseline_fit(args.baseline_python, config, setup, study, n_evals, held_out,
                             out_dir, stem)
        _emit({"kind": "baseline", **base})
    for st in (study, polish, refine):
        if st is not None:
            st.close()
    lines += stage_lines + [""]
    objective = chosen.objective
    grouped = f", groups of {objective.group_size}" if objective.group_size else ""
    resampled = ", new ones per generation" if objective.resample else ""
    goal = "" if args.goal is None else f" | < {args.goal:g}"
    lines += [f"| fit | evaluations | wall | fit RMSE ({len(objective.seeds)} trials"
              f"{grouped}{resampled}) | held-out RMSE {format_seeds(held_out)}"
              f"{' | goal' if goal else ''} |",
              "| --- | ---: | ---: | ---: | ---:" + (" | ---: |" if goal else " |"),
              f"| {label} | {n_evals} | {wall / 60:.1f} min | {_fmt_value(fit_value)} | "
              f"{held['value']:.2f}{goal} |"]
    if base is not None:
        lines += [f"| {base['implementation']} Optimizer ({base['solver']}, whole space, "
                  f"hnn-core's RMSE of trials {format_seeds(range(base['n_trials']))}), this run | "
                  f"{base['n_evals']} | {base['wall_s'] / 60:.1f} min | {base['best']:.2f} | "
                  f"{base['held_out_rmse']:.2f}{goal} |", "",
                  f"measured in this run: wall time per evaluation, hnn-core "
                  f"{base['wall_s'] / base['n_evals']:.2f} s (one at a time) / hnnfit "
                  f"{wall / max(n_evals, 1):.2f} s (n_jobs {n_jobs}) = "
                  f"{base['wall_s'] / base['n_evals'] / (wall / max(n_evals, 1)):.2f}x; "
                  f"held-out RMSE hnnfit {held['value']:.2f} vs hnn-core "
                  f"{base['held_out_rmse']:.2f} (both scored by hnnfit on the same "
                  f"held-out trials)"]
    lines += [""]
    if len(groups) > 1:
        lines += ["| held-out group (seeds) | RMSE |", "| --- | ---: |"]
        lines += [f"| {g[0]}-{g[-1]} | {v:.2f} |" for g, v in zip(groups, group_rmse)]
        lines += [f"| mean of {len(groups)} groups | {sum(group_rmse) / len(groups):.2f} |"]
        if budget is not None:
            lines += [f"| expected {budget['k']}-trial RMSE from all {budget['n_trials']} "
                      f"trials, sqrt(bias² + var / {budget['k']}) | {budget['expected']:.2f} "
                      f"(bias² {budget['bias2']:.1f}, var {budget['var']:.1f}) |"]
            if budget["share_below_goal"] is not None:
                lines += [f"| share of all {budget['k']}-trial groups of these trials "
                          f"below {args.goal:g} | {budget['share_below_goal']:.0%} |"]
        lines += [""]
    if args.goal is not None:
        ok = held["value"] < args.goal and wall <= TIME_LIMIT_S
        lines += [f"{'PASS' if ok else 'FAIL'}: held-out RMSE {held['value']:.2f} "
                  f"{'<' if held['value'] < args.goal else '>='} {args.goal:g}, fit wall "
                  f"time {wall / 60:.1f} min (limit {TIME_LIMIT_S / 60:.0f})", ""]
    return lines


def _baseline_fit(python, config, setup, study, n_evals, held_out, out_dir, stem):
    """hnn-core's Optimizer on the fit's whole space with the same budget.

    hnn-core has no staged fit or polish: the baseline searches all of the
    fit's parameters at once, from the same start, for as many evaluations
    as the fit and its polish used together, with the config's solver if
    hnn-core has it (else Bayesian), the same target window, smoothing,
    fixed scale and number of trials. Its best point is then scored by
    hnnfit on the same held-out trials as the fit's.
    """
    from hnnfit.params import _resolve

    scale = setup.objective.get("scale", 3000.0)
    if isinstance(scale, str):
        raise SystemExit(f"--baseline-python needs a fixed [objective] scale (hnn-core has "
                         f"no fitted scale), got {scale!r}")
    solver = setup.solver.name if setup.solver.name in BASELINE_SOLVERS else "bayesian"
    seeds = list(study.objective.seeds)
    job = {"kind": "fit", "params": str(_resolve(config.network.params)),
           "mesh_shape": list(config.network.mesh_shape),
           "add_drives_from_params": config.network.add_drives_from_params,
           "legacy_mode": config.network.legacy_mode,
           "evoked_drives": config.network.evoked_drives,
           "space": [[p.name, p.low, p.high] for p in study.space],
           "x0": study.space.clip(study.x0),
           "target_file": write_target(study.target, out_dir / f"{stem}_baseline_target.txt"),
           "solver": solver, "n_evals": n_evals, "n_trials": len(seeds),
           "smooth_window": setup.objective.get("smooth_window"), "scale": scale,
           "seed": setup.solver.seed}
    rec = run_baseline(python, Path(__file__).resolve(), job)
    rec["n_trials"] = len(seeds)
    rec["held_out"] = held_out
    rec["held_out_rmse"] = study.objective.score_held_out(rec["best_params"],
                                                          held_out)["value"]
    return rec


def make_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?",
                   help="fit configuration (TOML), e.g. bench/configs/*.toml")
    p.add_argument("--held-out", type=_seed_list, nargs="+", default=[[100, 101, 102]],
                   metavar="SEEDS", help="seeds of the held-out trials: integers or ranges "
                   "A-B (default 100-102)")
    p.add_argument("--held-out-groups", type=int, default=1,
                   help="also score the point on this many groups of held-out seeds in "
                   "all (each as large as --held-out, seeds following it)")
    p.add_argument("--goal", type=float,
                   help="held-out RMSE to beat, nAm (prints PASS or FAIL)")
    p.add_argument("--n-jobs", type=int, help="evaluations run at once (default: the "
                   "config's [run] n_jobs)")
    p.add_argument("--out", help="folder of the study files (default: a new temporary "
                   "one); studies already there are continued")
    p.add_argument("--score", action="append", metavar="PARAMS",
                   help="also score this parameter file as it is (repeatable)")
    p.add_argument("--score-only", action="store_true",
                   help="only score the --score files; run no fit")
    p.add_argument("--take-cma-mean", action="store_true",
                   help="keep the CMA-ES polish's mean averaged over the second half of "
                   "its generations instead of its lowest value")
    p.add_argument("--refine-evals", type=int, default=0,
                   help="then refine the point kept with a pattern search of this many "
                   "evaluations (0: none)")
    p.add_argument("--refine-trials", type=int, default=12,
                   help="fixed trials of each refinement evaluation (seeds from 2000, or "
                   "from the first multiple of 1000 above the fit's)")
    p.add_argument("--refine-step", type=float, default=0.05,
                   help="initial stencil step, a fraction of each range")
    p.add_argument("--refine-line", type=float, nargs="*",
                   help="step multiples tried along the stencil's gradient (default "
                   "1 2 4; none for a compass search)")
    p.add_argument("--refine-only", action="append", metavar="NAME",
                   help="refine only this parameter, or this drive's (repeatable)")
    p.add_argument("--baseline-python", metavar="PATH",
                   help="also run hnn-core's Optimizer (this interpreter's, e.g. an "
                   "environment with hnn-core 0.6.1) on the fit's whole space with the same "
                   "budget, and score --score files with it, in the same run")
    p.add_argument("--baseline-child", help=argparse.SUPPRESS)
    p.add_argument("--refine-dt", type=float,
                   help="time step of the refinement, ms (default: the polish's)")
    return p


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.baseline_child:
        print(json.dumps(_baseline_child(args.baseline_child)), flush=True)
        return
    if args.config is None:
        parser.error("the following arguments are required: config")
    if args.held_out_groups < 1:
        raise SystemExit(f"--held-out-groups must be at least 1, got {args.held_out_groups}")
    if args.n_jobs is not None and args.n_jobs < 1:
        raise SystemExit(f"--n-jobs must be at least 1, got {args.n_jobs}")
    if args.refine_evals < 0 or args.refine_trials < 1:
        raise SystemExit(f"--refine-evals must be >= 0 and --refine-trials >= 1, got "
                         f"{args.refine_evals} and {args.refine_trials}")
    if args.refine_dt is not None and not args.refine_dt > 0:
        raise SystemExit(f"--refine-dt must be > 0 ms, got {args.refine_dt}")
    if not os.environ.get("HNNFIT_DATA") and SHARED_DATA.is_dir():
        os.environ["HNNFIT_DATA"] = str(SHARED_DATA)
    from hnnfit.sysinfo import machine_summary, sys_info

    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    # what a result depends on besides its arguments (hnnfit.sysinfo)
    print(f"# machine: {machine_summary(sys_info())}")
    print(f"# {platform.node()}, {os.cpu_count()} CPUs", flush=True)
    try:
        report = run(args)
    except (ValueError, FileNotFoundError) as err:
        # a bad configuration, reported as hnnfit fit reports it
        raise SystemExit(f"{args.config}: {err}") from None
    print()
    print("\n".join(report))


if __name__ == "__main__":
    main()
