"""The ``hnnfit`` command.

::

    hnnfit [--debug] COMMAND ...
    hnnfit fit [CONFIG.toml] [--study PATH] [--n-evals N] [--n-jobs N] [--staged]
               [--recipe NAME] [--time DURATION]
    hnnfit fit RECORDING --params FILE [--time DURATION] [--recipe NAME]
               [--add-drives auto|none|N]
    hnnfit resume STUDY [--n-evals N] [--n-jobs N]
    hnnfit list [FOLDER] [--width N] [--json]
    hnnfit show STUDY [--last N] [--generations N] [--json]
    hnnfit rescore STUDY --seeds A-B [...] [--top N] [--n-jobs N]
    hnnfit budget STUDY --seeds A-B [...] [--k K] [--point best|cma-mean]
                  [--generations N] [--segments N] [--goal G] [--dt MS] [--n-jobs N]
    hnnfit export STUDY OUT.json [--point best|cma-mean] [--generations N]
    hnnfit report STUDY OUTDIR
    hnnfit simulate PARAMS --out FILE [--tstop MS] [--n-trials N] [--smooth MS]
                    [--scale F] [--mesh NX NY] [--dt MS] [--n-jobs N]
    hnnfit info

``hnnfit fit`` with no configuration runs the demo: a quick fit of two drive
times of the Jones et al. (2009) network to a synthetic target with known
parameters (see :mod:`hnnfit.demo`), into ``studies/demo.sqlite``; it
prints the recovered values next to the true ones.

The configuration file (TOML) is described in :mod:`hnnfit.config`, which
reads and checks it; this module only runs the commands.

``hnnfit list --json`` and ``hnnfit show --json`` print one JSON document
instead of tables, for scripts: ``list`` an array with one object per file
(the fields of :func:`hnnfit.fit.list_studies`; times in seconds since the
epoch, ``state`` ``"not a study"`` with an ``error`` for a file that is
not one), ``show`` an object with the keys ``study``, ``description``,
``machine``, ``parameters`` (name, low, high, log, integer), ``counts``
(evaluations by status), ``seeds_used``, ``stages`` (one object per stage,
or null), ``best`` (``value`` and ``params``, or null), ``cma_mean``
(``params``, ``generations_averaged``, ``generations``, or null) and
``last`` (the last evaluations: ``id``, ``status``, ``value``, ``params``).
A missing number is ``null``.

Errors are reported on one line, ``hnnfit: error: <message>`` (with
``--debug``: the traceback instead). Exit statuses:

* 0: success;
* 2: bad input (a missing or malformed file, an unknown key or parameter,
  bad bounds or target, a file that is not a usable study), reported
  before any study file is touched;
* 74 (``EX_IOERR``): a file could not be read or written (disk full, an
  I/O error, read-only media, a corrupt study file);
* 130: interrupted. Ctrl-C (or SIGTERM) during a fit stops it after
  recording the evaluations that finished; ``hnnfit resume`` continues it.

Running ``hnnfit fit`` on the same configuration again continues whichever
of the fit and its polish is unfinished.
"""
from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from pathlib import Path

from .config import (DEFAULT_TIME, build_fit, check_stage_budget, load_config,
                     recording_config, write_config)
from .exceptions import HnnfitError, StudyError, StudyIOError
from .validation import format_seeds

PROG = "hnnfit"
#: Exit statuses: success, bad input, I/O failure (sysexits.h EX_IOERR), interrupted.
EXIT_OK, EXIT_USAGE, EXIT_IO, EXIT_INTERRUPTED = 0, 2, 74, 130
# a path that names nothing usable: the user's input, not a failing disk
_BAD_PATH = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


class UsageError(ValueError):
    """Bad command-line input (reported without a traceback, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    # one line on stderr, like every other input error of the command
    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------
# output helpers
# ---------------------------------------------------------------------------
def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.6g}"
    return str(value)


def _print_table(header, rows, out=None):
    out = sys.stdout if out is None else out
    table = [list(map(str, header))] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths))).rstrip(), file=out)


# _print_best's default: rebuild the CMA-ES mean itself
_REPLAY = object()


def _print_best(study, cma_mean=_REPLAY):
    if study.n_complete == 0:
        print("no complete evaluation yet")
        return
    if study.stages is not None:
        print("stages:")
        df = study.stage_summary()
        _print_table(["stage", "params", "window ms", "complete", "failed", "first",
                      "best"],
                     [[r["stage"], r["n_params"], f"{r['t_start']:.1f}-{r['t_end']:.1f}",
                       r["n_complete"], r["n_failed"], r["first_value"], r["best_value"]]
                      for r in df.to_dict("records")])
        if study.storage.best("final") is None:
            print("the final stage has not started; best point so far:")
            _print_table(["parameter", "best", "low", "high"],
                         [[p.name, float(study.best_params[p.name]), p.low, p.high]
                          for p in study.space])
            return
    drawn = (" (one evaluation's value; each batch ran on new trials)"
             if study.objective.resample else "")
    print(f"best value: {study.best_value:.6g}{drawn}")
    cols, mean = ["parameter", "best", "low", "high"], cma_mean
    if mean is _REPLAY:
        mean = _cma_mean(study)
    if mean is not None:
        point, k, n = mean
        print(f"cma mean: CMA-ES' mean averaged over the last {k} of {n} generations "
              f"(never evaluated itself; validate it on trials the fit did not use)")
        cols.insert(2, "cma mean")
    _print_table(cols, [[p.name, float(study.best_params[p.name])]
                        + ([point[p.name]] if mean is not None else []) + [p.low, p.high]
                        for p in study.space])


def _cma_mean(study, last=None):
    """(averaged mean, generations averaged, generations) of an unstaged CMA-ES
    study, rebuilt from its log; None for other studies.

    ``last`` generations are averaged (default: the solver's window, the
    second half); more than were completed is a UsageError.
    """
    if study.stages is not None or study.solver_settings.get("name") != "cma":
        return None
    solver = study.replay_solver()
    if not solver.means:
        return None
    n = len(solver.means)
    if last is not None and last > n:
        raise UsageError(f"--generations must be at most the {n} completed generations "
                         f"of {study.path}, got {last}")
    k = solver.averaging_window() if last is None else last
    return solver.averaged_mean(k), k, n


def _print_recovery(study, meta):
    true = meta["true_values"]
    published = meta.get("published_values", {})
    rows = []
    for p in study.space:
        if p.name not in true:
            continue
        found = float(study.best_params[p.name])
        rows.append([p.name, true[p.name], found, found - true[p.name],
                     published.get(p.name), f"[{p.low:g}, {p.high:g}]"])
    print("\nrecovery of the demo's generating parameters:")
    _print_table(["parameter", "true", "recovered", "error", "published", "range"], rows)
    noise = meta.get("clean_rmse_to_target")
    if noise is not None:
        print(f"best RMSE {study.best_value:.4g} nAm; the noise alone gives "
              f"{noise:.4g} nAm (RMSE of the true parameters)")


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
def _study_api():
    from .fit.study import Study

    return Study


def _run(study, n_evals, n_jobs, stage_evals=None):
    """Optimise with the progress bar; return the exit status."""
    from .fit.runner import refuse_if_busy

    # refused before anything is written to the file
    refuse_if_busy(study)
    done = study.n_complete + study.n_failed
    if done >= n_evals:
        # nothing to run; the stored budget (resume's default) stays as it was
        print(f"{study.path} already has {done} evaluations: the budget of {n_evals} is "
              f"reached (a larger --n-evals continues it)")
        return EXIT_OK
    # Study.optimize stores the budget, jobs and stage budgets for 'hnnfit resume'
    try:
        summary = study.optimize(n_evals, n_jobs=n_jobs, progress=True,
                                 stage_evals=stage_evals or None)
    except KeyboardInterrupt:
        interrupted = True
    else:
        interrupted = bool(getattr(summary, "interrupted", False))
    done = study.n_complete + study.n_failed
    if interrupted:
        print(f"\n{PROG}: interrupted; {done} evaluations recorded in {study.path}. "
              f"Continue with: {PROG} resume {study.path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{study.path}: {study.n_complete} complete, {study.n_failed} failed "
          f"evaluations (budget {n_evals})")
    return EXIT_OK


def _cmd_fit(args):
    from . import demo

    is_demo = args.config is None
    recording = not is_demo and Path(args.config).suffix.lower() != ".toml"
    if recording:
        if args.params is None:
            raise UsageError(f"a recording ({args.config!r}) needs --params FILE: the "
                             f"parameter file whose network and drives the fit starts "
                             f"from (or give a .toml configuration)")
        config = recording_config(args.config, args.params, recipe=args.recipe,
                                  time=args.time, n_jobs=args.n_jobs, study=args.study)
        config_path = config.path
    else:
        if args.params is not None:
            raise UsageError("--params goes with a recording, not with a configuration, "
                             "whose [network] params names the parameter file")
        config_path = demo.demo_config_path() if is_demo else Path(args.config)
        config = load_config(config_path)
    run = config.run
    if recording or run.uses_recipe or args.recipe or args.time or args.add_drives:
        return _recipe_fit(args, config, config_path, write=recording)
    n_evals = run.n_evals if args.n_evals is None else args.n_evals
    n_jobs = run.n_jobs if args.n_jobs is None else args.n_jobs
    study_path = Path(args.study) if args.study is not None else config.study_path()
    setup = build_fit(config)
    Study = _study_api()
    existed = study_path.exists()
    if not study_path.parent.is_dir():
        study_path.parent.mkdir(parents=True)
    staged = args.staged or run.staged
    if run.stage_evals:
        if not staged:
            raise UsageError("stage_evals in [run] needs a staged fit (staged = true or "
                             "--staged), got an unstaged one")
        check_stage_budget(run.stage_evals, setup.stage_names, n_evals)
    study = Study.create(study_path, **setup.study_kwargs(staged=staged),
                         description=f"hnnfit fit {config_path}", exist_ok=True)
    try:
        status = _fit_study(study, study_path, existed, n_evals, n_jobs, is_demo,
                            run.stage_evals)
        if status != EXIT_OK or setup.polish is None:
            return status
        return _polish_study(study, setup.polish, study_path, n_jobs)
    finally:
        study.close()


def _recipe_fit(args, config, config_path, write):
    """``hnnfit fit`` with a recipe: a configuration's, or the command line's."""
    from .fit.recipe_runner import run_recipe
    from .fit.recipes import DEFAULT_RECIPE, get_recipe, new_drive_limit, parse_duration

    run = config.run
    if args.n_evals is not None or args.staged:
        raise UsageError("--n-evals and --staged do not go with a recipe, which sets its "
                         "own budgets and stages from its time (--time)")
    recipe = get_recipe(args.recipe or run.recipe or DEFAULT_RECIPE)
    budget = args.time or run.time or DEFAULT_TIME
    parse_duration(budget)
    add = args.add_drives or run.add_drives or "none"
    try:
        n_new = new_drive_limit(add)
    except ValueError as err:
        raise UsageError(str(err).replace("add_drives", "--add-drives", 1)
                         if args.add_drives else str(err)) from None
    n_jobs = run.n_jobs if args.n_jobs is None else args.n_jobs
    study_path = Path(args.study) if args.study is not None else config.study_path()
    setup = build_fit(config)
    if not study_path.parent.is_dir():
        study_path.parent.mkdir(parents=True)
    if write:
        # the fit can be repeated, or resumed, from this file
        config.run.recipe, config.run.time, config.run.n_jobs = recipe.name, budget, n_jobs
        config.run.add_drives = add if add in ("auto", "none") else n_new
        write_config(config, config_path)
    print(f"{'resuming' if study_path.exists() else 'starting'} recipe {recipe.name!r} "
          f"({recipe.summary}) within {budget}, {n_jobs} job(s), into {study_path}")
    if n_new:
        print(f"after the search, a structure search adds up to {n_new} evoked "
              f"drive(s) the model lacks, one per round")
    if write:
        print(f"its configuration: {config_path} (run 'hnnfit fit {config_path}' to "
              f"repeat or continue it)")
    try:
        run_recipe(setup, study_path, recipe.name, budget, n_jobs=n_jobs,
                   progress=True, description=f"hnnfit fit {config_path}",
                   add_drives=n_new)
    except KeyboardInterrupt:
        again = f"{PROG} fit {config_path}"
        print(f"\n{PROG}: interrupted; the evaluations that finished are recorded. "
              f"Continue with: {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _polish_study(study, polish, study_path, n_jobs):
    """Run (or resume) the ``[polish]`` study from the fit's best point."""
    path = polish.study_path(study_path)
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True)
    existed = path.exists()
    polished = study.create_polish(path, **polish.polish_kwargs(),
                                   description=f"hnnfit fit: polish of {study_path}",
                                   exist_ok=True)
    try:
        print(f"\n{'resuming' if existed else 'created'} polish {path} "
              f"({polished.n_complete + polished.n_failed} evaluations so far) from the "
              f"best point of {study_path}; budget {polish.n_evals}, {n_jobs} job(s)")
        status = _run(polished, polish.n_evals, n_jobs)
        if status == EXIT_OK:
            _print_best(polished)
            if _cma_mean(polished) is not None:
                print(f"export CMA-ES' mean with: {PROG} export {path} OUT.json "
                      f"--point cma-mean")
        return status
    finally:
        polished.close()


def _fit_study(study, study_path, existed, n_evals, n_jobs, is_demo, stage_evals=None):
    from . import demo

    if is_demo:
        print("hnnfit demo: fitting evprox1.mu and evdist1.mu of the Jones et al. (2009) "
              "network to a synthetic ERP with known values (see hnnfit.demo)")
    verb = "resuming" if existed else "created"
    print(f"{verb} study {study_path} ({study.n_complete + study.n_failed} evaluations "
          f"so far); budget {n_evals}, {n_jobs} job(s)")
    status = _run(study, n_evals, n_jobs, stage_evals)
    if status == EXIT_OK:
        _print_best(study)
        if is_demo and study.n_complete:
            _print_recovery(study, demo.demo_metadata())
    return status


def _load_study(path, readonly=False, take_over=False):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {str(path)!r} does not exist")
    try:
        return _study_api().load(path, readonly=readonly, take_over=take_over)
    except StudyError:
        if not _left_empty(path):
            raise
    # what a run killed while creating its study leaves behind
    raise UsageError(f"study file {str(path)!r} is empty: the run that created it "
                     f"stopped before recording anything; create the study again "
                     f"with: {PROG} fit CONFIG --study {path}")


def _left_empty(path):
    """True for an empty file or an SQLite file without tables, read without
    writing anything (a read-write connection would replay a crashed log)."""
    from urllib.parse import quote

    if path.stat().st_size == 0:
        return True
    uri = f"file:{quote(str(path.absolute()))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _closing(command=None, *, readonly=False):
    """Run ``command(args, study)`` on the study ``args.study``, closing it after.

    ``readonly``: the command only reads the study, which is then opened
    without writing anything (a study being run, or on read-only media).
    """
    if command is None:
        return lambda cmd: _closing(cmd, readonly=readonly)

    def run(args):
        study = _load_study(args.study, readonly=readonly,
                            take_over=getattr(args, "take_over", False))
        try:
            return command(args, study)
        finally:
            study.close()
    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


@_closing
def _cmd_resume(args, study):
    from .fit.recipe_runner import recipe_record

    if recipe_record(study.storage) is not None:
        raise UsageError(f"study {str(study.path)!r} is the search of a recipe fit; "
                         f"continue the recipe with the command that started it "
                         f"({study.description or 'hnnfit fit CONFIG'})")
    budget = study.storage.budget
    n_evals = args.n_evals
    if n_evals is None:
        n_evals = _stored_budget(study, budget)
    n_jobs = args.n_jobs
    if n_jobs is None:
        n_jobs = (budget.n_jobs if budget is not None else None) or 1
    stage_evals = (budget.stage_evals if budget is not None else None) or {}
    if stage_evals:
        # the fit checked its own budget before creating the study
        check_stage_budget(stage_evals, [st.name for st in study.stages], n_evals)
    print(f"resuming study {study.path} ({study.n_complete + study.n_failed} evaluations "
          f"so far); budget {n_evals}, {n_jobs} job(s)")
    status = _run(study, n_evals, n_jobs, stage_evals)
    if status == EXIT_OK:
        _print_best(study)
    return status


def _stored_budget(study, budget):
    if budget is None:
        raise UsageError(f"--n-evals must be given for study {str(study.path)!r}, which "
                         f"records no budget")
    return budget.n_evals


@_closing(readonly=True)
def _cmd_show(args, study):
    # refused before anything is printed; the mean is rebuilt once, here
    cma_mean = _cma_mean(study, args.generations)
    if args.generations is not None and cma_mean is None:
        raise UsageError(f"--generations {args.generations} needs an unstaged CMA-ES "
                         f"study with a completed generation; {study.path} has none")
    if args.json:
        _print_json(_show_record(study, cma_mean, args.last))
        return EXIT_OK
    df = study.evaluations
    print(f"study: {study.path}")
    if study.description:
        print(f"description: {study.description}")
    if study.machine:
        from .sysinfo import machine_summary

        # a re-run elsewhere may take another path: say where this one began
        print(f"created on: {machine_summary(study.machine)}")
    space = study.space
    print("parameters: " + ", ".join(
        f"{p.name} in [{p.low:g}, {p.high:g}]" + (" (log)" if p.log else "") for p in space))
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    print("evaluations: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                             if counts else "none"))
    # what rescore and budget must stay clear of
    print(f"trial seeds used: {format_seeds(study.used_seeds())}")
    _print_best(study, cma_mean)
    recent = df.tail(args.last)
    if len(recent):
        print(f"\nlast {len(recent)} evaluations:")
        cols = ["id", "status", "value"] + list(space.names)
        _print_table(cols, [[r[c] if c in r else None for c in cols]
                            for r in recent.to_dict("records")])
    return EXIT_OK


def _show_record(study, cma_mean, last):
    """What ``hnnfit show`` prints, as one JSON-able dict (see the module docstring)."""
    df = study.evaluations
    space = study.space
    best = None
    if study.n_complete:
        final = study.stages is None or study.storage.best("final") is not None
        best = {"value": float(study.best_value) if final else None,
                "params": {n: float(v) for n, v in study.best_params.items()}}
    mean = None
    if cma_mean is not None:
        point, k, n = cma_mean
        mean = {"params": {name: float(v) for name, v in point.items()},
                "generations_averaged": k, "generations": n}
    recent = [{"id": int(r["id"]), "status": r["status"], "value": r.get("value"),
               "params": {n: r.get(n) for n in space.names}}
              for r in df.tail(last).to_dict("records")]
    return {"study": str(study.path), "description": study.description,
            "machine": study.machine, "parameters": [p.to_dict() for p in space],
            "counts": study.counts(), "seeds_used": study.used_seeds(),
            "stages": (None if study.stages is None
                       else study.stage_summary().to_dict("records")),
            "best": best, "cma_mean": mean, "last": recent}


def _jsonable(value):
    """``value`` with numpy scalars as Python numbers and NaN or inf as None."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _print_json(value):
    print(json.dumps(_jsonable(value), indent=2, allow_nan=False))


def _cmd_list(args):
    import time

    from .fit.storage import scan_studies

    records = scan_studies(args.folder)
    if args.json:
        _print_json(records)
        return EXIT_OK
    if not records:
        print(f"no study files (*.sqlite) in {args.folder}")
        return EXIT_OK
    studies = [r for r in records if r["state"] != "not a study"]
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} in {args.folder}:")
    rows = []
    for r in studies:
        evals = f"{r['evaluations']}" + (f"/{r['budget']}" if r["budget"] is not None else "")
        notes = [f"{r[k]} {k}" for k in ("failed", "abandoned") if r[k]]
        if r["running"]:
            notes.append(f"{r['running']} running (pid {r['pid']})")
        if r["stale"]:
            notes.append(f"{r['stale']} left running")
        last = (None if r["last"] is None
                else time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["last"])))
        rows.append([r["study"], r["state"] + (f" ({r['stage']})" if r["stage"] else ""),
                     evals + (f" ({', '.join(notes)})" if notes else ""),
                     r["best_value"], last, _short_text(r["description"], args.width)])
    if rows:
        _print_table(["study", "state", "evaluations", "best", "last (UTC)",
                      "description"], rows)
    for r in records:
        if r["state"] == "not a study":
            print(f"not a study: {r['study']} ({r['error']})")
    if any(r["state"] == "interrupted" for r in studies):
        print(f"an interrupted study continues with: {PROG} resume <study file>")
    return EXIT_OK


def _cmd_dashboard(args):
    from . import dashboard

    try:
        dashboard.serve(args.folder, port=args.port, host=args.host,
                        allow_origin=args.allow_origin or (), show=args.show)
    except ImportError as err:   # the optional extra is not installed
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _short_text(text, width):
    if not text:
        return None
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


@_closing(readonly=True)
def _cmd_rescore(args, study):
    # Study.rescore refuses an empty study and the fit's own seeds
    seeds = _held_out_seeds(args)
    print(f"re-scoring the {args.top} best evaluations of {study.path} on seeds "
          f"{format_seeds(seeds)} (the fit's: {format_seeds(study.used_seeds())})")
    table = study.rescore(seeds, top=args.top, n_jobs=args.n_jobs)
    g = study.objective.group_size
    if g is not None and len(seeds) > g:
        how = f"the mean score of {len(seeds) // g} averages of {g} trials"
    else:
        how = f"the score of the average of all {len(seeds)} trial(s)"
    print(f"value: on the fit's seeds; rescored: {how}, as the fit's objective scores")
    cols = ["id", "value", "rescored"] + list(study.space.names)
    _print_table(cols, [[r[c] for c in cols] for r in table.to_dict("records")])
    return EXIT_OK


def _point(args, study):
    """The point ``--point`` names (None: the best) and how to call it."""
    if args.point != "cma-mean":
        if args.generations is not None:
            raise UsageError(f"--generations {args.generations} needs --point cma-mean")
        return None, "the best point"
    mean = _cma_mean(study, args.generations)
    if mean is None:
        raise UsageError(f"--point cma-mean needs an unstaged CMA-ES study with a "
                         f"completed generation; {study.path} has none")
    point, k, n = mean
    return point, f"CMA-ES' mean averaged over the last {k} of {n} generations"


@_closing(readonly=True)
def _cmd_budget(args, study):
    import numpy as np

    seeds = _held_out_seeds(args)
    point, what = _point(args, study)
    k = args.k
    if k is None:
        k = study.objective.group_size or study.objective.n_trials
    if args.goal is not None and len(seeds) < k:
        # the share below the goal counts groups of k distinct trials
        raise UsageError(f"--goal needs at least {k} seeds (one average of {k} trials), "
                         f"got {len(seeds)}: {format_seeds(seeds)}")
    # Study.error_budget refuses the fit's own seeds and fewer than 2
    out = study.error_budget(seeds, params=point, k=k, n_jobs=args.n_jobs, dt=args.dt)
    step = "" if args.dt is None else f", time step {args.dt:g} ms"
    print(f"error budget of {what} of {study.path} on {out['n_trials']} trials (seeds "
          f"{format_seeds(seeds)}{step}), averages of {k}:")
    print(f"expected RMSE of a {k}-trial average: {out['expected']:.2f} nAm = "
          f"sqrt(bias^2 {out['bias2']:.1f} + var {out['var']:.1f} / {k})")
    single = out["trial_rmse"]
    worst = int(np.argmax(single))
    print(f"single trials: RMSE median {np.median(single):.2f} nAm, best {single.min():.2f}, "
          f"worst {single[worst]:.2f} (seed {seeds[worst]})")
    groups = out["group_rmse"]
    if len(groups):
        q = np.percentile(groups, [5, 25, 50, 75, 95])
        print(f"averages of {k} distinct trials ({len(groups)} groups): RMSE 5% {q[0]:.2f}, "
              f"25% {q[1]:.2f}, median {q[2]:.2f}, 75% {q[3]:.2f}, 95% {q[4]:.2f} nAm")
        if args.goal is not None:
            print(f"share of those groups below {args.goal:g} nAm: "
                  f"{np.mean(groups < args.goal):.1%}")
    else:
        print(f"(fewer than {k} trials: no average of {k} distinct trials to score; the "
              f"expected RMSE above extrapolates from the {out['n_trials']} trials)")
    times = study.target.times
    edges = np.linspace(times[0], times[-1], args.segments + 1)
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (times >= lo) & ((times < hi) if i < args.segments - 1 else (times <= hi))
        # each window's share of the averages over all time points
        # rounded, then + 0.0: a share that rounds to zero prints "0.00", not "-0.00"
        b2 = round(out["bias2_t"][inside].sum() / len(times), 2) + 0.0
        rows.append([f"{lo:.0f}-{hi:.0f}", f"{b2:.2f}",
                     f"{out['var_t'][inside].sum() / len(times) / k:.2f}"])
    print()
    _print_table(["window (ms)", "bias^2", f"var/{k}"], rows)
    return EXIT_OK


def _same_file_as_study(out, study_path):
    """True if writing ``out`` would overwrite the study file, its SQLite journals
    or its driver lock file."""
    out, study_path = Path(out).resolve(), Path(study_path).resolve()
    if out.parent != study_path.parent:
        return False
    return out.name in {study_path.name + tail for tail in ("", "-wal", "-shm", "-journal",
                                                          ".lock")}


@_closing(readonly=True)
def _cmd_export(args, study):
    out = Path(args.out)
    if _same_file_as_study(out, args.study):
        # writing there would destroy the study being read
        raise UsageError(f"OUT must not be the study file or a file SQLite or hnnfit "
                         f"keeps beside it (-wal, -shm, -journal, .lock), got "
                         f"{str(out)!r}")
    if out.suffix.lower() != ".json":
        raise UsageError(f"OUT must be a .json parameter file, got {str(out)!r}")
    _writable_file(out, "OUT")
    point, what = _point(args, study)
    study.export(out, point)
    if point is None:
        what = f"best value {study.best_value:.6g}"
    print(f"wrote {out} ({what}); simulate it with: {PROG} simulate {out} --out dipole.txt")
    return EXIT_OK


@_closing(readonly=True)
def _cmd_report(args, study):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if study.n_complete == 0:
        raise UsageError(f"study {str(study.path)!r} has no complete evaluation to report")
    outdir = _writable_folder(args.outdir, "OUTDIR")
    for name, plot in (("convergence", study.plot_convergence), ("fit", study.plot_fit),
                       ("params", study.plot_params)):
        fig = plot()
        path = outdir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_info(args):
    from .sysinfo import format_sys_info, sys_info

    print(format_sys_info(sys_info()))
    return EXIT_OK


def _cmd_simulate(args):
    from .dipole import average_dipoles
    from .network import Network
    from .params import read_params
    from .simulation import simulate_dipole

    from .parallel import JoblibBackend
    from .params import get_param

    out = _writable_file(args.out, "--out")
    net = Network(read_params(args.params), add_drives_from_params=True,
                  mesh_shape=tuple(args.mesh))
    if not net.external_drives:
        raise UsageError(f"parameter file {args.params!r} defines no drives to simulate")
    n_trials = args.n_trials or get_param(net._params, "N_trials") or 1
    tstop = args.tstop or get_param(net._params, "tstop")
    # a file's N_trials can be 100: say what is coming before a long silence
    print(f"simulating {n_trials} trial(s) of {tstop:g} ms on {args.n_jobs} job(s)",
          flush=True)
    with JoblibBackend(n_jobs=args.n_jobs):
        dpls = simulate_dipole(net, tstop=tstop, dt=args.dt, n_trials=n_trials,
                               verbose=False)
    dpl = average_dipoles(dpls) if len(dpls) > 1 else dpls[0]
    if args.smooth:
        dpl.smooth(args.smooth)
    if args.scale is not None:
        dpl.scale(args.scale)
    dpl.write(out)
    agg = dpl.data["agg"]
    print(f"wrote {out}: {len(dpls)} trial(s), {dpl.times[0]:g}-{dpl.times[-1]:g} ms, "
          f"agg dipole {agg.min():.4g} to {agg.max():.4g} nAm")
    return EXIT_OK


def _probe_write(folder):
    """Create and remove a temporary file in ``folder`` (OSError if it cannot).

    Permissions are probed by writing, since ``os.access`` says yes to root
    even on read-only file systems.
    """
    import tempfile

    with tempfile.NamedTemporaryFile(dir=folder, prefix=".hnnfit-probe-"):
        pass


def _writable_file(path, what):
    """``path`` as a Path, refused unless a file can be written there.

    Checked before a long simulation, whose result would otherwise be lost
    at the last step (an existing file is opened for update, unchanged).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(path.parent)!r} of {what} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{what} must be a file path, got the folder {str(path)!r}")
    try:
        if path.exists():
            with open(path, "r+b"):
                pass
        else:
            _probe_write(path.parent)
    except OSError as err:
        # the path given cannot take a file: bad input, found before any work
        raise UsageError(f"{what} {str(path)!r} cannot be written "
                         f"({err.strerror or err})") from None
    return path


def _writable_folder(path, what):
    """``path`` as a Path to an existing (created if needed) writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} must be a folder, got the file {str(path)!r}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe_write(path)
    except OSError as err:
        raise UsageError(f"{what} {str(path)!r} cannot be created or written "
                         f"({err.strerror or err})") from None
    return path


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seed_range(text):
    first, sep, last = text.partition("-")
    try:
        lo = int(first)
        hi = int(last) if sep else lo
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a seed (integer >= 0) or a range A-B, "
                                         f"got {text!r}") from None
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"must be a seed (integer >= 0) or a range A-B "
                                         f"with A <= B, got {text!r}")
    return list(range(lo, hi + 1))


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _add_held_out_args(p, what, example):
    """A study and the trials (seeds) to score it on, which the fit must not have used."""
    p.add_argument("study", help="study file (.sqlite)")
    p.add_argument("--seeds", type=_seed_range, nargs="+", required=True,
                   help=f"{what}: integers or ranges A-B (e.g. {example})")


def _held_out_seeds(args):
    return sorted({s for chunk in args.seeds for s in chunk})


def _add_point_option(p):
    p.add_argument("--point", choices=["best", "cma-mean"], default="best",
                   help="'best': the lowest value (default); 'cma-mean': a CMA-ES "
                   "study's mean averaged over its second half of generations (as "
                   "'show' prints it), the estimate to use when each batch ran on new "
                   "trials")
    p.add_argument("--generations", type=_positive_int, default=None, metavar="N",
                   help="with --point cma-mean: average the mean over the last N "
                   "generations instead (e.g. to compare windows with 'budget')")


def make_parser():
    """The ``hnnfit`` argument parser."""
    parser = _Parser(prog=PROG, description="Fit the HNN neocortical column model "
                     "(Jones et al. 2009) to MEG/EEG evoked responses.",
                     epilog="Run 'hnnfit fit' with no argument for a quick demo fit.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback instead of one line")
    # also accepted after the command; SUPPRESS keeps the global value otherwise
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, print the traceback instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("fit", parents=[common],
                       help="run (or continue) a fit described by a TOML file",
                       description="Fit the model as a TOML configuration describes "
                       "(see 'python -m pydoc hnnfit.config'); with no configuration, run "
                       "the demo fit into studies/demo.sqlite. An existing study is "
                       "continued.")
    p.add_argument("config", nargs="?", help="configuration file (.toml; default: the "
                   "demo), or a recording to fit with --params: a dataset name or a data "
                   "file (time in ms, dipole in nAm)")
    p.add_argument("--params", help="with a recording: the parameter file whose network "
                   "and evoked drives the fit starts from")
    p.add_argument("--recipe", help="fit with this recipe (erp, erp-refine, search; see "
                   "hnnfit.fit.recipes); default with --time: erp")
    p.add_argument("--time", help="wall-time budget of a recipe fit, e.g. 45m, 1h30m "
                   f"(default {DEFAULT_TIME} for a recording)")
    p.add_argument("--add-drives", metavar="auto|none|N",
                   help="with a recipe: 'auto' also looks for an evoked drive the model "
                   "lacks (where its residual exceeds trial noise), fits candidates and "
                   "keeps one only if it lowers the expected score on unseen trials by "
                   "more than that comparison's noise; a number N (up to 3) allows up "
                   "to N drives, one per round")
    p.add_argument("--study", help="study file (default: [run] study, else "
                   "studies/<config name>.sqlite)")
    p.add_argument("--n-evals", type=_positive_int, help="total evaluation budget")
    p.add_argument("--n-jobs", type=_positive_int, help="evaluations run at once")
    p.add_argument("--staged", action="store_true",
                   help="staged evoked fit: one stage per evoked drive group in time "
                   "order, each on its own weighted window, then all parameters")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("resume", parents=[common],
                       help="continue a study",
                       description="Continue a study: the solver is rebuilt from its "
                       "log and proposes the points an uninterrupted run would.")
    p.add_argument("study", help="study file (.sqlite)")
    p.add_argument("--n-evals", type=_positive_int,
                   help="total evaluation budget (default: the budget of the last fit)")
    p.add_argument("--n-jobs", type=_positive_int,
                   help="evaluations run at once (default: as in the last fit)")
    p.add_argument("--take-over", action="store_true",
                   help="run the study even though another process seems to drive it: "
                   "its lock is broken and the evaluations it left running are redone. "
                   "Only for a driver known to be gone that this host cannot see die "
                   "(e.g. on a node that failed); two live drivers duplicate evaluations")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("show", parents=[common],
                       help="best point, counts and recent evaluations",
                       description="Print a study's description, the machine it was "
                       "created on, its parameters and ranges, its evaluations by status, "
                       "the trial seeds it used, its best point (per stage for a staged "
                       "fit; with CMA-ES' averaged mean for a CMA-ES study) and its last "
                       "evaluations. Nothing is written to the file.")
    p.add_argument("study", help="study file (.sqlite)")
    p.add_argument("--last", type=_positive_int, default=10,
                   help="number of recent evaluations listed (default 10)")
    p.add_argument("--generations", type=_positive_int, default=None, metavar="N",
                   help="a CMA-ES study's mean averaged over the last N generations "
                   "(default: the second half)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead (see 'python -m pydoc hnnfit.cli')")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("list", parents=[common],
                       help="the studies of a folder: state, evaluations, best",
                       description="One line per study file (*.sqlite) of a folder: its "
                       "state (running, interrupted, stopped, done, ...), evaluations "
                       "against the budget of its last run, best value and last "
                       "evaluation. Nothing is written to the files.")
    p.add_argument("folder", nargs="?", default="studies",
                   help="folder holding the study files (default: studies)")
    p.add_argument("--width", type=_positive_int, default=40, metavar="N",
                   help="characters of each description shown (default 40)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON array, one object per file, with full descriptions")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("dashboard", parents=[common],
                       help="a live web page over the studies of a folder",
                       description="Serve a web page showing the studies of a folder and, "
                       "for each, its target and best fit, convergence, parameters and "
                       "evaluations, updated while fits run. Study files are only read. "
                       "Needs the 'dashboard' extra (pip install 'hnnfit[dashboard]').")
    p.add_argument("folder", nargs="?", default="studies",
                   help="folder holding the study files (default: studies)")
    p.add_argument("--port", type=int, default=5006, help="TCP port (default 5006)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; "
                   "reach a remote one through an SSH tunnel)")
    p.add_argument("--allow-origin", action="append", metavar="HOST[:PORT]",
                   help="another name browsers reach the server by, e.g. the local end "
                   "of an SSH tunnel on another port (repeatable)")
    p.add_argument("--show", action="store_true", help="open the page in a web browser")
    p.set_defaults(func=_cmd_dashboard)

    p = sub.add_parser("rescore", parents=[common],
                       help="score the best evaluations again on other seeds",
                       description="Score the best evaluations of a study again on "
                       "trials (seeds) the fit did not use, and list them best first "
                       "there: with a stochastic objective the lowest value is partly "
                       "luck, so a runner-up is often better on new trials. Nothing is "
                       "written to the study.")
    _add_held_out_args(p, "seeds to score on", "50-61")
    p.add_argument("--top", type=_positive_int, default=5,
                   help="number of best evaluations re-scored (default 5)")
    p.add_argument("--n-jobs", type=_positive_int, default=1,
                   help="evaluations run at once (default 1)")
    p.set_defaults(func=_cmd_rescore)

    p = sub.add_parser("budget", parents=[common],
                       help="split the held-out error into bias and trial noise",
                       description="Simulate the best point (or CMA-ES' mean) on trials "
                       "the fit did not use and split the mean square error that K-trial "
                       "averages score into the mean waveform's squared error (bias^2) "
                       "and the trials' variance over K, overall and by time window. "
                       "Nothing is written to the study.")
    _add_held_out_args(p, "at least 2 seeds", "200-223")
    p.add_argument("--k", type=_positive_int, default=None,
                   help="trials per average (default: the objective's group_size, else "
                   "its n_trials)")
    _add_point_option(p)
    p.add_argument("--segments", type=_positive_int, default=4,
                   help="time windows the budget is split into (default 4)")
    p.add_argument("--dt", type=_positive_float, default=None,
                   help="time step of these trials in ms (default: the study's): a fit "
                   "that searched at 0.05 is judged at 0.025 this way")
    p.add_argument("--goal", type=_positive_float, default=None,
                   help="also print the share of K-trial groups whose RMSE is below "
                   "this (nAm): the chance that a held-out check on one group passes")
    p.add_argument("--n-jobs", type=_positive_int, default=1,
                   help="trials simulated at once (default 1)")
    p.set_defaults(func=_cmd_budget)

    p = sub.add_parser("export", parents=[common],
                       help="write the best network as a parameter file",
                       description="Write the best point as a JSON parameter file that "
                       "read_params/Network (add_drives_from_params=True) load.")
    p.add_argument("study", help="study file (.sqlite)")
    p.add_argument("out", help="output parameter file (.json)")
    _add_point_option(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("report", parents=[common],
                       help="PNG plots: convergence, fit, parameters",
                       description="Write convergence.png (value per evaluation and "
                       "best so far), fit.png (the target with the start point's and "
                       "the best point's dipoles, simulated if the study did not record "
                       "them) and params.png (each parameter against the value) into "
                       "a folder.")
    p.add_argument("study", help="study file (.sqlite)")
    p.add_argument("outdir", help="output folder (created if missing)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("simulate", parents=[common],
                       help="simulate a parameter file and write its dipole",
                       description="Simulate the network and drives a parameter file "
                       "defines and write the (trial-averaged) dipole, nAm.")
    p.add_argument("params", help="parameter file (.json or .param, or a bare name "
                   "from hnnfit's params folder)")
    p.add_argument("--out", required=True, help="output dipole file (text)")
    p.add_argument("--tstop", type=_positive_float,
                   help="simulation end, ms (default: the file's tstop)")
    p.add_argument("--n-trials", type=_positive_int,
                   help="trials averaged (default: the file's N_trials)")
    p.add_argument("--smooth", type=_positive_float, help="smoothing window, ms")
    p.add_argument("--scale", type=_positive_float, help="scale factor")
    p.add_argument("--dt", type=_positive_float, default=0.025,
                   help="integration step, ms (default 0.025)")
    p.add_argument("--mesh", type=_positive_int, nargs=2, default=[10, 10],
                   metavar=("NX", "NY"), help="pyramidal grid per layer (default 10 10)")
    p.add_argument("--n-jobs", type=_positive_int, default=1,
                   help="trials simulated at once, in worker processes (default 1)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("info", parents=[common],
                       help="the machine and library versions results depend on",
                       description="Print the CPU, BLAS, the CoreNEURON build's compiler "
                       "flags and the versions of Python, NEURON and the libraries a fit "
                       "uses: a fit repeats exactly on the same machine and software, "
                       "and may take another path elsewhere. Every study stores the same "
                       "at creation ('hnnfit show' prints it).")
    p.set_defaults(func=_cmd_info)
    return parser


def _silence_stdout():
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _stop_on_sigterm():
    """Make SIGTERM stop a run the way Ctrl-C does; return the undo function.

    Batch schedulers (SLURM, PBS) and ``timeout`` send SIGTERM before they
    kill: the evaluations that finished are then recorded and the command
    says how to resume, as for Ctrl-C. Only the main thread may set a signal
    handler, so elsewhere (an embedding program's thread) nothing changes.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    """Run the ``hnnfit`` command; return its exit status.

    Parameters
    ----------
    argv : list of str | None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on bad input, 74 when a file could not be read or
        written, 130 when interrupted.
    """
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    restore = _stop_on_sigterm()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # output piped into e.g. `head`, which stopped reading: not an error of ours
        _silence_stdout()
        return EXIT_OK
    except (ValueError, TypeError, OSError, HnnfitError, sqlite3.DatabaseError) as err:
        status = _exit_status(err)
        if args.debug:
            import traceback

            traceback.print_exc()
            return status
        # one line, no traceback
        message = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, sqlite3.DatabaseError) and getattr(args, "study", None):
            # SQLite's messages do not name the file
            message = f"study file {str(args.study)!r}: {message}"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return status
    finally:
        restore()


def _exit_status(err):
    """The exit status of an error: 74 when a file could not be read or written."""
    if isinstance(err, (StudyIOError, sqlite3.DatabaseError)):
        return EXIT_IO
    if isinstance(err, OSError) and not isinstance(err, _BAD_PATH):
        return EXIT_IO
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
