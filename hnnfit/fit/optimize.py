"""The driver loop: ask the solver, evaluate, record in the study, tell.

hnnfit owns the loop (the solvers only answer ``ask``/``tell``), so it can
record every evaluation as it finishes, run evaluations in parallel,
survive failures and interruptions, and resume.

Two schedules, fixed per stage when it starts and recorded in the study
(metadata ``schedule`` or ``schedule[<stage>]``):

``'pipelined'`` (Bayesian optimisation)
    ``n_jobs`` evaluations stay in flight: when the oldest one finishes it
    is told to the solver and one new point is proposed, the points still
    being evaluated standing in at a constant-liar value (the lowest value
    told so far). Workers do not wait for the slowest evaluation of a batch,
    and the solver's work overlaps the other workers' simulations. Row
    ``batch`` is the point's index ``k`` in the stage, ``position`` the
    number of points pending when it was proposed (0 for the first point,
    then one more per point up to ``n_jobs - 1``).
``'batches'`` (COBYLA, CMA-ES, stages begun before pipelining existed, and
any run with ``resample=True``)
    the solver is asked for ``n_jobs`` points, all are evaluated, all are
    told, and the next batch is asked. Row ``batch``/``position`` say where
    in which batch the point came from.

Seeds. By default every evaluation uses the same seeds (common random
numbers: the objective is a deterministic function, and a solver compares
points on equal terms). Its price is that a long search fits those few
trials' noise: the lowest values belong to points that suit those trials.
``resample=True`` gives each batch new seeds (batch ``b`` uses the seeds
shifted by ``b`` times their span) while the points of one batch share
them. A solver that proposes whole generations (CMA-ES) is then asked for
one generation per batch, so that the ranking it learns from compares points
on the same trials, and over the run it sees many trials instead of a few.
A resampled stage that starts in a study which already used seeds (a later
stage of a staged fit) first skips as many spans as it takes to pass them
all, so that no stage re-runs the trials an earlier stage chose its point
on; the shift is recorded when the stage starts and kept on resume.

Resuming is a replay. A solver is a deterministic function of its settings
and of the ask/tell sequence it has seen, and the rows record that sequence:
in both schedules the solver is told results in the log's order (never in
the order evaluations happened to finish) and each proposal sees the same
pending points as in the original run. On (re)start the loop runs from the
first point, and wherever the study already holds a result it uses it
instead of evaluating again. A resumed study therefore proposes exactly the
points an uninterrupted run with the same ``n_jobs`` would (with another
``n_jobs``, the recorded points are replayed as they were and only the later
proposals differ), and each point is evaluated once (points left 'running'
by a dead process are marked 'abandoned' and evaluated again).
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
from ..parallel import exit_with_driver
from ..validation import check_bool, check_int, check_number, check_option, check_type
from .solvers import Solver, comparable_settings
from .storage import EvalState, StudyStorage, canonical_json

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
    stopped : bool
        The callback asked the loop to stop (it returned True); the
        evaluations in flight were finished and recorded first.
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
    stopped: bool = False
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
        info = json.loads(canonical_json(rec))
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


class Executor:
    """Runs evaluations: ``submit`` one point, ``wait`` for the next finished one.

    One interface for the three backends, so that the driver can keep a
    given number of evaluations in flight. 'sequential' runs a submitted
    point only when the driver waits for it, oldest first, so the driver
    code is the same whatever the backend. 'loky' uses joblib's reusable
    pool of worker processes: it outlives the run, so a later run in the
    same process (the next stage of a staged fit) finds the workers with
    their warm models.
    """

    def __init__(self, backend, n_jobs, scheduler=None):
        self.backend = backend
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self._pool = None
        self._client = None
        self._own_client = False
        self._queue = []          # sequential: (key, evaluate, params, seeds)
        self._futures = {}        # loky, dask: future -> key
        self._completed = None    # dask: as_completed iterator

    def __enter__(self):
        if self.backend == "loky":
            import os

            from joblib import cpu_count
            from joblib._parallel_backends import LokyBackend
            from joblib.executor import get_memmapping_executor

            # the pool joblib.Parallel(n_jobs, backend='loky') would use, with
            # its limit on each worker's BLAS/OpenMP threads
            n_threads = str(max(cpu_count() // self.n_jobs, 1))
            env = {var: os.environ.get(var, n_threads)
                   for var in LokyBackend.MAX_NUM_THREADS_VARS}
            self._pool = get_memmapping_executor(self.n_jobs, timeout=300, env=env,
                                                 initializer=exit_with_driver,
                                                 initargs=(os.getpid(),))
        elif self.backend == "dask":
            try:
                from distributed import Client, as_completed, get_client
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
            self._completed = as_completed()
        return self

    def __exit__(self, *exc):
        try:
            if self._futures:
                # stopped with evaluations in flight (interrupt or error):
                # their rows are abandoned by the caller; do not wait for them
                for fut in self._futures:
                    fut.cancel()
                if self.backend == "loky":
                    # a cancelled future cannot stop a running task: stop the
                    # workers, so no orphaned simulation keeps the cores busy
                    self._pool.shutdown(wait=False, kill_workers=True)
                self._futures = {}
        finally:
            if self._own_client:
                self._client.close()
        return False

    @property
    def n_pending(self):
        return len(self._queue) + len(self._futures)

    def submit(self, key, evaluate, params, seeds):
        if self.backend == "sequential":
            self._queue.append((key, evaluate, params, seeds))
        elif self.backend == "loky":
            self._futures[self._pool.submit(_evaluate_one, evaluate, params, seeds)] = key
        else:
            fut = self._client.submit(_evaluate_one, evaluate, params, seeds, pure=False)
            self._futures[fut] = key
            self._completed.add(fut)

    def wait(self):
        """``(key, result)`` of an evaluation that finished (blocks)."""
        if self.backend == "sequential":
            key, evaluate, params, seeds = self._queue.pop(0)
            return key, _evaluate_one(evaluate, params, seeds)
        if self.backend == "loky":
            from concurrent.futures import FIRST_COMPLETED, wait

            done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
            fut = min(done, key=lambda f: self._futures[f])
        else:
            fut = next(self._completed)
        key = self._futures.pop(fut)
        return key, fut.result()

    def run(self, evaluate, points, seeds):
        """Evaluate ``points``; yield ``(index, result)`` as each finishes."""
        for i, p in enumerate(points):
            self.submit(i, evaluate, p, seeds)
        while self.n_pending:
            yield self.wait()


def run_optimization(study, solver, evaluate, n_evals, *, n_jobs=1, backend=None,
                     seeds=(0,), n_trials=None, stage="", failure_value=None,
                     callback=None, scheduler=None, resample=False):
    """Minimise ``evaluate`` over the solver's space, recording every evaluation.

    Parameters
    ----------
    study : StudyStorage
        Where evaluations are recorded (opened for writing); if it
        already holds evaluations of this stage, the run resumes them
        (see the module docstring).
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
        Evaluations run at once (see the module docstring for how points
        are proposed to keep them busy).
    backend : {'sequential', 'loky', 'dask'} | None
        Where evaluations run; default ``'sequential'`` for ``n_jobs=1``
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
        evaluation. If it returns True, no new point is proposed: the
        evaluations in flight (the rest of a batch) are finished and
        recorded, and the run ends with ``summary.stopped`` set.
    scheduler : str | None
        Address of a dask.distributed scheduler (``'tcp://host:8786'``) for
        ``backend='dask'``; the run connects to it and disconnects after.
    resample : bool
        Give each batch of evaluations new seeds (see the module docstring);
        a solver with generations is asked for a whole generation per batch.
        Needs ``seeds``.

    Returns
    -------
    summary : RunSummary
    """
    check_type(study, StudyStorage, "study")
    check_type(solver, Solver, "solver", "a solver from make_solver")
    if not callable(evaluate):
        raise TypeError(f"evaluate must be callable, got {type(evaluate).__name__}")
    n_evals = check_int(n_evals, "n_evals", low=1)
    n_jobs = check_int(n_jobs, "n_jobs", low=1)
    if backend is None:
        backend = "sequential" if n_jobs == 1 else "loky"
    check_option(backend, BACKENDS, "backend")
    check_type(stage, str, "stage")
    seeds = [check_int(s, "seed") for s in seeds] if seeds is not None else None
    resample = check_bool(resample, "resample")
    if resample and not seeds:
        raise ValueError("resample=True needs seeds to shift from, got none")
    if failure_value is not None:
        failure_value = check_number(failure_value, "failure_value")
    if solver.n_told or solver.n_open:
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
    stored = study.stage_solver(stage)
    if stored is None:
        study.set_stage_solver(stage, solver.settings())
    elif (canonical_json(comparable_settings(json.loads(stored)))
          != canonical_json(comparable_settings(solver.settings()))):
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

    schedule = _schedule(study, stage, solver, resample)

    summary = RunSummary()
    try:
        with Executor(backend, n_jobs, scheduler) as executor:
            if schedule == "pipelined":
                _run_pipelined(study, solver, evaluate, n_evals, n_jobs, executor, seeds,
                               n_trials, stage, failure_value, callback, summary)
            else:
                _run_batches(study, solver, evaluate, n_evals, n_jobs, executor, seeds,
                             n_trials, stage, failure_value, callback, summary, resample)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.solver_done = bool(solver.is_done)
    counts = study.counts(stage)
    summary.n_complete = counts[EvalState.COMPLETE]
    summary.n_failed = counts[EvalState.FAILED]
    best = study.best(stage)
    if best is not None:
        summary.best_value, summary.best_params = best.value, best.params
    return summary


def _schedule(study, stage, solver, resample=False):
    """How the stage's evaluations are scheduled: 'batches' or 'pipelined'.

    Recorded in the study when a stage starts (before its first row), so
    that a resumed stage is replayed the way it was run; the storage's
    schema migration records it for stages of files older than that.
    Resampled runs always run in batches (the seeds belong to a batch).
    """
    stored = study.stage_schedule(stage)
    if stored is not None:
        if resample and stored == "pipelined":
            raise StudyError(
                f"study {str(study.path)!r} stage {stage!r} was run with the same seeds "
                f"for every evaluation (pipelined); resume it with resample=False")
        return stored
    mode = ("pipelined" if solver.name in _PIPELINED_SOLVERS and not resample
            else "batches")
    study.set_stage_schedule(stage, mode)
    return mode


def _seed_offset(study, stage, seeds, resample):
    """Spans of seeds a resampled stage skips before its first batch.

    Decided when the stage starts (the first span whose seeds all lie above
    every seed the study has used) and recorded before its first row, so
    that a resumed stage walks the same seeds; the storage's schema
    migration records 0 for stages of files older than that.
    """
    if not resample:
        return 0
    stored = study.stage_seed_offset(stage)
    if stored is not None:
        return stored
    offset = 0
    used = study.seeds_used()
    span = max(seeds) - min(seeds) + 1
    if used and max(used) >= min(seeds):
        offset = (max(used) - min(seeds)) // span + 1
    study.set_stage_seed_offset(stage, offset)
    return offset


def _batch_seeds(seeds, batch, resample):
    """The seeds of batch ``batch``: ``seeds`` shifted by ``batch`` spans if resampling."""
    if not resample:
        return seeds
    span = max(seeds) - min(seeds) + 1
    return [s + batch * span for s in seeds]


# solvers that can propose a point while others are still being evaluated
_PIPELINED_SOLVERS = ("bayesian",)


def _run_batches(study, solver, evaluate, n_evals, n_jobs, executor, seeds, n_trials,
                 stage, failure_value, callback, summary, resample=False):
    """Ask a batch, evaluate it whole, tell it whole, ask the next one."""
    per_batch = n_jobs
    if resample and getattr(solver, "generation_size", None):
        # one generation per batch: its ranking compares points on equal trials
        per_batch = solver.generation_size
    results, sizes, recorded = _batch_log(study, stage)
    offset = _seed_offset(study, stage, seeds, resample)
    told_values = []
    batch = 0
    while True:
        counts = study.counts(stage)
        used = counts[EvalState.COMPLETE] + counts[EvalState.FAILED]
        if batch in sizes:
            size = sizes[batch]
        else:
            if used >= n_evals:
                break
            size = min(per_batch, n_evals - used)
        if solver.is_done or summary.stopped:
            break
        points = solver.ask(size)
        if not points:
            break
        bseeds = _batch_seeds(seeds, offset + batch, resample)
        if batch in sizes and len(points) != sizes[batch]:
            raise StudyError(
                f"replaying study {str(study.path)!r} gave {len(points)} points "
                f"for batch {batch}, but the study recorded {sizes[batch]}; the "
                f"solver or its library version differs from the run that wrote "
                f"the study")
        for pos, params in enumerate(points):
            _check_replay(study, recorded.get((batch, pos)), params, bseeds,
                          f"batch {batch}, position {pos}")
        todo = [pos for pos in range(len(points)) if (batch, pos) not in results]
        summary.n_replayed += len(points) - len(todo)
        if todo and used + len(todo) > n_evals:
            # budget smaller than the recorded batch: evaluate what fits, stop
            todo = todo[:max(0, n_evals - used)]
            if todo:
                _evaluate_batch(study, executor, evaluate, points, todo, batch,
                                bseeds, n_trials, stage, results, summary, callback)
            break
        if todo:
            _evaluate_batch(study, executor, evaluate, points, todo, batch,
                            bseeds, n_trials, stage, results, summary, callback)
        _tell_batch(solver, points, [results[(batch, p)] for p in range(len(points))],
                    told_values, failure_value)
        batch += 1


def _batch_log(study, stage):
    """The log of a stage run in batches: finished rows, batch sizes and the
    first row of each position, keyed by (batch, position)."""
    results, sizes, recorded = {}, {}, {}
    for row in study.rows(stage=stage):
        b, p = row.batch, row.position
        if b is None:
            continue
        sizes[b] = max(sizes.get(b, 0), p + 1)
        recorded.setdefault((b, p), row)
        if row.state.finished and (b, p) not in results:
            results[(b, p)] = row
    return results, sizes, recorded


def _tell_batch(solver, points, rows, told_values, failure_value):
    """Tell a finished batch, failed rows at the failure penalty of the moment."""
    good = [r.value for r in rows if r.state is EvalState.COMPLETE]
    penalty = failure_penalty(told_values + good, failure_value)
    solver.tell(points, [r.value if r.state is EvalState.COMPLETE else penalty
                         for r in rows])
    told_values.extend(good)


def replay_solver(study, solver, stage="", failure_value=None):
    """Tell a fresh ``solver`` every finished batch a study recorded, in order.

    The solver ends in the state the run that wrote the study left it in
    after its last finished batch (e.g. CMA-ES' mean and its history), with
    nothing evaluated and nothing written to the study.

    Parameters
    ----------
    study : StudyStorage
        Opened for writing or read-only.
    solver : solver
        A fresh solver with the study's (or the stage's) settings.
    stage : str
    failure_value : float | None
        As given to :func:`run_optimization` (failed rows are told this).

    Returns
    -------
    solver
        The same solver, told.

    Raises
    ------
    StudyError
        The stage ran pipelined (Bayesian optimisation), or the solver
        proposes other points than the study recorded.
    """
    check_type(solver, Solver, "solver", "a solver from make_solver")
    if solver.n_told or solver.n_open:
        raise ValueError("solver must be fresh (nothing asked or told yet), so that the "
                         "study log can be replayed into it")
    if study.stage_schedule(stage) == "pipelined":
        raise StudyError(f"study {str(study.path)!r} stage {stage!r} ran pipelined; only "
                         f"a stage run in batches can be replayed without its driver")
    results, sizes, _ = _batch_log(study, stage)
    told_values = []
    batch = 0
    while batch in sizes and all((batch, p) in results for p in range(sizes[batch])):
        points = solver.ask(sizes[batch])
        rows = [results[(batch, p)] for p in range(sizes[batch])]
        if len(points) != len(rows) or not all(
                _same_point(r.params, q) for r, q in zip(rows, points)):
            raise StudyError(
                f"replaying study {str(study.path)!r} proposed other points than it "
                f"recorded in batch {batch}; the solver's settings or library version "
                f"differ from the run that wrote it")
        _tell_batch(solver, points, rows, told_values, failure_value)
        batch += 1
    return solver


def _check_replay(study, rec, params, seeds, where):
    """Refuse to go on when a replayed proposal differs from the recorded one."""
    if rec is None:
        return
    if rec.seeds != seeds:
        raise StudyError(
            f"study {str(study.path)!r} was run with seeds {rec.seeds}, "
            f"got {seeds}; resume it with the same seeds")
    if not _same_point(rec.params, params):
        raise StudyError(
            f"replaying study {str(study.path)!r} proposed {params} at {where}, but "
            f"the study recorded {rec.params}; the solver or its library version "
            f"differs from the run that wrote the study")


def _run_pipelined(study, solver, evaluate, n_evals, n_jobs, executor, seeds, n_trials,
                   stage, failure_value, callback, summary):
    """Keep ``n_jobs`` evaluations in flight, proposing one point at a time.

    Point ``k`` of the stage is proposed once points ``0 .. k - lag - 1``
    are told to the solver, in that order, while the ``lag`` points before
    ``k`` are still pending (the solver sees them with a constant-liar
    value); ``lag`` grows by one per point up to ``n_jobs - 1`` and is
    recorded as the row's ``position`` (``batch`` is ``k``). What the
    solver sees therefore depends on the log only, never on which
    evaluation happened to finish first, and a replay proposes the same
    points. A finished evaluation that is not the oldest pending one waits
    (its worker idles) until the older ones finish.
    """
    results, recorded = {}, {}
    for row in study.rows(stage=stage):
        k = row.batch
        if k is None:
            continue
        recorded.setdefault(k, row)
        if row.state.finished and k not in results:
            results[k] = row

    asked = []           # params of points 0 .. k_next - 1
    lags = []
    told_values = []     # complete values told, for the failure penalty
    lies = []            # every value told (penalties included), for the liar
    n_told = 0
    rows = {}            # k -> row id, for evaluations in flight
    try:
        while True:
            k = len(asked)
            # propose point k if the budget, the solver and the log allow it
            can_ask = not solver.is_done and not summary.stopped
            if can_ask and k not in results:
                counts = study.counts(stage)
                can_ask = (counts[EvalState.COMPLETE] + counts[EvalState.FAILED]
                           + len(rows) < n_evals)
            if can_ask:
                lag = recorded[k].position if k in recorded else \
                    min(n_jobs - 1, lags[-1] + 1 if lags else 0)
                need = k - lag
                if need < n_told or need > k:
                    raise StudyError(
                        f"study {str(study.path)!r} records evaluation {k} of stage "
                        f"{stage!r} with {lag} pending points, which cannot follow "
                        f"the evaluations before it")
                if all(j in results for j in range(n_told, need)):
                    # tell what the proposal of k must know, in order
                    while n_told < need:
                        r = results[n_told]
                        if r.state is EvalState.COMPLETE:
                            value = r.value
                        else:
                            value = failure_penalty(told_values, failure_value)
                        with _solver_threads():
                            solver.tell([asked[n_told]], [value])
                        if r.state is EvalState.COMPLETE:
                            told_values.append(value)
                        lies.append(value)
                        n_told += 1
                    with _solver_threads():
                        params = solver.ask_with_pending(asked[need:k],
                                                         min(lies) if lies else 0.0)
                    if params is None:
                        break
                    _check_replay(study, recorded.get(k), params, seeds,
                                  f"evaluation {k} ({lag} pending)")
                    asked.append(params)
                    lags.append(lag)
                    if k in results:
                        summary.n_replayed += 1
                    else:
                        (rows[k],) = study.add_running([params], stage=stage, batch=k,
                                                       positions=[lag], seeds=seeds,
                                                       n_trials=n_trials)
                        executor.submit(k, evaluate, params, seeds)
                    continue
            if not rows:
                break  # nothing in flight and nothing more to propose
            j, res = executor.wait()
            results[j] = _record(study, rows.pop(j), res, summary, callback,
                                 asked[j], j, lags[j])
    finally:
        # interrupted (or crashed): what did not finish is abandoned and will
        # be proposed again on resume
        if rows:
            study.abandon(sorted(rows.values()))


class _solver_threads:
    """Run solver work on one BLAS thread.

    With evaluations in flight the driver's solver work shares the cores
    with the workers; one thread also makes the result independent of the
    machine's core count, as the replay of a study on another machine needs.
    """

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # scikit-learn depends on it; stay usable without
            self._limits = None
            return self
        self._limits = threadpool_limits(limits=1, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()
        return False


@dataclass(frozen=True)
class _Told:
    """What the solver is told of a finished evaluation."""

    state: EvalState
    value: float | None


def _record(study, row_id, res, summary, callback, params, batch, position):
    """Write a finished evaluation to its row; return its :class:`_Told`."""
    if res["ok"]:
        study.finish(row_id, state=EvalState.COMPLETE, value=res["value"],
                     scale=res["scale"], sim_seconds=res["sim_seconds"],
                     n_trials=res["n_trials"], info=res["info"])
        told = _Told(EvalState.COMPLETE, res["value"])
    else:
        study.finish(row_id, state=EvalState.FAILED, error=res["error"],
                     sim_seconds=res.get("sim_seconds"), info=res.get("info"))
        told = _Told(EvalState.FAILED, None)
    summary.n_evaluated += 1
    if callback is not None:
        if callback({"status": told.state.value, "value": told.value, "id": row_id,
                     "params": params, "batch": batch, "position": position,
                     "error": res.get("error")}) is True:
            summary.stopped = True
    return told


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
            results[(batch, pos)] = _record(study, row_of[pos], res, summary, callback,
                                            points[pos], batch, pos)
            pending.discard(pos)
    finally:
        # interrupted (or crashed) mid-batch: what did not finish is abandoned
        # and will be proposed again on resume
        if pending:
            study.abandon([row_of[p] for p in sorted(pending)])
