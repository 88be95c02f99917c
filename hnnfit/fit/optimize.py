"""The driver loop: ask the solver, evaluate, record in the study, tell.

hnnfit owns the loop (the solvers only answer ``ask``/``tell``), so it can
record every evaluation as it finishes, run batches in parallel, survive
failures and interruptions, and resume.

Resuming is a replay. A solver is a deterministic function of its settings
and of the ask/tell sequence it has seen, and the study records for each
evaluation the solver batch and position it came from. On (re)start the
loop rebuilds nothing by hand: it runs from the first batch, and wherever
the study already holds the result of a batch position it uses that result
instead of evaluating again. A resumed study therefore proposes exactly the
points an uninterrupted run would, and each point is evaluated once
(positions left 'running' by a dead process are marked 'abandoned' and
evaluated again).
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
import traceback
from dataclasses import dataclass, field

from ..exceptions import StudyError
from ..validation import check_int, check_number, check_option, check_type
from .solvers import _Solver
from .study import Study, _canonical

BACKENDS = ("sequential", "loky", "dask")


@dataclass
class RunSummary:
    """What one call of :func:`run_optimization` did.

    Attributes
    ----------
    n_evaluated : int
        Evaluations run (and recorded) by this call.
    n_replayed : int
        Recorded evaluations reused from the study log.
    n_complete, n_failed : int
        Rows of the stage with that status after the call.
    interrupted : bool
        The loop stopped on KeyboardInterrupt.
    solver_done : bool
        The solver stopped on its own (converged).
    best_value : float | None
        Lowest value among complete rows of the stage.
    best_params : dict | None
    """

    n_evaluated: int = 0
    n_replayed: int = 0
    n_complete: int = 0
    n_failed: int = 0
    interrupted: bool = False
    solver_done: bool = False
    best_value: float | None = None
    best_params: dict | None = field(default=None)


def _evaluate_one(evaluate, params, seeds):
    """Run one evaluation, never raising: return a result record.

    Runs in worker processes, so it is a module-level function.
    """
    t0 = time.perf_counter()
    # where the evaluation ran (the row's host/pid columns are the driver's)
    worker = {"worker_host": socket.gethostname(), "worker_pid": os.getpid()}
    try:
        out = evaluate(dict(params), list(seeds) if seeds is not None else None)
    except Exception as err:  # any failure of the objective is data, not a crash
        tb = traceback.format_exc(limit=8)
        return {"ok": False, "error": f"{type(err).__name__}: {err}\n{tb}",
                "sim_seconds": time.perf_counter() - t0, "info": worker}
    elapsed = time.perf_counter() - t0
    if isinstance(out, dict):
        rec = dict(out)
    else:
        rec = {"value": out}
    value = rec.pop("value", None)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return {"ok": False, "sim_seconds": elapsed, "info": worker,
                "error": f"objective must return a number or a dict with a 'value', "
                         f"got {value!r}"}
    if not math.isfinite(value):
        return {"ok": False, "sim_seconds": elapsed, "info": worker,
                "error": f"objective returned a non-finite value {value}"}
    scale = rec.pop("scale", None)
    n_trials = rec.pop("n_trials", None)
    sim_seconds = rec.pop("sim_seconds", elapsed)
    try:
        info = json.loads(_canonical(rec))
    except TypeError:
        info = {k: repr(v) for k, v in rec.items()}
    info.update(worker)
    return {"ok": True, "value": value,
            "scale": None if scale is None else float(scale),
            "n_trials": n_trials, "sim_seconds": float(sim_seconds), "info": info}


def failure_penalty(values, failure_value=None):
    """Value told to the solver for a failed evaluation.

    The worst value seen so far plus 10% of the spread of the values seen
    (at least 0.1% of the worst value's magnitude, or 1 when that is 0), so
    a failure looks worse than anything evaluated but stays on the scale of
    the objective. With no value seen yet: ``failure_value`` (default 1e6).

    Parameters
    ----------
    values : list of float
        Values of complete evaluations told so far.
    failure_value : float | None
        Fixed value to use instead of the rule above.
    """
    if failure_value is not None:
        return float(failure_value)
    if not values:
        return 1e6
    worst, best = max(values), min(values)
    margin = max(0.1 * (worst - best), 1e-3 * abs(worst))
    return worst + (margin if margin > 0 else 1.0)


def _same_point(a, b):
    if set(a) != set(b):
        return False
    for k in a:
        x, y = float(a[k]), float(b[k])
        if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


class _Executor:
    """Evaluates a list of points, yielding (index, result) as each finishes."""

    def __init__(self, backend, n_jobs, scheduler=None):
        self.backend = backend
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self._parallel = None
        self._client = None
        self._own_client = False

    def __enter__(self):
        if self.backend == "loky":
            from joblib import Parallel

            self._parallel = Parallel(n_jobs=self.n_jobs, backend="loky",
                                      return_as="generator_unordered")
            self._parallel.__enter__()
        elif self.backend == "dask":
            try:
                from distributed import Client, get_client
            except ImportError:
                raise ImportError("backend='dask' needs dask.distributed; install it "
                                  "with pip install hnnfit[dask]") from None
            if self.scheduler is not None:
                # a cluster named by its scheduler address (e.g. one started
                # by dask-jobqueue on SLURM); this run owns the connection
                self._client = Client(self.scheduler)
                self._own_client = True
            else:
                try:
                    self._client = get_client()
                except ValueError:
                    raise ValueError("backend='dask' needs a running dask.distributed "
                                     "Client in this process or a scheduler address, "
                                     "got neither") from None
        return self

    def __exit__(self, *exc):
        if self._parallel is not None:
            self._parallel.__exit__(*exc)
        if self._own_client:
            self._client.close()
        return False

    def run(self, evaluate, points, seeds):
        if self.backend == "sequential" or len(points) == 1 and self.backend != "dask":
            for i, p in enumerate(points):
                yield i, _evaluate_one(evaluate, p, seeds)
        elif self.backend == "loky":
            from joblib import delayed

            yield from self._parallel(delayed(_indexed)(i, evaluate, p, seeds)
                                      for i, p in enumerate(points))
        else:
            from distributed import as_completed

            futures = [self._client.submit(_indexed, i, evaluate, p, seeds, pure=False)
                       for i, p in enumerate(points)]
            for fut in as_completed(futures):
                yield fut.result()


def _indexed(i, evaluate, params, seeds):
    return i, _evaluate_one(evaluate, params, seeds)


def _solver_key(stage):
    return "solver" if stage == "" else f"solver[{stage}]"


def run_optimization(study, solver, evaluate, n_evals, *, n_jobs=1, backend=None,
                     seeds=(0,), n_trials=None, stage="", failure_value=None,
                     callback=None, scheduler=None):
    """Minimise ``evaluate`` over the solver's space, recording every evaluation.

    Parameters
    ----------
    study : Study
        Where evaluations are recorded; if it already holds evaluations of
        this stage, the run resumes them (see the module docstring).
    solver : solver
        A fresh solver from :func:`~hnnfit.fit.solvers.make_solver`; its
        settings must match those the study recorded for the stage.
    evaluate : callable
        ``evaluate(params, seeds) -> dict(value=..., scale=..., ...)`` (or a
        number). Any picklable callable when run in parallel. An exception,
        or a value that is not finite, makes a 'failed' row.
    n_evals : int
        Budget: the run stops once the stage has this many complete plus
        failed evaluations (or the solver stops on its own).
    n_jobs : int
        Evaluations run at once (the solver is asked for batches this big).
    backend : {'sequential', 'loky', 'dask'} | None
        How batches are evaluated; default ``'sequential'`` for ``n_jobs=1``
        and ``'loky'`` (joblib worker processes) otherwise. ``'dask'`` uses
        the running dask.distributed Client, or connects to ``scheduler``.
    seeds : sequence of int
        Seeds passed to every evaluation (common random numbers keep the
        objective deterministic) and stored with each row.
    n_trials : int | None
        Stored with each row (``evaluate`` may report its own).
    stage : str
        Stage label; each stage has its own solver history.
    failure_value : float | None
        Value told to the solver for failed evaluations (default: see
        :func:`failure_penalty`).
    callback : callable | None
        Called as ``callback(row_dict)`` in the driver after each recorded
        evaluation.
    scheduler : str | None
        Address of a dask.distributed scheduler (``'tcp://host:8786'``) for
        ``backend='dask'``; the run connects to it and disconnects after.

    Returns
    -------
    summary : RunSummary
    """
    check_type(study, Study, "study")
    check_type(solver, _Solver, "solver", "a solver from make_solver")
    if not callable(evaluate):
        raise TypeError(f"evaluate must be callable, got {type(evaluate).__name__}")
    n_evals = check_int(n_evals, "n_evals", low=1)
    n_jobs = check_int(n_jobs, "n_jobs", low=1)
    if backend is None:
        backend = "sequential" if n_jobs == 1 else "loky"
    check_option(backend, BACKENDS, "backend")
    check_type(stage, str, "stage")
    seeds = [check_int(s, "seed") for s in seeds] if seeds is not None else None
    if failure_value is not None:
        failure_value = check_number(failure_value, "failure_value")
    if solver.n_told or solver._pending:
        raise ValueError("solver must be fresh (nothing asked or told yet), so that the "
                         "study log can be replayed into it")

    stored_space = study.metadata["space"]["parameters"]
    solver_space = solver.space.to_dict()["parameters"]
    if stage == "":
        mismatch = stored_space != solver_space
    else:
        # a stage fits a subset of the study's parameters, same bounds
        by_name = {p["name"]: p for p in stored_space}
        mismatch = any(by_name.get(p["name"]) != p for p in solver_space)
    if mismatch:
        raise StudyError(
            f"study {str(study.path)!r} was created with a different parameter space "
            f"than the solver's; use a new study file")
    key = _solver_key(stage)
    settings = _canonical(solver.settings())
    stored = study._meta_raw().get(key)
    if stored in (None, "null"):
        study.set_metadata(key, settings)
    elif stored != settings:
        raise StudyError(
            f"study {str(study.path)!r} stage {stage!r} was run with different solver "
            f"settings; resume it with the same solver, seed, start point and options "
            f"(stored: {stored[:200]})")
    busy = study.running_elsewhere()
    if busy:
        raise StudyError(
            f"study {str(study.path)!r} is being run by another live process "
            f"(running rows {busy[:5]}); only one driver may write a study")
    study.mark_abandoned()

    # the log: results and batch sizes by (batch, position)
    results, sizes, recorded = {}, {}, {}
    for row in study.rows(stage=stage):
        b, p = row["batch"], row["position"]
        if b is None:
            continue
        sizes[b] = max(sizes.get(b, 0), p + 1)
        recorded.setdefault((b, p), row)
        if row["status"] in ("complete", "failed") and (b, p) not in results:
            results[(b, p)] = row

    summary = RunSummary()
    told_values = []
    batch = 0
    try:
        with _Executor(backend, n_jobs, scheduler) as executor:
            while True:
                counts = study.counts(stage)
                used = counts["complete"] + counts["failed"]
                if batch in sizes:
                    size = sizes[batch]
                else:
                    if used >= n_evals:
                        break
                    size = min(n_jobs, n_evals - used)
                if solver.is_done:
                    break
                points = solver.ask(size)
                if not points:
                    break
                if batch in sizes and len(points) != sizes[batch]:
                    raise StudyError(
                        f"replaying study {str(study.path)!r} gave {len(points)} points "
                        f"for batch {batch}, but the study recorded {sizes[batch]}; the "
                        f"solver or its library version differs from the run that wrote "
                        f"the study")
                for pos, params in enumerate(points):
                    rec = recorded.get((batch, pos))
                    if rec is not None and rec["seeds"] != seeds:
                        raise StudyError(
                            f"study {str(study.path)!r} was run with seeds {rec['seeds']}, "
                            f"got {seeds}; resume it with the same seeds")
                    if rec is not None and not _same_point(rec["params"], params):
                        raise StudyError(
                            f"replaying study {str(study.path)!r} proposed {params} at "
                            f"batch {batch}, position {pos}, but the study recorded "
                            f"{rec['params']}; the solver or its library version differs "
                            f"from the run that wrote the study")
                todo = [pos for pos in range(len(points)) if (batch, pos) not in results]
                summary.n_replayed += len(points) - len(todo)
                if todo and used + len(todo) > n_evals:
                    # budget smaller than the recorded batch: evaluate what fits, stop
                    todo = todo[:max(0, n_evals - used)]
                    if not todo:
                        break
                    _evaluate_batch(study, executor, evaluate, points, todo, batch,
                                    seeds, n_trials, stage, results, summary, callback)
                    break
                if todo:
                    _evaluate_batch(study, executor, evaluate, points, todo, batch,
                                    seeds, n_trials, stage, results, summary, callback)
                batch_vals = [results[(batch, p)] for p in range(len(points))]
                good = [r["value"] for r in batch_vals if r["status"] == "complete"]
                penalty = failure_penalty(told_values + good, failure_value)
                values = [r["value"] if r["status"] == "complete" else penalty
                          for r in batch_vals]
                solver.tell(points, values)
                told_values.extend(good)
                batch += 1
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.solver_done = bool(solver.is_done)
    counts = study.counts(stage)
    summary.n_complete, summary.n_failed = counts["complete"], counts["failed"]
    best = study.best(stage)
    if best is not None:
        summary.best_value, summary.best_params = best["value"], best["params"]
    return summary


def _evaluate_batch(study, executor, evaluate, points, todo, batch, seeds, n_trials,
                    stage, results, summary, callback):
    """Evaluate the positions ``todo`` of a batch, recording each result as it comes."""
    ids = study.add_running([points[p] for p in todo], stage=stage, batch=batch,
                            positions=todo, seeds=seeds, n_trials=n_trials)
    row_of = dict(zip(todo, ids))
    pending = set(todo)
    try:
        for i, res in executor.run(evaluate, [points[p] for p in todo], seeds):
            pos = todo[i]
            if res["ok"]:
                study.finish(row_of[pos], status="complete", value=res["value"],
                             scale=res["scale"], sim_seconds=res["sim_seconds"],
                             n_trials=res["n_trials"], info=res["info"])
                row = {"status": "complete", "value": res["value"]}
            else:
                study.finish(row_of[pos], status="failed", error=res["error"],
                             sim_seconds=res.get("sim_seconds"), info=res.get("info"))
                row = {"status": "failed", "value": None}
            pending.discard(pos)
            results[(batch, pos)] = row
            summary.n_evaluated += 1
            if callback is not None:
                callback(dict(row, id=row_of[pos], params=points[pos], batch=batch,
                              position=pos, error=res.get("error")))
    finally:
        # interrupted (or crashed) mid-batch: what did not finish is abandoned
        # and will be proposed again on resume
        if pending:
            study.abandon([row_of[p] for p in sorted(pending)])
