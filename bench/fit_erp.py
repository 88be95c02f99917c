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
   evaluations average ``--fit-trials`` trials (seeds ``0..fit_trials-1``);
3. reports, after each stage, the RMSE of the best point carried forward on
   the whole waveform (fit seeds), the stage's evaluations and wall time;
4. scores the fitted parameters on held-out seeds (``--held-out``, default
   100-102: trials the fit never saw), the acceptance measure.

Usage::

    python bench/fit_erp.py                          # both tasks, scale 3000
    python bench/fit_erp.py --task yes --scale fit   # the fitted-scale variant
    python bench/fit_erp.py --score-only             # only the hand-tuned files

Prints a JSON line per result and a markdown table per task.
"""
import argparse
import json
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


def _emit(record):
    print(json.dumps(record), flush=True)


def run_task(key, args, out_dir):
    from hnnfit.datasets import fetch_dataset
    from hnnfit.fit import Study
    from hnnfit.fit.targets import read_target

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
    if set(fit_seeds) & set(held_out):
        raise SystemExit(f"--held-out seeds {held_out} overlap the fit seeds {fit_seeds}")
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

    # 2. the staged fit from the hand-tuned file's drives
    net = _network(task["start"], args.params_dir)
    path = out_dir / f"fit_erp_{key}_{'fit' if scale == 'fit' else 'fixed'}.sqlite"
    if path.exists() and not args.resume:
        path.unlink()
    objective = {"n_trials": len(fit_seeds), "seeds": fit_seeds, "smooth_window": smooth,
                 "scale": scale, "engine": args.engine}
    study = Study.create(path, net, target, space=None, objective=objective,
                         solver=args.solver, seed=args.seed, stages="evoked",
                         description=f"bench/fit_erp.py {key}", exist_ok=args.resume)
    t0 = time.perf_counter()
    study.optimize(args.n_evals, n_jobs=args.n_jobs, progress=not args.quiet)
    wall = time.perf_counter() - t0

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

    # 4. held-out trials
    held = study.validate(held_out)
    rec = {"task": key, "kind": "fit", "scale": scale, "solver": args.solver,
           "seed": args.seed, "n_evals": int(len(study.trials)), "wall_s": wall,
           "fit_seeds": fit_seeds, "fit_rmse": study.best_value,
           "held_out": held_out, "held_out_rmse": held["value"],
           "held_out_scale": held["scale"], "goal": task["goal"],
           "best_params": study.best_params, "study": str(path)}
    _emit(rec)
    study.close()
    hand_held = rows[0]["rmse_held_out"]
    lines += stage_lines + [""]
    lines += [f"| staged fit | evaluations | wall | fit RMSE ({len(fit_seeds)} trials) | "
              f"held-out RMSE {held_out} | hand-tuned held-out | goal |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {args.solver}, seed {args.seed} | {rec['n_evals']} | {wall / 60:.1f} min | "
              f"{rec['fit_rmse']:.2f} | {rec['held_out_rmse']:.2f} | {hand_held:.2f} | "
              f"< {task['goal']:g} |", ""]
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
    parser.add_argument("--held-out", type=int, nargs="+", default=[100, 101, 102],
                        help="seeds of the held-out trials")
    parser.add_argument("--solver", default="bayesian")
    parser.add_argument("--seed", type=int, default=0)
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
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fit_erp_"))
    out_dir.mkdir(parents=True, exist_ok=True)

    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
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
