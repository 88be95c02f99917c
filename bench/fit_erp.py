"""Staged fits of the recorded S1 ERPs, next to the hand-tuned parameter files.

Two tasks (the classic HNN targets, read through :mod:`hnnfit.datasets`, so
``$HNNFIT_DATA`` or a download provides them):

* ``yes``: the yes-trial S1 ERP (``yes_trial_S1_ERP_all_avg``), 30 ms
  smoothing, starting from the drives of ``ERPYes100Trials.param``;
* ``supra``: the supra-threshold ERP (``S1_SupraT``), 20 ms smoothing,
  starting from the drives of ``ERPYesSupraT.param``.

For each task the script

1. scores the hand-tuned parameter files with the same objective (RMSE on
   the data's time points, fixed scale 3000 unless ``--scale fit``): one
   trial (seed 0), the average of three trials (seeds 0-2; the convention of
   the numbers measured with the reference implementation, printed next to
   ours) and the held-out seeds;
2. runs a staged evoked fit (``hnnfit.Study.create(..., space=None,
   stages='evoked')``: the automatic parameter space of the network's
   evoked drives, one stage per drive group, then all parameters) whose
   evaluations average ``--fit-trials`` trials (seeds ``0..fit_trials-1``),
   or with ``--group-size k`` score the mean RMSE of their k-trial averages;
3. reports, after each stage, the RMSE of the best point carried forward on
   the whole waveform (fit seeds), the stage's evaluations and wall time;
4. optionally polishes the staged result (``--polish cma``): a second,
   unstaged study over all parameters that starts from the staged fit's
   best point with a local solver (``--polish-only`` restricts it to some
   parameters, ``--polish-override`` re-ranges or adds some); the better of
   the two on the fit seeds is kept, or with ``--select-top K`` the best of
   the staged point and the polish's K best points re-scored on fresh seeds
   (50 onwards; the held-out seeds play no part in the choice); with
   ``--select-means`` the candidates are the staged point and CMA-ES' means
   only, not single evaluations (whose low values are partly luck);
   ``--take-cma-mean`` keeps CMA-ES' mean averaged over the second half of
   its generations, with no re-scoring (no choice left to noise);
   ``--polish-dt`` runs the polish at another time step (e.g. 0.05 ms,
   about twice as fast: more evaluations in the same time);
   ``--refine pattern`` then refines the point kept with a deterministic
   stencil search (:class:`~hnnfit.fit.solvers.PatternSolver`) on fixed
   seeds (``--refine-trials`` of them, from 2000 or the first multiple of
   1000 above any seed the polish may use): the same trials for every
   point, so that small differences between nearby points are not drowned
   by trial noise, which a resampled CMA-ES polish cannot resolve;
5. scores the fitted parameters on held-out seeds (``--held-out``, default
   100-102: trials the fit never saw), the acceptance measure; with
   ``--held-out-groups K`` also on K-1 further groups of as many unseen
   seeds, to show how far trial noise alone moves that score. Held-out
   trials are always simulated at the staged fit's time step (0.025 ms),
   whatever ``--polish-dt`` searched at.

The parameter space is hnnfit's automatic one (``evoked_space``) unless
``--space wide`` widens it (see :func:`wide_overrides`) or ``--override``
sets single ranges. ``--add-drive`` adds an evoked drive to the start
network (e.g. a second late proximal volley for ``S1_SupraT``); the
automatic space and the stages take it in like the file's own drives.

Usage::

    python bench/fit_erp.py                          # both tasks, scale 3000
    python bench/fit_erp.py --task yes --scale fit   # the fitted-scale variant
    python bench/fit_erp.py --score-only             # only the hand-tuned files
    python bench/fit_erp.py --task supra --space wide --stage-evals evprox1=40 \
        --polish cma --polish-evals 150            # wider ranges, local polish

Prints a JSON line per result and a markdown table per task.
"""
import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_PARAMS = SHARED / "params"
SHARED_DATA = SHARED / "data" / "MEG_detection_data"

TASKS = {
    "yes": {
        "dataset": "yes_trial_S1_ERP_all_avg", "smooth": 30.0,
        "start": "ERPYes100Trials.param",
        # measured with hnn-core 0.6.1 (fixed scale 3000): 1 trial / 3 trials
        "reference": {"ERPYes100Trials.param": (15.02, 6.53), "default.json": (7.01, 5.37)},
        "goal": 5.37,
    },
    "supra": {
        "dataset": "S1_SupraT", "smooth": 20.0,
        "start": "ERPYesSupraT.param",
        "reference": {"ERPYesSupraT.param": (30.92, 21.78)},
        # the HNN tutorial's stepwise hand fit, after three rounds of 1-3 h
        "goal": 10.4,
    },
}
TIME_LIMIT_S = 2 * 3600.0
SELECT_SEED0 = 50     # first seed of --select-top's re-scoring
RESAMPLE_SEED0 = 1000  # first seed of a --polish-resample polish (one span per batch)
REFINE_SEED0 = 2000   # first seed of --refine's fixed trials


def _param_path(name, params_dir):
    for folder in (params_dir, SHARED_PARAMS):
        if folder is not None and (Path(folder) / name).is_file():
            return Path(folder) / name
    from hnnfit._resources import params_dir as bundled

    if (bundled() / name).is_file():
        return bundled() / name
    raise FileNotFoundError(f"parameter file {name!r} not found in {params_dir or '-'}, "
                            f"{SHARED_PARAMS} or hnnfit's params folder")


def _network(name, params_dir):
    from hnnfit import Network
    from hnnfit.params import read_params

    return Network(read_params(_param_path(name, params_dir)), add_drives_from_params=True)


def _add_drives(net, specs):
    """The start network with the evoked drives of ``--add-drive`` added.

    Each spec is the JSON text of :meth:`Network.add_evoked_drive`'s keywords
    (``name``, ``mu`` and ``sigma`` in ms, ``location``, ``weights_ampa`` and
    ``weights_nmda`` in uS per cell type, ...; ``numspikes`` defaults to 1).
    The automatic space and the stages then include the new drive like the
    file's own.
    """
    if not specs:
        return net
    import json

    from hnnfit.network import add_evoked_drives

    net = net.copy()
    for text in specs:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise SystemExit(f"--add-drive must be a JSON object of add_evoked_drive's "
                             f"keywords, got {text!r} ({err.msg})") from None
        try:
            add_evoked_drives(net, [spec], what="--add-drive")
        except (TypeError, ValueError) as err:
            raise SystemExit(str(err)) from None
    return net


def _score(net, target, seeds, smooth, scale, engine):
    """RMSE of a network as it is (no fitted parameter) on ``seeds``."""
    from hnnfit.fit import DipoleObjective
    from hnnfit.fit.space import evoked_space

    space = evoked_space(net, tstop=float(target.times[-1]))
    obj = DipoleObjective(net, target, space, n_trials=len(seeds), seeds=list(seeds),
                          smooth_window=smooth, scale=scale, engine=engine)
    t0 = time.perf_counter()
    res = obj(space.current_values(net))
    return res["value"], res["scale"], time.perf_counter() - t0


# --space wide: the automatic ranges, loosened where fits of the recorded
# ERPs pressed against them (a drive's spread and its larger weights).
WIDE_TIMING_HALF_WIDTH = 15.0   # ms (automatic: 10)
WIDE_SIGMA_DIVISOR = 10.0       # sigma from sigma / 10 (automatic: / 3) ...
WIDE_SIGMA_FACTOR = 4.0         # ... to max(4 sigma, sigma + 10 ms) (automatic: 3, + 5)
WIDE_WEIGHT_FACTOR = 5.0        # weights up to max(1 uS, 5 w) (automatic: 2 w) ...
WIDE_WEIGHT_LIMIT = 10.0        # ... unless w > 10 uS: such a drive already fires
                                # every cell it reaches, more does not change it


def wide_overrides(net, tstop):
    """Overrides of ``evoked_space`` that widen its ranges around the start values.

    For every parameter of the automatic space of ``net``'s evoked drives:
    means ``mu +- max(3 sigma, 15 ms)`` (within ``[0, tstop]``), spreads
    ``max(0.1, sigma / 10)`` to ``max(4 sigma, sigma + 10)`` ms, and
    non-zero weights ``w / 10`` to ``min(10 w, max(1, 5 w))`` uS (log
    scale; weights above 10 uS keep the automatic range). Absent
    (zero-weight) synapses stay absent.

    Returns
    -------
    dict
        ``{parameter name: (low, high[, {'log': True}])}``.
    """
    from hnnfit.fit.space import SIGMA_MIN, WEIGHT_CAP, evoked_space

    auto = evoked_space(net, tstop=tstop)
    out = {}
    for p in auto:
        drive, key = p.name.split(".", 1)
        dyn = net.external_drives[drive]["dynamics"]
        mu, sigma = float(dyn["mu"]), float(dyn["sigma"])
        if key == "mu":
            half = max(3.0 * sigma, WIDE_TIMING_HALF_WIDTH)
            out[p.name] = (max(0.0, mu - half), min(mu + half, tstop))
        elif key == "sigma":
            out[p.name] = (min(sigma, max(SIGMA_MIN, sigma / WIDE_SIGMA_DIVISOR)),
                           max(WIDE_SIGMA_FACTOR * sigma, sigma + 10.0))
        elif key.split(".")[0] in ("ampa", "nmda"):
            w = p.low * 10.0       # the automatic low bound is w / 10
            if w > WIDE_WEIGHT_LIMIT:
                continue
            high = min(10.0 * w, max(WEIGHT_CAP, WIDE_WEIGHT_FACTOR * w))
            out[p.name] = (p.low, max(high, p.high), {"log": True})
    return out


def _parse_pairs(items, what, convert):
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"{what} must be NAME=VALUE, got {item!r}")
        out[name] = convert(value)
    return out


def _range(text):
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise SystemExit(f"--override range must be LOW:HIGH or LOW:HIGH:log, got {text!r}")
    low, high = float(parts[0]), float(parts[1])
    return (low, high, {"log": True}) if len(parts) == 3 else (low, high)


def _select(study, polish, staged_value, top, seeds, n_jobs, surrogate=(), surrogate_last=None):
    """Re-score the staged point and the ``top`` best polish points on ``seeds``.

    ``staged_value`` is the staged point's value on the polish's objective.
    A CMA-ES polish adds its final mean and its means averaged over the
    last 5 generations and over the second half of the run; each radius in
    ``surrogate`` adds the minimum of the polish's pooled waveform model
    (:meth:`Study.surrogate_point`, over its ``surrogate_last`` last
    evaluations) within that radius. Returns the full parameter dict of the
    best there, its value on the polish's trials, a label, and one record
    per candidate.
    """
    from hnnfit.fit.optimize import _Executor

    table = polish.rescore(seeds, top=top, n_jobs=n_jobs) if top else None
    extra = {"staged": polish.space.clip({**polish.x0, **study.best_params})}
    solver = getattr(polish, "solver_", None)
    means = getattr(solver, "means", None)
    if means:
        # with resampled trials the mean chases each generation's noise;
        # averaged over generations it settles (an average of iterates)
        extra["cma mean"] = polish.space.clip(means[-1])
        for k in sorted({min(5, len(means)), len(means) // 2} - {0, 1}):
            extra[f"cma mean averaged over the last {k} generations"] = polish.space.clip(
                solver.averaged_mean(k))
    for radius in surrogate:
        point, _ = polish.surrogate_point(radius=radius, last=surrogate_last)
        extra[f"waveform model minimum (radius {radius:g})"] = polish.space.clip(point)
    labels = list(extra)
    values = {}
    with _Executor("loky" if n_jobs > 1 else "sequential", n_jobs, None) as ex:
        for i, res in ex.run(polish.objective, [extra[k] for k in labels], seeds):
            values[labels[i]] = res["value"] if res["ok"] else math.nan
    # a mean was never evaluated during the fit: no value on the fit's trials
    sel = [{"candidate": k, "fit_value": staged_value if k == "staged" else math.nan,
            "value": values[k]} for k in labels]
    sel += [{"candidate": int(r["id"]), "fit_value": float(r["value"]),
             "value": float(r["rescored"])} for _, r in
            (table.iterrows() if table is not None else ())]
    best = min(sel, key=lambda r: math.inf if math.isnan(r["value"]) else r["value"])
    if best["candidate"] == "staged":
        point, label = extra["staged"], "staged point"
    elif best["candidate"] in extra:
        point, label = extra[best["candidate"]], best["candidate"]
    else:
        row = table[table["id"] == best["candidate"]].iloc[0]
        point = {n: float(row[n]) for n in polish.space.names}
        label = f"polish evaluation {best['candidate']}"
    return ({**study.best_params, **point}, best["fit_value"],
            f"{label}, selected on seeds {seeds[0]}-{seeds[-1]}", sel)


def _optimize(study, n_evals, args, **kwargs):
    """Run ``study.optimize``; stop the script if it was interrupted.

    An interrupted loop returns normally (what finished is recorded); going
    on would build the next study from an unfinished one's best point.
    """
    summary = study.optimize(n_evals, n_jobs=args.n_jobs, progress=not args.quiet, **kwargs)
    if getattr(summary, "interrupted", False):
        raise SystemExit(f"interrupted; {study.n_complete + study.n_failed} evaluations "
                         f"recorded in {study.path}. Run the same command with --resume to "
                         f"continue.")
    return summary


def _fmt_value(value):
    # a CMA-ES mean chosen by --select-top was not evaluated during the fit
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _polish_seeds(args, span=1):
    """Seeds of the polish's first batch (``span`` > 1: of its first ``span`` batches)."""
    n = args.polish_trials if args.polish_trials is not None else args.fit_trials
    if not args.polish_resample:
        return list(range(n))
    return list(range(RESAMPLE_SEED0, RESAMPLE_SEED0 + n * max(span, 1)))


def _refine_seeds(args):
    """Fixed seeds of --refine: from the first multiple of 1000 (at least
    REFINE_SEED0) above every seed the fit and the polish can use."""
    if not args.refine:
        return []
    polish = _polish_seeds(args, span=args.polish_evals or 0)
    first = max(REFINE_SEED0, 1000 * (max(polish + [args.fit_trials - 1]) // 1000 + 1))
    return list(range(first, first + args.refine_trials))


def _span(*studies):
    """Seconds from the first evaluation to the last of ``studies`` (None if empty)."""
    tables = [t for t in (st.trials for st in studies if st is not None) if len(t)]
    if not tables:
        return None
    return (max(float(t["end_time"].max()) for t in tables)
            - min(float(t["start_time"].min()) for t in tables))


def _emit(record):
    print(json.dumps(record), flush=True)


def run_task(key, args, out_dir):
    import numpy as np

    from hnnfit.datasets import fetch_dataset
    from hnnfit.fit import Study
    from hnnfit.fit.targets import read_target
    from hnnfit.validation import format_seeds

    task = TASKS[key]
    name = f"{task['dataset']}.txt"
    if args.data_dir is not None:
        target = read_target(Path(args.data_dir) / name)
    elif not os.environ.get("HNNFIT_DATA") and (SHARED_DATA / name).is_file():
        # read in place (fetch_dataset would treat the folder as its cache)
        target = read_target(SHARED_DATA / name)
    else:
        target = read_target(fetch_dataset(task["dataset"]))
    scale = args.scale
    smooth = task["smooth"]
    held_out = list(args.held_out)
    fit_seeds = list(range(args.fit_trials))
    groups = [held_out] + [[max(held_out) + 1 + g * len(held_out) + i
                            for i in range(len(held_out))]
                           for g in range(args.held_out_groups - 1)]
    select_seeds = list(range(SELECT_SEED0, SELECT_SEED0 + args.select_trials)) \
        if args.select_top or args.select_means else []
    used = set(fit_seeds) | set(_polish_seeds(args, span=args.polish_evals or 0))
    used |= set(_refine_seeds(args))
    if used & set(select_seeds):
        raise SystemExit(f"the selection's seeds {format_seeds(select_seeds)} (--select-top, "
                         f"--select-means) overlap the fit seeds {format_seeds(used)}")
    used |= set(select_seeds)
    if used & {s for g in groups for s in g}:
        raise SystemExit(f"--held-out seeds {format_seeds(s for g in groups for s in g)} "
                         f"overlap the fit seeds {format_seeds(used)}")
    # checked before anything runs: a bad --add-drive stops here
    start_net = _add_drives(_network(task["start"], args.params_dir), args.add_drive)
    lines = [f"### {key}: {task['dataset']} ({smooth:g} ms smoothing, scale {scale})", ""]

    # 1. the hand-tuned files, scored with the same objective
    rows = []
    for name, ref in task["reference"].items():
        net = _network(name, args.params_dir)
        one, _, _ = _score(net, target, [0], smooth, scale, args.engine)
        three, _, _ = _score(net, target, [0, 1, 2], smooth, scale, args.engine)
        held, _, _ = _score(net, target, held_out, smooth, scale, args.engine)
        rec = {"task": key, "kind": "hand-tuned", "file": name, "scale": scale,
               "rmse_1trial": one, "rmse_3trials": three, "rmse_held_out": held,
               "reference_1trial": ref[0] if scale != "fit" else None,
               "reference_3trials": ref[1] if scale != "fit" else None}
        _emit(rec)
        rows.append(rec)
    lines += ["| hand-tuned file | RMSE 1 trial (seed 0) | 3 trials (0-2) | held-out "
              f"{held_out} | reference 1 / 3 trials |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ref = (f"{r['reference_1trial']:.2f} / {r['reference_3trials']:.2f}"
               if r["reference_1trial"] is not None else "n/a")
        lines.append(f"| {r['file']} | {r['rmse_1trial']:.2f} | {r['rmse_3trials']:.2f} | "
                     f"{r['rmse_held_out']:.2f} | {ref} |")
    lines.append("")
    if args.score_only:
        return lines

    # 2. the staged fit from the hand-tuned file's drives (plus any --add-drive)
    net = start_net
    path = out_dir / f"fit_erp_{key}_{'fit' if scale == 'fit' else 'fixed'}.sqlite"
    if path.exists() and not args.resume:
        path.unlink()
    objective = {"n_trials": len(fit_seeds), "seeds": fit_seeds, "smooth_window": smooth,
                 "scale": scale, "engine": args.engine, "group_size": args.group_size}
    tstop = float(target.times[-1])
    overrides = wide_overrides(net, tstop) if args.space == "wide" else {}
    overrides.update(_parse_pairs(args.override, "--override", _range))
    solver_options = _parse_pairs(args.solver_option, "--solver-option", json.loads)
    study = Study.create(path, net, target, space=overrides or None, objective=objective,
                         solver=args.solver, solver_options=solver_options or None,
                         seed=args.seed, stages="evoked",
                         description=f"bench/fit_erp.py {key}", exist_ok=args.resume)
    if overrides:
        _emit({"task": key, "kind": "space", "space": args.space,
               "parameters": [p.to_dict() for p in study.space]})
    n_staged = (args.n_evals - (args.polish_evals if args.polish else 0)
                - (args.refine_evals if args.refine else 0))
    if n_staged < 1:
        raise SystemExit(f"--n-evals must exceed --polish-evals ({args.polish_evals}) plus "
                         f"--refine-evals ({args.refine_evals if args.refine else 0}), "
                         f"got {args.n_evals}")
    stage_evals = _parse_pairs(args.stage_evals, "--stage-evals", int) or None
    if stage_evals is not None:
        # stages not named share what is left of the staged budget
        from hnnfit.fit.staging import split_budget

        stage_evals = split_budget(n_staged, study.stages, frozen=stage_evals)
    t0 = time.perf_counter()
    _optimize(study, n_staged, args, stage_evals=stage_evals)
    staged_wall = time.perf_counter() - t0
    polish = None
    if args.polish:
        ppath = out_dir / f"fit_erp_{key}_{'fit' if scale == 'fit' else 'fixed'}_polish.sqlite"
        if ppath.exists() and not args.resume:
            ppath.unlink()
        popts = {"sigma0": args.polish_sigma} if args.polish == "cma" else \
            {"rhobeg": args.polish_sigma} if args.polish == "cobyla" else {}
        if args.polish_popsize is not None:
            popts["popsize"] = args.polish_popsize
        pobjective = {}
        if args.polish_trials is not None or args.polish_resample:
            pobjective = {"seeds": _polish_seeds(args),
                          "resample": bool(args.polish_resample)}
        if args.polish_dt is not None:
            pobjective["dt"] = args.polish_dt
        try:
            # the polish starts from the staged best point; an override
            # re-ranges a parameter or adds one (an absent synapse from 0 uS)
            polish = study.create_polish(
                ppath, overrides=_parse_pairs(args.polish_override, "--polish-override",
                                              _range),
                only=args.polish_only, objective=pobjective or None, solver=args.polish,
                solver_options=popts or None,
                seed=args.seed if args.polish_seed is None else args.polish_seed,
                description=f"bench/fit_erp.py {key} polish", exist_ok=args.resume)
        except ValueError as err:
            raise SystemExit(f"--polish-only / --polish-override: {err}") from None
        _optimize(polish, args.polish_evals, args)
    wall = time.perf_counter() - t0
    if args.resume:
        # a resumed fit's wall times span its first to its last evaluation
        # (any pause between the runs included), not just this invocation
        staged_wall = _span(study) or staged_wall
        wall = _span(study, polish) or wall

    # 3. after each stage: the carried point on the whole waveform
    summary = study.stage_summary()
    start_value = study.objective(study.space.clip(study.x0))["value"]
    stage_lines = ["| after stage | parameters | window (ms) | evaluations | simulation s "
                   "(summed over workers) | whole-waveform RMSE (fit seeds) |",
                   "| --- | ---: | --- | ---: | ---: | ---: |",
                   f"| (start: {task['start']}) | | | | | {start_value:.2f} |"]
    for st, row in zip(study.stages, summary.to_dict("records")):
        point = study.stage_point(st.name)
        value = study.objective(point)["value"]
        rec = {"task": key, "kind": "stage", "stage": st.name, "scale": scale,
               "n_params": row["n_params"], "window": [row["t_start"], row["t_end"]],
               "n_complete": row["n_complete"], "n_failed": row["n_failed"],
               "stage_best": row["best_value"], "whole_rmse": value,
               "eval_seconds": row["seconds"]}
        _emit(rec)
        stage_lines.append(f"| {st.name} | {row['n_params']} | {row['t_start']:.0f}-"
                           f"{row['t_end']:.0f} | {row['n_complete'] + row['n_failed']} | "
                           f"{row['seconds']:.0f} | {value:.2f} |")

    n_evals = int(len(study.trials))
    chosen, label = study, f"{args.solver}, seed {args.seed}"
    if polish is not None:
        n_evals += int(len(polish.trials))
        rec = {"task": key, "kind": "polish", "solver": args.polish,
               "n_evals": int(len(polish.trials)), "staged_wall_s": staged_wall,
               "polish_wall_s": wall - staged_wall, "staged_best": study.best_value,
               "polish_best": polish.best_value}
        stage_lines.append(f"| polish ({args.polish}) | {len(polish.space)} | "
                           f"whole | {rec['n_evals']} | | {polish.best_value:.2f} |")
        # chosen on the fit seeds only; a polish on other trials compares
        # with the staged point scored on its own objective
        staged_value = study.best_value
        if args.polish_trials is not None:
            staged_value = polish.objective(polish.space.clip(
                {**polish.x0, **study.best_params}))["value"]
            rec["staged_best_on_polish_trials"] = staged_value
        _emit(rec)
        if polish.best_value < staged_value:
            chosen, label = polish, f"{args.solver} staged + {args.polish} polish"
    best_params = {**study.best_params, **chosen.best_params}
    fit_value = chosen.best_value
    if polish is not None and (args.select_top or args.select_means):
        # the best value of a noisy objective is the luckiest, not the best,
        # point: re-score the leading candidates on fresh seeds and keep the
        # best there (the held-out seeds still play no part)
        t1 = time.perf_counter()
        best_params, fit_value, label, sel = _select(study, polish, staged_value,
                                                     args.select_top, select_seeds,
                                                     args.n_jobs, args.surrogate_radius or (),
                                                     args.surrogate_last)
        wall += time.perf_counter() - t1
        stage_lines.append(f"| selection: {len(sel)} candidates re-scored on seeds "
                           f"{select_seeds[0]}-{select_seeds[-1]} | | | {len(sel)} | | "
                           f"{min(r['value'] for r in sel):.2f} |")
        _emit({"task": key, "kind": "selection", "seeds": select_seeds, "candidates": sel})
    if args.take_cma_mean:
        # no choice among candidates whose scores differ by less than their
        # noise: CMA-ES' mean averaged over the second half of the run (the
        # point 'hnnfit budget --point cma-mean' scores)
        solver = getattr(polish, "solver_", None)
        means = getattr(solver, "means", None) or []
        if len(means) >= 2:
            k = solver.averaging_window()
            best_params = {**study.best_params, **polish.space.clip(solver.averaged_mean(k))}
            fit_value = math.nan
            label = f"cma mean averaged over the last {k} generations"
        else:
            print(f"--take-cma-mean: the polish completed {len(means)} generation(s), "
                  f"fewer than 2; keeping its best point", flush=True)

    refine = None
    if args.refine:
        rpath = out_dir / f"fit_erp_{key}_{'fit' if scale == 'fit' else 'fixed'}_refine.sqlite"
        if rpath.exists() and not args.resume:
            rpath.unlink()
        robjective = {"seeds": _refine_seeds(args), "resample": False}
        if args.refine_dt is not None:
            robjective["dt"] = args.refine_dt
        ropts = {"step": args.refine_step}
        if args.refine_line is not None:
            ropts["line"] = args.refine_line
        t1 = time.perf_counter()
        try:
            # from the point kept so far (e.g. CMA-ES' averaged mean), not the
            # polish's luckiest evaluation
            refine = polish.create_polish(
                rpath, only=args.refine_only, objective=robjective, solver="pattern",
                solver_options=ropts,
                start={n: best_params[n] for n in polish.space.names},
                description=f"bench/fit_erp.py {key} refine", exist_ok=args.resume)
        except ValueError as err:
            raise SystemExit(f"--refine-only / --refine-step / --refine-line: {err}") from None
        _optimize(refine, args.refine_evals, args)
        wall = (_span(study, polish, refine) if args.resume else None) or \
            wall + time.perf_counter() - t1
        rec = {"task": key, "kind": "refine", "n_evals": int(len(refine.trials)),
               "seeds": robjective["seeds"], "start_value": refine.trials["value"].iloc[0],
               "refine_best": refine.best_value, "steps": [s for _, s in refine.solver_.history]}
        _emit(rec)
        stage_lines.append(f"| refine (pattern, seeds {format_seeds(robjective['seeds'])}) | "
                           f"{len(refine.space)} | "
                           f"whole | {rec['n_evals']} | | {refine.best_value:.2f} "
                           f"(start {rec['start_value']:.2f}) |")
        n_evals += rec["n_evals"]
        best_params = {**best_params, **refine.best_params}
        fit_value = refine.best_value
        chosen, label = refine, f"{label} + pattern refine"

    # 5. held-out trials; further groups of as many seeds show how much the
    # score of one group moves from trial noise alone (the acceptance
    # measure stays the first group, chosen before the fit)
    pobj = (polish if polish is not None else study).objective
    if pobj.dt != study.objective.dt:
        # a polish that searched at a coarser time step: its point is
        # judged at the fit's own (the reference's) step
        pobj = pobj.with_settings(dt=study.objective.dt)
    point = (polish.space.clip({**polish.x0, **best_params}) if polish is not None
             else best_params)
    # all groups' trials pooled: the expected score of a k-trial average,
    # split into the mean waveform's error and the trials' spread
    budget = None
    if len(groups) > 1 and pobj.metric == "rmse":
        full = pobj.error_budget(point, [s for g in groups for s in g], k=len(held_out))
        goal = task["goal"] if scale != "fit" else None
        budget = {k: full[k] for k in ("expected", "bias2", "var", "k", "n_trials")}
        budget["share_below_goal"] = (float(np.mean(full["group_rmse"] < goal))
                                      if goal is not None else None)
    if budget is not None and scale != "fit":
        # smoothing and a fixed scale are linear: a group's score is that of
        # the average of its processed trials, already simulated above
        k = len(held_out)
        group_rmse = [float(np.sqrt(np.mean((full["trials"][i:i + k].mean(axis=0)
                                             - target.values) ** 2)))
                      for i in range(0, len(full["trials"]), k)]
        held = {"value": group_rmse[0], "scale": full["scale"]}
    else:
        held = pobj.validate(point, held_out)
        group_rmse = [held["value"]] + [pobj.validate(point, g)["value"] for g in groups[1:]]
    rec = {"task": key, "kind": "fit", "scale": scale, "solver": args.solver,
           "polish": args.polish, "seed": args.seed, "n_evals": n_evals, "wall_s": wall,
           "fit_seeds": chosen.used_seeds(), "group_size": args.group_size,
           "fit_rmse": fit_value,
           "held_out": held_out, "held_out_rmse": held["value"],
           "held_out_scale": held["scale"], "goal": task["goal"],
           "held_out_groups": groups, "held_out_group_rmse": group_rmse,
           "held_out_budget": budget,
           "best_params": best_params,
           "start_params": study.space.current_values(net),
           "study": str(chosen.path)}
    _emit(rec)
    study.close()
    if polish is not None:
        polish.close()
    if refine is not None:
        refine.close()
    hand_held = rows[0]["rmse_held_out"]
    lines += stage_lines + [""]
    grouped = f", groups of {args.group_size}" if args.group_size else ""
    resampled = ", new ones per generation" if chosen.objective.resample else ""
    lines += [f"| staged fit | evaluations | wall | fit RMSE "
              f"({len(chosen.objective.seeds)} trials{grouped}{resampled}) | "
              f"held-out RMSE {held_out} | hand-tuned held-out | goal |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {label} | {rec['n_evals']} | {wall / 60:.1f} min | "
              f"{_fmt_value(rec['fit_rmse'])} | {rec['held_out_rmse']:.2f} | "
              f"{hand_held:.2f} | "
              f"< {task['goal']:g} |", ""]
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
                          f"below {task['goal']:g} | {budget['share_below_goal']:.0%} |"]
        lines += [""]
    if scale != "fit":
        ok = rec["held_out_rmse"] < task["goal"] and wall <= TIME_LIMIT_S
        lines.append(f"{'PASS' if ok else 'FAIL'}: held-out RMSE {rec['held_out_rmse']:.2f} "
                     f"{'<' if rec['held_out_rmse'] < task['goal'] else '>='} "
                     f"{task['goal']:g}, fit wall time {wall / 60:.1f} min (limit 120)")
        lines.append("")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["yes", "supra", "both"], default="both")
    parser.add_argument("--scale", default="3000",
                        help="fixed dipole scale, or 'fit' (least squares per evaluation)")
    parser.add_argument("--n-evals", type=int, default=150, help="total budget per fit")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--fit-trials", type=int, default=3,
                        help="trials averaged per evaluation (seeds 0..n-1)")
    parser.add_argument("--group-size", type=int,
                        help="score each evaluation as the mean RMSE of the averages of "
                        "this many fit trials (e.g. 3 with --fit-trials 6: what 3-trial "
                        "averages score, trial-to-trial variability included); default: "
                        "the RMSE of the average of all fit trials")
    parser.add_argument("--held-out", type=int, nargs="+", default=[100, 101, 102],
                        help="seeds of the held-out trials")
    parser.add_argument("--held-out-groups", type=int, default=1,
                        help="also score the fitted parameters on this many groups of "
                        "held-out seeds in all (each as large as --held-out, seeds "
                        "following it), to show the trial-to-trial spread")
    parser.add_argument("--solver", default="bayesian", help="solver of the staged fit")
    parser.add_argument("--solver-option", action="append", metavar="NAME=JSON",
                        help="option of the staged fit's solver, e.g. n_initial_points=15")
    parser.add_argument("--space", choices=["auto", "wide"], default="auto",
                        help="'auto': evoked_space's ranges; 'wide': loosened ranges "
                        "(see wide_overrides)")
    parser.add_argument("--override", action="append", metavar="NAME=LOW:HIGH[:log]",
                        help="range of one parameter (replaces or adds it)")
    parser.add_argument("--add-drive", action="append", metavar="JSON",
                        help="add an evoked drive to the fit's start network (not to the "
                        "hand-tuned files' scores): add_evoked_drive's keywords as a JSON "
                        "object, e.g. '{\"name\": \"evprox3\", \"mu\": 130, \"sigma\": 5, "
                        "\"location\": \"proximal\", \"weights_ampa\": {\"L5_pyramidal\": 2}}' "
                        "(ms, uS; numspikes 1 unless given); repeatable")
    parser.add_argument("--stage-evals", action="append", metavar="STAGE=N",
                        help="evaluations of one stage of the staged fit (the others "
                        "share the rest of the staged budget)")
    parser.add_argument("--polish", choices=["cma", "cobyla", "bayesian"],
                        help="after the staged fit, a local fit of all parameters from "
                        "its best point with this solver (part of --n-evals)")
    parser.add_argument("--polish-evals", type=int, default=100,
                        help="evaluations of the polish (taken from --n-evals)")
    parser.add_argument("--polish-trials", type=int,
                        help="trials of each polish evaluation (seeds 0..n-1; default "
                        "--fit-trials): a cheap, noisy staged fit refined on more trials")
    parser.add_argument("--polish-resample", action="store_true",
                        help="give each polish batch (a CMA-ES generation) new seeds, "
                        "from 1000 on, instead of the same ones for every evaluation; "
                        "the CMA-ES mean then becomes a --select-top candidate")
    parser.add_argument("--polish-popsize", type=int,
                        help="CMA-ES population size of the polish (default: CMA-ES' own)")
    parser.add_argument("--polish-override", action="append", metavar="NAME=LOW:HIGH[:log]",
                        help="range of one parameter in the polish only (replaces it, or "
                        "adds a parameter the staged fit left out, started from the "
                        "network's value)")
    parser.add_argument("--polish-only", action="append", metavar="NAME",
                        help="polish only this parameter, or this drive's parameters "
                        "(repeatable); the others keep the staged fit's values")
    parser.add_argument("--select-top", type=int, default=0,
                        help="after the polish, re-score the staged point and this many "
                        "best polish points on --select-trials fresh seeds and keep the "
                        "best there (0: keep the polish's best value)")
    parser.add_argument("--select-means", action="store_true",
                        help="re-score (as --select-top does) the staged point and the "
                        "CMA-ES polish's means only; with --select-top K also its K "
                        "best single evaluations")
    parser.add_argument("--take-cma-mean", action="store_true",
                        help="keep the CMA-ES polish's mean averaged over the second "
                        "half of its generations, without re-scoring any candidate")
    parser.add_argument("--surrogate-radius", type=float, action="append",
                        help="with --select-top: also a candidate from a quadratic model "
                        "of the waveform pooled over the polish's evaluations, its "
                        "minimum within this many standard deviations of them "
                        "(repeatable)")
    parser.add_argument("--surrogate-last", type=int,
                        help="fit that model to the polish's last N evaluations only")
    parser.add_argument("--select-trials", type=int, default=12,
                        help="trials of the re-scoring (seeds from 50)")
    parser.add_argument("--polish-sigma", type=float, default=0.1,
                        help="initial step of the polish on the unit cube (CMA sigma0 "
                        "or COBYLA rhobeg)")
    parser.add_argument("--polish-dt", type=float,
                        help="time step of the polish's simulations in ms (default: the "
                        "staged fit's, 0.025); held-out trials always use 0.025")
    parser.add_argument("--refine", choices=["pattern"],
                        help="after the polish (and --take-cma-mean), refine the point "
                        "kept with a stencil search on fixed seeds (part of --n-evals)")
    parser.add_argument("--refine-evals", type=int, default=100,
                        help="evaluations of the refinement (taken from --n-evals)")
    parser.add_argument("--refine-trials", type=int, default=12,
                        help="trials of each refinement evaluation, the same for every "
                        "point (seeds from 2000, or from the first multiple of 1000 above "
                        "the polish's)")
    parser.add_argument("--refine-step", type=float, default=0.05,
                        help="initial stencil step on the unit cube (a fraction of each "
                        "range)")
    parser.add_argument("--refine-line", type=float, nargs="*",
                        help="step multiples tried along the stencil's gradient "
                        "(default 1 2 4; none for a compass search)")
    parser.add_argument("--refine-only", action="append", metavar="NAME",
                        help="refine only this parameter, or this drive's parameters "
                        "(repeatable)")
    parser.add_argument("--refine-dt", type=float,
                        help="time step of the refinement's simulations in ms (default: "
                        "the polish's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--polish-seed", type=int,
                        help="seed of the polish's solver (default --seed): another "
                        "polish path from the same staged point")
    parser.add_argument("--engine", default="auto",
                        help="'auto' (CoreNEURON where it compiles), 'coreneuron', 'neuron'")
    parser.add_argument("--params-dir", help="folder of the hand-tuned parameter files "
                        "(default: ../shared/params beside the repository)")
    parser.add_argument("--data-dir", help="folder holding the recorded datasets (default: "
                        "$HNNFIT_DATA, else ../shared/data/MEG_detection_data beside the "
                        "repository, else a download into hnnfit's data cache)")
    parser.add_argument("--out", help="folder for the study files (default: a temporary one)")
    parser.add_argument("--resume", action="store_true",
                        help="continue existing study files in --out instead of restarting")
    parser.add_argument("--score-only", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    args.scale = "fit" if args.scale == "fit" else float(args.scale)
    counts = [args.fit_trials, len(args.held_out)] + (
        [args.polish_trials] if args.polish_trials is not None else []) + (
        [args.refine_trials] if args.refine else [])
    if args.group_size is not None and (args.group_size < 1
                                        or any(n % args.group_size for n in counts)):
        raise SystemExit(f"--group-size must divide --fit-trials, --polish-trials, "
                         f"--refine-trials and the number of --held-out seeds ({', '.join(map(str, counts))}), got "
                         f"{args.group_size}")
    if args.select_top < 0 or (args.select_top and not args.polish):
        raise SystemExit(f"--select-top must be >= 0 and needs --polish, got "
                         f"{args.select_top}" + ("" if args.polish else " without --polish"))
    if args.select_means and args.polish != "cma":
        raise SystemExit(f"--select-means needs --polish cma (the means are CMA-ES'), got "
                         f"--polish {args.polish}")
    if args.take_cma_mean and (args.polish != "cma" or args.select_top or args.select_means):
        raise SystemExit("--take-cma-mean needs --polish cma and excludes --select-top and "
                         f"--select-means, got --polish {args.polish}, --select-top "
                         f"{args.select_top}" + (", --select-means" if args.select_means
                                                 else ""))
    if (args.surrogate_radius or args.surrogate_last) and not (args.select_top
                                                               or args.select_means):
        raise SystemExit("--surrogate-radius and --surrogate-last need --select-top or "
                         "--select-means")
    if any(r <= 0 for r in args.surrogate_radius or ()) or (
            args.surrogate_last is not None and args.surrogate_last < 1):
        raise SystemExit(f"--surrogate-radius must be > 0 and --surrogate-last >= 1, got "
                         f"{args.surrogate_radius} and {args.surrogate_last}")
    if args.select_trials < 1:
        raise SystemExit(f"--select-trials must be at least 1, got {args.select_trials}")
    if args.held_out_groups < 1:
        raise SystemExit(f"--held-out-groups must be at least 1, got {args.held_out_groups}")
    if args.polish_seed is not None and (args.polish_seed < 0 or not args.polish):
        raise SystemExit(f"--polish-seed must be >= 0 and needs --polish, got "
                         f"--polish-seed {args.polish_seed}, --polish {args.polish}")
    if args.polish_dt is not None and (not args.polish_dt > 0 or not args.polish):
        raise SystemExit(f"--polish-dt must be > 0 ms and needs --polish, got "
                         f"--polish-dt {args.polish_dt}, --polish {args.polish}")
    if args.refine and not args.polish:
        raise SystemExit("--refine needs --polish (it refines the polish's point), got "
                         "no --polish")
    if args.refine and (args.refine_evals < 1 or args.refine_trials < 1):
        raise SystemExit(f"--refine-evals and --refine-trials must be at least 1, got "
                         f"{args.refine_evals} and {args.refine_trials}")
    if args.refine_dt is not None and not args.refine_dt > 0:
        raise SystemExit(f"--refine-dt must be > 0 ms, got {args.refine_dt}")
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fit_erp_"))
    out_dir.mkdir(parents=True, exist_ok=True)

    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    # what a result depends on besides its arguments (hnnfit.sysinfo)
    from hnnfit.sysinfo import machine_summary, sys_info
    print(f"# machine: {machine_summary(sys_info())}")
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, engine {args.engine}, "
          f"{args.fit_trials} trial(s) per evaluation, studies in {out_dir}", flush=True)
    tasks = ["yes", "supra"] if args.task == "both" else [args.task]
    report = []
    for key in tasks:
        report += run_task(key, args, out_dir)
    print()
    print("\n".join(report))


if __name__ == "__main__":
    main()
