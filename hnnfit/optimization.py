"""hnn-core's ``Optimizer`` interface, running on an hnnfit study.

Scripts written for ``hnn_core.optimization.Optimizer`` run unchanged
against :class:`Optimizer` here, and gain what a :class:`hnnfit.Study`
gives: every evaluation is logged to a study file, an interrupted fit
resumes where it stopped when the script is run again, the solver is
seeded, and each parameter keeps to its own bounds with every solver.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .validation import check_bool, check_int, check_option, check_positive, check_type

SOLVERS = ("bayesian", "cobyla", "cma")
OBJECTIVES = {"dipole_rmse": "rmse", "dipole_corr": "corr"}
#: Folder (relative to the working directory) of studies without a given path.
STUDY_DIR = "studies"


def _check_constraints(constraints):
    check_type(constraints, dict, "constraints")
    if not constraints:
        raise ValueError("constraints must name at least one parameter, got {}")
    out = {}
    for name, bounds in constraints.items():
        check_type(name, str, "constraints key")
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise ValueError(f"constraints[{name!r}] must be a (low, high) pair, got {bounds!r}")
        low, high = (float(b) for b in bounds)
        if not low < high:
            raise ValueError(f"constraints[{name!r}] must satisfy low < high, got "
                             f"low={low} and high={high}")
        out[name] = (low, high)
    return out


class Optimizer:
    """Fit network parameters to a dipole, as hnn-core's ``Optimizer`` does.

    Parameters
    ----------
    initial_net : Network
        The network to fit (not modified).
    tstop : float
        End of the simulations (ms); the target is compared up to here.
    constraints : dict
        Parameter name -> ``(low, high)`` bounds. Every solver keeps each
        parameter inside its own bounds.
    set_params : callable
        ``set_params(net, params)``: sets the parameters (a dict keyed like
        ``constraints``) on a copy of the network, in place.
    initial_params : dict | None
        Start point (same keys as ``constraints``, values inside the
        bounds); default: the middle of each range.
    solver : {'bayesian', 'cobyla', 'cma'}
        Gaussian-process Bayesian optimisation, COBYLA, or CMA-ES (needs the
        optional ``cma`` package).
    obj_fun : {'dipole_rmse', 'dipole_corr'}
        RMSE between simulated and target dipoles, or 1 - their correlation.
    max_iter : int
        Number of evaluations (simulations of ``n_trials`` trials).
    study_path : str | pathlib.Path | None
        Study file logging every evaluation. Default: a file under
        ``studies/`` in the working directory named after a hash of the
        fit's definition, so running the same script again resumes it.
    seed : int
        Seed of the solver.
    solver_options : dict | None
        Options of the solver (see :func:`hnnfit.fit.make_solver`).

    Attributes
    ----------
    net_ : Network | None
        The network with the best parameters (after :meth:`fit`).
    obj_ : list of float
        For each evaluation, the best objective value reached so far (as
        hnn-core reports it); failed evaluations repeat the previous value.
    obj_values_ : list of float
        Each evaluation's own objective value (NaN for failed ones).
    opt_params_ : list of float | None
        The best parameter values, in the order of ``constraints``.
    study_ : hnnfit.Study | None
        The study the fit ran on.
    """

    def __init__(self, initial_net, tstop, constraints, set_params, initial_params=None,
                 solver="bayesian", obj_fun="dipole_rmse", max_iter=200, *,
                 study_path=None, seed=0, solver_options=None):
        from .network import Network

        self._initial_net = check_type(initial_net, Network, "initial_net")
        self.tstop = check_positive(tstop, "tstop")
        self.constraints = _check_constraints(constraints)
        if not callable(set_params):
            raise TypeError(f"set_params must be callable, got {type(set_params).__name__}")
        self._set_params = set_params
        self.solver = check_option(solver, SOLVERS, "solver")
        if callable(obj_fun) or obj_fun not in OBJECTIVES:
            raise ValueError(
                f"obj_fun must be one of {', '.join(map(repr, OBJECTIVES))}, got {obj_fun!r} "
                f"(for other metrics, including callables, use hnnfit.Study with "
                f"objective={{'metric': ...}})")
        self.obj_fun_name = obj_fun
        self.max_iter = check_int(max_iter, "max_iter", low=1)
        if initial_params is None:
            initial_params = {k: (lo + hi) / 2.0 for k, (lo, hi) in self.constraints.items()}
        else:
            check_type(initial_params, dict, "initial_params")
            if set(initial_params) != set(self.constraints):
                raise ValueError(
                    f"initial_params must have the keys of constraints "
                    f"({sorted(self.constraints)}), got {sorted(initial_params)}")
            for key, value in initial_params.items():
                lo, hi = self.constraints[key]
                if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                        or not lo <= value <= hi:
                    raise ValueError(
                        f"initial_params[{key!r}] must be a number within [{lo}, {hi}], "
                        f"got {value!r}")
            initial_params = {k: float(initial_params[k]) for k in self.constraints}
        self.initial_params = initial_params
        self.study_path = None if study_path is None else Path(study_path)
        self.seed = check_int(seed, "seed", low=0)
        self.solver_options = dict(solver_options or {})
        self.net_ = None
        self.obj_ = []
        self.obj_values_ = []
        self.opt_params_ = None
        self.study_ = None

    def __repr__(self):
        return (f"<{type(self).__name__}\nsolver={self.solver}\n"
                f"fit={self.net_ is not None}>")

    def _space(self):
        from .fit.space import ParameterSpace

        return ParameterSpace([(k, lo, hi) for k, (lo, hi) in self.constraints.items()],
                              set_params=self._set_params)

    def _target(self, target):
        from .dipole import Dipole
        from .fit.targets import Target, read_target

        if isinstance(target, Dipole):
            target = Target(np.asarray(target.times, dtype=float),
                            np.asarray(target.data["agg"], dtype=float), source="<Dipole>")
        elif not isinstance(target, Target):
            target = read_target(target)
        if target.tmax > self.tstop:
            target = target.window(tmax=self.tstop)
        return target

    def _default_path(self, target, objective):
        hook = self._set_params
        ident = {
            "target": target.hash(), "constraints": self.constraints,
            "initial_params": self.initial_params, "solver": self.solver,
            "seed": self.seed, "solver_options": self.solver_options,
            "objective": {k: v for k, v in objective.items() if k != "weights"},
            "set_params": f"{getattr(hook, '__module__', '?')}."
                          f"{getattr(hook, '__qualname__', '?')}",
            "tstop": self.tstop,
        }
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str)
                                .encode()).hexdigest()[:12]
        folder = Path(STUDY_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"optimizer-{self.solver}-{digest}.sqlite"

    def fit(self, target, n_trials=1, scale_factor=None, smooth_window_len=None, *,
            dt=0.025, n_jobs=1, progress=True, study_path=None):
        """Run the optimisation (or resume it from its study file).

        Parameters
        ----------
        target : Dipole | Target | str | ndarray
            The waveform to fit (ms, nAm); a Dipole's ``'agg'`` data is used.
        n_trials : int
            Trials simulated and averaged per evaluation (fixed seeds).
        scale_factor : float | 'fit' | None
            Factor applied to the simulated dipole before comparison;
            None: no scaling (as hnn-core); ``'fit'``: the least-squares
            factor of each evaluation.
        smooth_window_len : float | None
            Hamming smoothing window (ms); None: no smoothing.
        dt : float
            Integration step (ms).
        n_jobs : int
            Evaluations run at once in worker processes.
        progress : bool
            Print a progress line to stderr.
        study_path : str | pathlib.Path | None
            Study file to log to (overrides the constructor's).

        Returns
        -------
        self : Optimizer
        """
        from .fit.study import Study

        n_trials = check_int(n_trials, "n_trials", low=1)
        if scale_factor is None:
            scale = 1.0
        elif isinstance(scale_factor, str):
            scale = check_option(scale_factor, ("fit",), "scale_factor")
        else:
            scale = check_positive(scale_factor, "scale_factor")
        smooth = 0.0 if smooth_window_len is None else float(smooth_window_len)
        progress = check_bool(progress, "progress")
        target = self._target(target)
        objective = {"n_trials": n_trials, "smooth_window": smooth, "scale": scale,
                     "metric": OBJECTIVES[self.obj_fun_name], "dt": check_positive(dt, "dt")}
        path = study_path if study_path is not None else self.study_path
        path = Path(path) if path is not None else self._default_path(target, objective)
        if self.study_ is not None:
            self.study_.close()
        study = Study.create(path, self._initial_net, target, self._space(),
                             objective=objective, solver=self.solver,
                             solver_options=self.solver_options, seed=self.seed,
                             x0=self.initial_params, exist_ok=True)
        self.study_ = study
        study.optimize(self.max_iter, n_jobs=n_jobs, progress=progress)
        self._collect()
        return self

    def _collect(self):
        from .fit.storage import EvalState

        rows = [r for r in self.study_.storage.rows(stage="")
                if r.state.finished]
        values = [r["value"] if r.state is EvalState.COMPLETE else float("nan") for r in rows]
        self.obj_values_ = values
        best, running = float("inf"), []
        for v in values:
            if v == v and v < best:
                best = v
            running.append(best)
        self.obj_ = running
        if self.study_.storage.best("") is None:
            self.net_ = None
            self.opt_params_ = None
            return
        best_params = self.study_.best_params
        self.opt_params_ = [best_params[k] for k in self.constraints]
        self.net_ = self.study_.best_net()

    def plot_convergence(self, ax=None, show=True):
        """Best objective value against the number of evaluations.

        Parameters
        ----------
        ax : matplotlib.axes.Axes | None
            Axes to draw in (default: a new figure).
        show : bool
            Show the figure.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if not self.obj_:
            raise ValueError("plot_convergence needs a fitted Optimizer; call fit() first")
        if ax is None:
            fig, ax = plt.subplots(constrained_layout=True)
        else:
            fig = ax.get_figure()
        x = np.arange(1, len(self.obj_) + 1)
        y = np.where(np.isinf(self.obj_), np.nan, self.obj_)
        ax.plot(x, self.obj_values_, "o", ms=3, color="0.6", label="evaluation")
        ax.plot(x, y, color="black", label="best so far")
        ax.set_title("Convergence")
        ax.set_xlabel("Number of calls")
        ax.set_ylabel("Objective value")
        ax.grid(visible=True)
        ax.legend(loc="upper right", fontsize="small")
        if show:
            plt.show()
        return fig
