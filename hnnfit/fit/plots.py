"""Plots of a study: convergence, the fitted waveform, the parameters' paths.

Each plot is a function taking a study (:class:`hnnfit.Study`), in two
parts: a ``*_data`` function extracting what is drawn (arrays and values,
no matplotlib), and the ``plot_*`` function drawing it. matplotlib is
imported only when a plot is drawn.
"""
import weakref

import numpy as np

from .staging import FINAL
from .storage import EvalState

__all__ = ["convergence_data", "fit_data", "params_data", "plot_convergence", "plot_fit",
           "plot_params"]

# processed dipoles of a study's start and best points, by study: computed
# once per study object (a missing one takes a simulation)
_DIPOLES = weakref.WeakKeyDictionary()


def _finished_rows(study):
    return [r for r in study.storage.rows() if r.state.finished]


def _dipole_of(study, params, which):
    """Processed dipole (nAm, on the target's times) of ``params``.

    The dipole stored with a complete evaluation of ``params`` (of the final
    stage, for a staged study) if there is one, else simulated.
    """
    cache = _DIPOLES.setdefault(study, {})
    if which in cache:
        return cache[which]
    dip = None
    stage = FINAL if study.stages is not None else ""
    for row in study.storage.rows(stage=stage, state=EvalState.COMPLETE):
        if row["params"] == params and row["info"] and row["info"].get("dipole"):
            dip = np.asarray(row["info"]["dipole"], dtype=float)
            break
    if dip is None:
        dip = np.asarray(study.objective(params)["dipole"], dtype=float)
    cache[which] = dip
    return dip


def convergence_data(study):
    """Every finished evaluation's value and the best so far.

    Parameters
    ----------
    study : hnnfit.Study

    Returns
    -------
    dict
        ``evaluation`` (1, 2, ... in the order run), ``value`` (NaN for a
        failed evaluation), ``best`` (the lowest value so far, NaN before
        the first complete one) and ``failed`` (the numbers of the failed
        evaluations), as arrays.
    """
    rows = _finished_rows(study)
    xs = np.arange(1, len(rows) + 1)
    vals = np.array([r["value"] if r.state is EvalState.COMPLETE else np.nan for r in rows],
                    dtype=float)
    best = np.fmin.accumulate(np.where(np.isnan(vals), np.inf, vals)) if len(vals) else vals
    best = np.where(np.isinf(best), np.nan, best)
    return {"evaluation": xs, "value": vals, "best": best, "failed": xs[np.isnan(vals)]}


def plot_convergence(study, ax=None, show=True):
    """Every evaluation's value and the best so far; failed ones marked.

    Parameters
    ----------
    study : hnnfit.Study
    ax : matplotlib.axes.Axes | None
        Where to draw; default a new figure.
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    data = convergence_data(study)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    else:
        fig = ax.get_figure()
    xs, vals = data["evaluation"], data["value"]
    ax.plot(xs, vals, "o", ms=3, color="0.5", label="evaluation")
    ax.step(xs, data["best"], where="post", color="C0", label="best so far")
    failed = data["failed"]
    if len(failed):
        y = np.nanmax(vals) if np.isfinite(vals).any() else 0.0
        ax.plot(failed, np.full(len(failed), y), "x", color="C3", label="failed")
    ax.set_xlabel("Evaluation")
    ax.set_ylabel("Objective value")
    ax.set_title(f"Convergence ({study.solver_settings['name']})")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(True, alpha=0.3)
    if show:
        plt.show()
    return fig


def fit_data(study):
    """The target and the dipoles of the start and best points (nAm).

    Dipoles recorded in the study are used; missing ones are simulated.

    Parameters
    ----------
    study : hnnfit.Study

    Returns
    -------
    dict
        ``times`` (ms), ``target``, ``initial`` (the dipole at ``x0``),
        ``best`` and ``best_value`` (None before a complete evaluation).
    """
    x0 = study.space.check_values(study.x0)
    out = {"times": study.target.times, "target": study.target.values,
           "initial": _dipole_of(study, x0, "x0"), "best": None, "best_value": None}
    if study.storage.best() is not None:
        out["best"] = _dipole_of(study, study.best_params, "best")
        out["best_value"] = study.best_value
    return out


def plot_fit(study, show=True):
    """The target, the initial (x0) and the best dipoles (nAm).

    Dipoles recorded in the study are used; missing ones are simulated.

    Parameters
    ----------
    study : hnnfit.Study
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    data = fit_data(study)
    t = data["times"]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.plot(t, data["target"], color="k", lw=2, label="target")
    ax.plot(t, data["initial"], color="C1", ls="--", label="initial")
    if data["best"] is not None:
        ax.plot(t, data["best"], color="C0", label=f"best ({data['best_value']:.4g})")
    ax.set_xlabel("Time (ms)")
    ax.set_ylabel("Dipole (nAm)")
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, alpha=0.3)
    if show:
        plt.show()
    return fig


def params_data(study):
    """Each parameter's value at every finished evaluation.

    Parameters
    ----------
    study : hnnfit.Study

    Returns
    -------
    dict
        ``evaluation`` (1, 2, ...), ``complete`` (bool per evaluation),
        ``values`` (parameter name -> array; NaN where an evaluation's
        stage does not fit the parameter) and ``best`` (the best point, or
        None before a complete evaluation).
    """
    rows = _finished_rows(study)
    return {
        "evaluation": np.arange(1, len(rows) + 1),
        "complete": np.array([r.state is EvalState.COMPLETE for r in rows], dtype=bool),
        # rows of a stage that does not fit a parameter hold no value for it
        "values": {p.name: np.array([r["params"].get(p.name, np.nan) for r in rows],
                                    dtype=float) for p in study.space},
        "best": study.best_params if study.storage.best() is not None else None,
    }


def plot_params(study, show=True):
    """Each parameter's values over the evaluations, with its bounds.

    Parameters
    ----------
    study : hnnfit.Study
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    data = params_data(study)
    n = len(study.space)
    fig, axes = plt.subplots(n, 1, figsize=(6, 1.8 * n + 0.6), sharex=True,
                             constrained_layout=True, squeeze=False)
    xs, ok, best = data["evaluation"], data["complete"], data["best"]
    for ax, p in zip(axes[:, 0], study.space):
        ys = data["values"][p.name]
        ax.plot(xs[ok], ys[ok], "o", ms=3, color="C0")
        if (~ok).any():
            ax.plot(xs[~ok], ys[~ok], "x", color="C3")
        ax.axhline(p.low, color="0.6", ls=":")
        ax.axhline(p.high, color="0.6", ls=":")
        if best is not None:
            ax.axhline(best[p.name], color="C2", lw=1)
        if p.log:
            ax.set_yscale("log")
        ax.set_ylabel(p.name, fontsize="small")
    axes[-1, 0].set_xlabel("Evaluation")
    if show:
        plt.show()
    return fig
