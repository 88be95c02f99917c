"""Running a study: its budget, its stages, its progress line and callbacks.

:func:`run_study` is what :meth:`hnnfit.Study.optimize` does. It checks the
run's arguments, records the budget in the study (so that ``hnnfit
resume`` continues with it), and hands each stage's evaluations to
:func:`~hnnfit.fit.optimize.run_optimization`: once for an unstaged study
(stage ``""``), once per stage for a staged one (see
:mod:`hnnfit.fit.staging`), each stage starting from the best point of the
stages before it. Every run goes through one path that wires the progress
line (:class:`ProgressBar`, itself a callback) and the user's callback.
"""
import math
import sys
import time

from ..exceptions import StudyError
from ..validation import check_bool, check_int, check_option
from .objective import SETTING_KEYS, DipoleObjective
from .optimize import BACKENDS, RunSummary, run_optimization
from .solvers import legacy_options, make_solver
from .staging import FINAL, StageObjective, split_budget, stage_sim_end
from .storage import EvalState
from .targets import Target

__all__ = ["BUDGET_KEY", "JOBS_KEY", "STAGE_EVALS_KEY", "ProgressBar", "run_study",
           "record_budget", "refuse_if_busy", "stage_point", "stage_summary"]

# metadata entries of the last optimize() that had evaluations to run: the
# total budget, the jobs and a staged fit's stage_evals. `hnnfit resume`
# continues with them and `hnnfit list` tells a stopped study from a done one.
# (The "cli_" prefix is historical: the command line wrote them first.)
BUDGET_KEY = "cli_n_evals"
JOBS_KEY = "cli_n_jobs"
STAGE_EVALS_KEY = "cli_stage_evals"


class ProgressBar:
    """A callback printing a progress line: evaluations done, best so far, ETA.

    Called with each recorded evaluation (the row dict a run's callback
    receives), it counts it and, when enabled, writes one line to
    ``stream``: redrawn in place on a terminal, one line per evaluation
    otherwise (e.g. a log file).

    Parameters
    ----------
    n_total : int
        The budget: evaluations the run (or stage) ends with.
    n_done : int
        Evaluations already recorded when the run starts.
    best : float | None
        The best value recorded before the run.
    enabled : bool
        Write the line; when False the bar only counts.
    stream : file-like | None
        Where to write; default ``sys.stderr``.
    """

    def __init__(self, n_total, n_done=0, *, best=None, enabled=True, stream=None):
        self.n_total = n_total
        self.n_start = n_done
        self.n_done = n_done
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.t0 = time.monotonic()
        self.best = best
        self.n_failed = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, row):
        self.n_done += 1
        if row.get("status") == EvalState.COMPLETE:
            v = row["value"]
            self.best = v if self.best is None else min(self.best, v)
        else:
            self.n_failed += 1
        if not self.enabled:
            return
        ran = self.n_done - self.n_start
        elapsed = time.monotonic() - self.t0
        left = max(0, self.n_total - self.n_done)
        eta = elapsed / ran * left if ran else float("nan")
        width = 24
        frac = min(1.0, self.n_done / self.n_total) if self.n_total else 1.0
        bar = "#" * int(round(frac * width)) + "-" * (width - int(round(frac * width)))
        best = "-" if self.best is None else f"{self.best:.6g}"
        fail = f" failed {self.n_failed}" if self.n_failed else ""
        line = (f"[{bar}] {self.n_done}/{self.n_total} eval  best {best}{fail}  "
                f"elapsed {_fmt_s(elapsed)}  ETA {_fmt_s(eta)}")
        if self._tty:
            self.stream.write("\r" + line + ("\n" if left == 0 else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        """End the line on a terminal if the run stopped short of its budget."""
        if self.enabled and self._tty and self.n_done < self.n_total:
            self.stream.write("\n")
            self.stream.flush()


def _fmt_s(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def refuse_if_busy(study):
    """Raise StudyError if another live process on this host is running ``study``."""
    busy = study.storage.running_elsewhere()
    if busy:
        raise StudyError(f"study {str(study.path)!r} is being run by another live process "
                         f"(evaluations {busy[:5]} running); only one may drive a study")


def record_budget(study, n_evals, n_jobs, stage_evals=None):
    """Store the budget (and jobs, stage budgets) of a run that has work to do.

    A call with a budget already reached changes nothing, so that the
    recorded budget stays the one the study was last run towards. A study
    another live process is running is refused before anything is written.
    """
    refuse_if_busy(study)
    if study.n_complete + study.n_failed >= n_evals:
        return
    study.storage.record_budget(n_evals, n_jobs, stage_evals)


def run_study(study, n_evals, *, n_jobs=1, backend=None, progress=True, callback=None,
              scheduler=None, stage_evals=None):
    """Run ``study`` until it holds ``n_evals`` evaluations.

    What :meth:`hnnfit.Study.optimize` does; see there for the parameters.
    An unstaged study's solver, as the run left it, is stored in its
    ``solver_`` attribute.

    Returns
    -------
    RunSummary
        For a staged study: totals over the stages, the final stage's
        best, and a ``stages`` attribute mapping each stage's name to its
        own summary.
    """
    n_evals = check_int(n_evals, "n_evals", low=1)
    n_jobs = check_int(n_jobs, "n_jobs", low=1)
    progress = check_bool(progress, "progress")
    # checked before the budget is recorded or anything runs
    if backend is not None:
        check_option(backend, BACKENDS, "backend")
    if scheduler is not None and backend != "dask":
        raise ValueError(f"scheduler is only used with backend='dask', got "
                         f"scheduler={scheduler!r} with backend={backend!r}")
    if backend == "dask":
        _check_dask(scheduler)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got "
                        f"{type(callback).__name__} {callback!r}")
    run = {"n_jobs": n_jobs, "backend": backend, "scheduler": scheduler,
           "progress": progress, "callback": callback}
    if study.stages is not None:
        return _run_staged(study, n_evals, stage_evals, run)
    if stage_evals is not None:
        raise ValueError("stage_evals is only for staged studies (created with "
                         "stages='evoked'), got a value for an unstaged one")
    record_budget(study, n_evals, n_jobs)
    solver = study.make_solver()
    summary = _run_stage(study, solver, study.objective, n_evals, "", **run)
    # the solver after the run (its state, e.g. CMA-ES' mean, is an estimate
    # in its own right when the objective is noisy)
    study.solver_ = solver
    return summary


def _check_dask(scheduler):
    """Fail as the dask backend would, before the run records anything.

    Without this, a missing dask.distributed or a missing Client is found
    only once the evaluations start, after the budget is recorded, and
    ``hnnfit resume`` would then continue towards a budget never run.
    """
    try:
        from distributed import get_client
    except ImportError:
        raise ImportError("backend='dask' needs dask.distributed, which cannot be "
                          "imported; install it with pip install hnnfit[dask] or use "
                          "backend='loky'") from None
    if scheduler is None:
        try:
            get_client()
        except ValueError:
            raise ValueError("backend='dask' needs a running dask.distributed Client in "
                             "this process or a scheduler address, got neither") from None


def _run_stage(study, solver, evaluate, budget, stage, *, n_jobs, backend, scheduler,
               progress, callback):
    """One call of run_optimization, with the progress line and callback wired."""
    counts = study.storage.counts(stage)
    best = study.storage.best(stage)
    bar = ProgressBar(budget, counts[EvalState.COMPLETE] + counts[EvalState.FAILED],
                      enabled=progress,
                      best=None if best is None else best["value"])
    listeners = [bar]
    if callback is not None:
        # a staged fit's rows say which stage they belong to
        listeners.append(callback if stage == "" else
                         (lambda row: callback(dict(row, stage=stage))))

    def on_row(row):
        # every listener hears the row; any of them may ask the run to stop
        stop = [listener(row) is True for listener in listeners]
        return any(stop)

    objective = study.objective
    try:
        return run_optimization(
            study.storage, solver, evaluate, budget, n_jobs=n_jobs, backend=backend,
            seeds=objective.seeds, n_trials=objective.n_trials, stage=stage,
            callback=on_row, scheduler=scheduler, resample=objective.resample)
    finally:
        bar.close()


# ----------------------------------------------------------------- staged fits
def _stage_budgets(study, n_evals, stage_evals):
    plan = study.stages
    used = {}
    for st in plan:
        c = study.storage.counts(st.name)
        used[st.name] = c[EvalState.COMPLETE] + c[EvalState.FAILED]
    # a stage is finished once a later one has started from its best point
    frozen = {st.name: used[st.name] for k, st in enumerate(plan)
              if any(used[t.name] for t in plan[k + 1:])}
    if stage_evals is None:
        return split_budget(n_evals, plan, frozen), frozen
    if not isinstance(stage_evals, dict):
        raise TypeError(f"stage_evals must be a dict of stage name to evaluations, got "
                        f"{type(stage_evals).__name__}")
    names = [st.name for st in plan]
    unknown = sorted(set(stage_evals) - set(names))
    if unknown:
        raise ValueError(f"stage_evals keys must be stage names ({', '.join(names)}), "
                         f"got {', '.join(map(repr, unknown))}")
    given = {name: check_int(n, f"stage_evals[{name!r}]", low=1)
             for name, n in stage_evals.items()}
    # the stages given keep their counts like finished ones; the others
    # share what is left of n_evals
    return split_budget(n_evals, plan, {**frozen, **given}), frozen


def _stage_objective(study, stage):
    """The objective of a drive stage: its window, its weights, weighted RMSE."""
    obj = study.objective
    times = study.target.times
    keep = times <= stage_sim_end(stage, times, obj.smooth_window)
    target = Target(times[keep], study.target.values[keep],
                    source=f"{study.target.source} [stage {stage.name}]")
    weights = stage.weights(times[keep])
    if obj.weights is not None:
        weights = weights * obj.weights[keep]
    kwargs = {k: getattr(obj, k) for k in SETTING_KEYS}
    kwargs.update(metric="weighted_rmse", weights=weights)
    return DipoleObjective(study.net, target, study.space, **kwargs)


def _run_staged(study, n_evals, stage_evals, run):
    budgets, frozen = _stage_budgets(study, n_evals, stage_evals)
    record_budget(study, n_evals, run["n_jobs"], stage_evals or {})
    settings = study.solver_settings
    point = study.space.clip(study.x0)
    total = RunSummary()
    total.stages = {}
    for k, stage in enumerate(study.stages):
        sub = study.space.subset(stage.params)
        start = {n: point[n] for n in stage.params}
        if stage.is_final:
            evaluate = study.objective
        else:
            fixed = {n: v for n, v in point.items() if n not in stage.params}
            evaluate = StageObjective(_stage_objective(study, stage), fixed)
        # each stage has its own solver stream, derived from the study's seed
        solver = make_solver(settings["name"], sub, x0=start,
                             seed=int(settings.get("seed", 0)) + k,
                             **legacy_options(settings["name"], settings.get("options", {})))
        budget = budgets[stage.name]
        c = study.storage.counts(stage.name)
        used = c[EvalState.COMPLETE] + c[EvalState.FAILED]
        if stage.name in frozen or used >= budget:
            summary = RunSummary(n_complete=c[EvalState.COMPLETE], n_failed=c[EvalState.FAILED])
        else:
            if run["progress"]:
                window = ("whole waveform" if stage.is_final else
                          f"{stage.t_start:.1f}-{stage.t_end:.1f} ms")
                sys.stderr.write(f"stage {k + 1}/{len(study.stages)} {stage.name}: "
                                 f"{len(stage.params)} parameters, {window}, "
                                 f"{budget} evaluations\n")
            summary = _run_stage(study, solver, evaluate, budget, stage.name, **run)
        best = study.storage.best(stage.name)
        if best is not None:
            # the next stage starts from this stage's best point, not
            # from the last point it simulated
            point.update(best["params"])
            summary.best_value, summary.best_params = best["value"], best["params"]
        total.stages[stage.name] = summary
        total.n_evaluated += summary.n_evaluated
        total.n_replayed += summary.n_replayed
        total.n_complete += summary.n_complete
        total.n_failed += summary.n_failed
        if summary.interrupted:
            total.interrupted = True
            break
        if summary.stopped:
            # the caller decides whether the next stage starts (see the
            # recipes' search, which shortens the stage's budget and goes on)
            total.stopped = True
            break
        if used < budget and summary.n_complete + summary.n_failed < budget \
                and not summary.solver_done:
            break   # stopped short (e.g. a failure to run): do not go on
    final = study.storage.best(FINAL)
    if final is not None:
        total.best_value, total.best_params = final["value"], stage_point(study)
    total.solver_done = all(s.solver_done for s in total.stages.values())
    return total


def stage_point(study, stage=None):
    """The best point carried forward after a stage (dict of all parameters).

    Starts from the study's start point ``x0`` and takes, stage by stage,
    the stage's best complete evaluation for the parameters that stage
    fits.

    Parameters
    ----------
    study : hnnfit.Study
        A staged study.
    stage : str | None
        The last stage to include (default: all stages run so far).

    Returns
    -------
    dict
    """
    if study.stages is None:
        raise ValueError("stage_point is only for staged studies (created with "
                         "stages='evoked')")
    names = [st.name for st in study.stages]
    if stage is not None and stage not in names:
        raise ValueError(f"stage must be one of {', '.join(map(repr, names))}, "
                         f"got {stage!r}")
    point = study.space.clip(study.x0)
    for st in study.stages:
        best = study.storage.best(st.name)
        if best is not None:
            point.update(best["params"])
        if st.name == stage:
            break
    return point


def stage_summary(study):
    """One row per stage: drives, parameters, window, evaluations, best value.

    Parameters
    ----------
    study : hnnfit.Study
        A staged study.

    Returns
    -------
    pandas.DataFrame
        Columns ``stage``, ``drives``, ``n_params``, ``t_start``,
        ``t_end`` (scored window, ms), ``sim_end`` (ms simulated),
        ``n_complete``, ``n_failed``, ``first_value`` (the stage's start
        point), ``best_value`` (the stage's own metric: weighted RMSE for
        drive stages, the study's metric for the final stage) and
        ``seconds`` (summed evaluation wall time).
    """
    import pandas as pd

    if study.stages is None:
        raise ValueError("stage_summary is only for staged studies (created with "
                         "stages='evoked')")
    recs = []
    for st in study.stages:
        rows = study.storage.rows(stage=st.name)
        c = study.storage.counts(st.name)
        done = [r for r in rows if r.state is EvalState.COMPLETE]
        first = min(done, key=lambda r: r["id"])["value"] if done else None
        best = study.storage.best(st.name)
        recs.append({
            "stage": st.name, "drives": ",".join(st.drives) or "all",
            "n_params": len(st.params), "t_start": st.t_start, "t_end": st.t_end,
            "sim_end": (float(study.target.times[-1]) if st.is_final else
                        stage_sim_end(st, study.target.times,
                                      study.objective.smooth_window)),
            "n_complete": c[EvalState.COMPLETE], "n_failed": c[EvalState.FAILED],
            "first_value": first,
            "best_value": None if best is None else best["value"],
            "seconds": float(sum(r["sim_seconds"] or 0.0 for r in rows)),
        })
    return pd.DataFrame.from_records(recs)
