"""Held-out assessment of a study: scoring its points on trials the fit did not use.

With a stochastic objective, a study's values are measured on its own
random streams (seeds), and its lowest value is biased low: part of it is
luck on those streams. The functions here judge a study on other streams
(held-out seeds): :func:`score_held_out` scores the best point,
:func:`error_budget` splits a point's error into bias and trial noise,
:func:`rescore` scores the leading evaluations again to choose among them,
and :func:`surrogate_point` proposes the minimum of a model pooled over the
evaluations. :func:`score_points` scores any list of points on given seeds.
None of them writes to the study.
"""
import math

import numpy as np

from ..exceptions import StudyError
from ..validation import check_int, check_option, check_positive, format_seeds
from .optimize import BACKENDS, Executor
from .staging import FINAL
from .storage import EvalState
from .surrogate import WaveformSurrogate

__all__ = ["score_points", "score_held_out", "error_budget", "rescore", "surrogate_point",
           "used_seeds", "check_held_out"]


def _seed_list(seeds):
    """``seeds`` as a list of non-negative ints; a lone int is refused by name."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        raise TypeError(f"seeds must be a sequence of trial seeds, e.g. [{seeds}], got the "
                        f"int {seeds}")
    return [check_int(s, "seed", low=0) for s in seeds]


def _run_options(n_jobs, backend):
    """``n_jobs`` and ``backend`` checked, the backend defaulted as for a study run."""
    n_jobs = check_int(n_jobs, "n_jobs", low=1)
    if backend is None:
        backend = "sequential" if n_jobs == 1 else "loky"
    check_option(backend, BACKENDS, "backend")
    return n_jobs, backend


def score_points(objective, points, seeds, n_jobs=1, backend=None):
    """Score each of ``points`` on the trials ``seeds``.

    Each point is evaluated as a study evaluates it (``objective(point,
    seeds)``), in worker processes when ``n_jobs > 1``; a failed simulation
    gives NaN instead of raising.

    Parameters
    ----------
    objective : callable
        ``objective(params, seeds)`` returning a number or a dict with a
        ``'value'``, e.g. a :class:`~hnnfit.fit.objective.DipoleObjective`
        (picklable when ``n_jobs > 1``).
    points : sequence of dict
        Parameter values, one dict per point.
    seeds : sequence of int
        Trial seeds (random streams) every point is scored on.
    n_jobs : int
        Points scored at once.
    backend : {'sequential', 'loky', 'dask'} | None
        Where the points run (see :func:`~hnnfit.fit.optimize.
        run_optimization`); default ``'sequential'`` for one job, else
        ``'loky'``.

    Returns
    -------
    values : ndarray of float
        The value of each point, in the order given; NaN where the
        evaluation failed.
    """
    if not callable(objective):
        raise TypeError(f"objective must be callable, got {type(objective).__name__}")
    points = list(points)
    for p in points:
        if not isinstance(p, dict):
            raise TypeError(f"points must be dicts of parameter values, got "
                            f"{type(p).__name__} {p!r}")
    seeds = _seed_list(seeds)
    n_jobs, backend = _run_options(n_jobs, backend)
    return _score(objective, points, seeds, n_jobs, backend)


def _score(objective, points, seeds, n_jobs, backend):
    values = np.full(len(points), math.nan)
    with Executor(backend, n_jobs) as ex:
        for i, res in ex.run(objective, points, seeds):
            if res["ok"]:
                values[i] = res["value"]
    return values


def used_seeds(study):
    """Sorted seeds ``study``'s evaluations were run on.

    Its objective's seeds, plus every batch's own when the study resamples.

    Returns
    -------
    list of int
    """
    return sorted(set(study.objective.seeds) | set(study.storage.seeds_used()))


def check_held_out(study, seeds, at_least=1):
    """``seeds`` as a list, checked to hold ``at_least`` seeds ``study`` never ran on.

    Raises
    ------
    ValueError
        Too few seeds, or some of the study's own (named in the message).
    TypeError
        A lone int instead of a sequence.
    """
    seeds = _seed_list(seeds)
    if len(seeds) < at_least:
        raise ValueError(f"seeds must hold at least {at_least} seed"
                         f"{'s' if at_least > 1 else ''}, got {len(seeds)}")
    used = used_seeds(study)
    own = sorted(set(seeds) & set(used))
    if own:
        raise ValueError(f"seeds must be trials the fit did not use (its seeds are "
                         f"{format_seeds(used)}), got {own}")
    return seeds


def _objective_at(study, dt):
    """The study's objective, or a copy of it integrating at step ``dt`` (ms)."""
    if dt is None:
        return study.objective
    return study.objective.with_settings(dt=check_positive(dt, "dt"))


def score_held_out(study, seeds, dt=None):
    """Score ``study``'s best parameters on the trials ``seeds``.

    Parameters
    ----------
    study : hnnfit.Study
    seeds : sequence of int
        Trial indices (random streams), e.g. ones not used in the fit.
    dt : float | None
        Integration step (ms) of these trials; default the objective's.
        A fit that searched at a coarse step (e.g. 0.05) is judged at
        the fine one (0.025) this way.

    Returns
    -------
    dict
        The objective's result on ``seeds`` (``value``, ``scale``,
        ``seeds``, ``n_trials``, ``sim_s``, ``dipole``) plus
        ``fit_value``, the best value on the study's own seeds (None for a
        staged study whose final stage has not run).
    """
    seeds = _seed_list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least 1 seed, got 0")
    out = _objective_at(study, dt).score_held_out(study.best_params, seeds)
    try:
        out["fit_value"] = study.best_value
    except StudyError:
        out["fit_value"] = None      # a staged study before its final stage
    return out


def error_budget(study, seeds, params=None, k=None, n_jobs=1, dt=None):
    """Split the RMSE of ``k``-trial averages on ``seeds`` into bias and noise.

    Parameters
    ----------
    study : hnnfit.Study
    seeds : sequence of int
        At least 2 trial seeds the fit did not use (a few dozen give a
        usable estimate: each trial adds one sample of the variance).
    params : dict | None
        The point; default the best parameters.
    k, n_jobs : int | None, int
        Trials per average and trials simulated at once, as in
        :meth:`DipoleObjective.error_budget`.
    dt : float | None
        Integration step (ms) of these trials; default the objective's
        (see :func:`score_held_out`).

    Returns
    -------
    dict
        ``expected`` (nAm: the root expected mean square error of a
        ``k``-trial average, ``sqrt(bias2 + var / k)``), ``bias2`` (the
        mean waveform's squared error, nAm^2), ``var`` (the trials'
        variance, nAm^2), per time point ``mean``, ``bias2_t`` and
        ``var_t``, the spread of scores ``trial_rmse`` (each trial's)
        and ``group_rmse`` (each average of ``k`` distinct trials',
        nAm), the processed ``trials``, and ``k``, ``n_trials``,
        ``scale``, ``seeds``; see :func:`hnnfit.fit.objective.error_budget`.
    """
    seeds = check_held_out(study, seeds, at_least=2)
    point = study.best_params if params is None else study.space.check_values(params)
    return _objective_at(study, dt).error_budget(point, seeds, k=k, n_jobs=n_jobs)


def surrogate_point(study, radius=2.0, ridge=1.0, last=None):
    """The minimum of a quadratic model of the waveform, pooled over evaluations.

    Fits :class:`~hnnfit.fit.surrogate.WaveformSurrogate` to the stored
    waveforms of ``study``'s complete evaluations (of the final stage, for
    a staged study), each batch's own level removed when the study is
    resampled (its trials are shared), and returns its minimum within
    ``radius`` standard deviations of the evaluated points. The point was
    not evaluated: score it (``objective.validate``) before trusting it.

    Parameters
    ----------
    study : hnnfit.Study
    radius : float
        Trust region, in standard deviations of the evaluated points.
    ridge : float
        Ridge penalty of the regression.
    last : int | None
        Use only the ``last`` most recent evaluations (e.g. those near
        where a solver ended); default all.

    Returns
    -------
    params : dict
        Parameter values.
    rmse : float
        The model's predicted RMSE (nAm) of the expected waveform, trial
        variability not included.
    """
    objective = study.objective
    if objective.scale == "fit" or objective.metric not in ("rmse", "weighted_rmse"):
        raise ValueError(f"surrogate_point needs a fixed scale and the metric 'rmse' "
                         f"or 'weighted_rmse', got scale {objective.scale!r} and "
                         f"metric {objective.metric!r}")
    last = check_int(last, "last", low=1, allow_none=True)
    rows = [r for r in study.storage.rows(state=EvalState.COMPLETE,
                                          stage=FINAL if study.stages else "")
            if (r["info"] or {}).get("dipole") is not None]
    if last is not None:
        rows = rows[-last:]
    if not rows:
        raise StudyError(f"study {str(study.path)!r} has no complete evaluation with a "
                         f"stored waveform")
    X = np.array([study.space.to_unit(r["params"]) for r in rows])
    W = np.array([r["info"]["dipole"] for r in rows], dtype=float)
    groups = ([r["batch"] if r["batch"] is not None else -1 for r in rows]
              if objective.resample else np.zeros(len(rows), dtype=int))
    model = WaveformSurrogate(ridge=ridge).fit(X, W, groups)
    point, rmse = model.minimize(study.target.values, radius=radius,
                                 weights=objective.weights)
    return study.space.from_unit(point), rmse


def rescore(study, seeds, top=5, n_jobs=1, backend=None):
    """Score ``study``'s ``top`` best evaluations again on other random streams.

    With a stochastic objective, the lowest value of a long fit belongs
    to the point that was luckiest on the study's own seeds as much as
    to the best one: its value is biased low, and a close runner-up is
    often better on new trials. Scoring the leading points again on
    ``seeds`` (trials the fit did not use, and not the ones kept for the
    final test) gives unbiased values to choose from. Nothing is written
    to the study.

    Parameters
    ----------
    study : hnnfit.Study
    seeds : sequence of int
        Trial indices (random streams) to score on, none of the study's
        own.
    top : int
        How many of the best complete evaluations to re-score (of the
        final stage, for a staged study).
    n_jobs : int
        Points scored at once (in worker processes when > 1).
    backend : {'sequential', 'loky', 'dask'} | None
        As for :meth:`hnnfit.Study.optimize` (default: 'sequential' for
        one job, else 'loky').

    Returns
    -------
    pandas.DataFrame
        One row per re-scored evaluation, best first: ``id``, ``value``
        (on the study's seeds), ``rescored`` (on ``seeds``; NaN if the
        simulation failed) and one column per parameter.
    """
    import pandas as pd

    seeds = check_held_out(study, seeds)
    top = check_int(top, "top", low=1)
    n_jobs, backend = _run_options(n_jobs, backend)
    rows = study.storage.trials
    rows = rows[rows["status"] == EvalState.COMPLETE.value]
    if study.stages is not None:
        rows = rows[rows["stage"] == FINAL]
    if not len(rows):
        raise StudyError(f"study {str(study.path)!r} has no complete evaluation to "
                         f"rescore" + (" in its final stage" if study.stages else ""))
    rows = rows.sort_values(["value", "id"]).head(top)
    names = study.space.names
    points = [{n: float(r[n]) for n in names} for _, r in rows.iterrows()]
    rescored = [float(v) for v in _score(study.objective, points, seeds, n_jobs, backend)]
    out = pd.DataFrame({"id": rows["id"].astype(int).to_numpy(),
                        "value": rows["value"].astype(float).to_numpy(),
                        "rescored": rescored})
    for n in names:
        out[n] = [p[n] for p in points]
    return out.sort_values(["rescored", "value"], na_position="last",
                           ignore_index=True)
