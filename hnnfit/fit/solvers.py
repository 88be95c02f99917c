"""Ask/tell adapters around the optimisers hnnfit can use.

Every solver works on the unit cube of a :class:`~hnnfit.fit.space.ParameterSpace`
(so each parameter's own bounds are respected and step sizes are relative
to each range) and shows the same small interface to the driver loop:

``ask(n) -> list[dict]``
    up to ``n`` new points (parameter values in their own units); fewer when
    the method is sequential (COBYLA: one at a time) and none when it has
    finished;
``tell(points, values)``
    the objective values of points returned by ``ask``; a whole batch is told
    before the next ``ask``;
``is_done``
    the method has converged or stopped on its own.

A solver is a deterministic function of its settings (method, seed, start
point, options) and of the sequence of ask/tell calls it has seen. The
driver relies on this to resume a study: it rebuilds a fresh solver and
replays the recorded batches, which reproduces the state of an
uninterrupted run without simulating anything again.

The optimisation libraries are imported only when a solver is created.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import math
import warnings

import numpy as np

from ..validation import check_bool, check_int, check_number, check_option, check_type
from .space import ParameterSpace

SOLVERS = ("bayesian", "cobyla", "cma", "pattern")
INITIAL_DESIGNS = ("lhs", "random")

# Options a solver gained after studies were first stored, with the value
# that reproduces what those studies did: a study recorded without them is
# rebuilt with these (see :func:`solver_from_settings`).
# Each entry: the option whose absence marks such a study, and the values.
LEGACY_OPTIONS = {"bayesian": ("initial_design",
                               {"initial_design": "random", "n_initial_points": 10})}


class _TrustRegion:
    """The box around the best point that a trust-region Bayesian solver searches.

    Its state depends only on the sequence of values told, so a replayed
    solver has the same box.
    """

    START, LARGEST, SMALLEST = 0.4, 1.0, 0.05
    SUCCESSES, FAILURES = 2, 3

    def __init__(self, n_dims):
        self.side = self.START
        self.best_x, self.best_y = None, np.inf
        self.successes = self.failures = 0
        self.n_dims = n_dims

    def update(self, x, y, guided):
        """Take a told value; after the initial design, resize the box."""
        improved = y < self.best_y - 1e-3 * abs(self.best_y)
        if y < self.best_y:
            self.best_x, self.best_y = np.asarray(x, dtype=float), y
        if not guided:
            return
        if improved:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.SUCCESSES:
                self.side, self.successes = min(self.LARGEST, 2 * self.side), 0
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= self.FAILURES:
                self.side, self.failures = max(self.SMALLEST, self.side / 2), 0

    def box(self):
        """Lower and upper corners of the box in the unit cube."""
        centre = self.best_x if self.best_x is not None else np.full(self.n_dims, 0.5)
        lo = np.clip(centre - self.side / 2, 0.0, 1.0)
        hi = np.clip(centre + self.side / 2, 0.0, 1.0)
        return lo, hi


def default_initial_points(n_params):
    """Size of the Bayesian solver's default initial design (start point included).

    Enough points for a Gaussian process to see every direction once
    (``n_params + 2``), and never more than the 10 that made small budgets
    a matter of luck.
    """
    return min(10, n_params + 2)


def _spread_design(n_dims, n, seed):
    """``n`` points of the unit cube from a Latin hypercube with a low discrepancy."""
    from scipy.stats import qmc

    sampler = qmc.LatinHypercube(d=n_dims, seed=np.random.default_rng(seed),
                                 optimization="random-cd")
    return list(sampler.random(n))


class Solver:
    """Base class of the ask/tell solvers (see the module's description).

    It keeps what every method shares: the start point, the seed and the
    points asked for that await their values. Subclasses implement ``ask``
    and ``tell``; :func:`make_solver` creates them by name.

    Parameters
    ----------
    space : ParameterSpace
        The parameters and their bounds.
    x0 : dict | sequence of float | None
        Start point in the parameters' own units (a dict by name, or values
        in ``space.names`` order); moved onto the nearest bound if outside.
        None starts at the middle of the space.
    seed : int
        Seed (>= 0) of the method's random choices.
    **options
        Method-specific settings, recorded by :meth:`settings`.
    """

    name = ""

    def __init__(self, space, x0=None, seed=0, **options):
        check_type(space, ParameterSpace, "space")
        self.space = space
        self.seed = check_int(seed, "seed", low=0)
        if x0 is None:
            x0 = space.midpoint()
        elif isinstance(x0, dict):
            missing = [n for n in space.names if n not in x0]
            if missing:
                raise ValueError(f"x0 must give a value for every parameter, missing "
                                 f"{', '.join(map(repr, missing))}")
            # a start outside the bounds (e.g. the network's current value)
            # is moved onto the nearest bound
            x0 = space.clip({n: x0[n] for n in space.names})
        else:
            x0 = space.clip(dict(zip(space.names, x0)))
        self.x0 = space.check_values(x0)
        self.options = options
        self._pending = []     # [(params dict, solver-specific key)], in ask order
        self.n_told = 0

    def settings(self):
        """JSON-able description: method, seed, start point, options."""
        return {"name": self.name, "seed": self.seed, "x0": dict(self.x0),
                "options": dict(self.options)}

    def _take_pending(self, point):
        for i, (params, key) in enumerate(self._pending):
            if params == point:
                del self._pending[i]
                return key
        return None

    def _asked_values(self, points, values, label):
        """``(key, value)`` of told points, each one this solver asked for."""
        if len(points) != len(values):
            raise ValueError(f"values must have one entry per point ({len(points)}), "
                             f"got {len(values)}")
        pairs = []
        for point, value in zip(points, values):
            key = self._take_pending(point)
            if key is None:
                raise ValueError(
                    f"points told to {label} must be points it asked for, got {point}")
            pairs.append((key, check_number(value, "objective value")))
            self.n_told += 1
        return pairs

    @property
    def n_open(self):
        """Points asked for and not yet told (int)."""
        return len(self._pending)

    @property
    def is_done(self):
        return False

    def __repr__(self):
        return f"<{type(self).__name__} seed={self.seed} told={self.n_told}>"


class BayesianSolver(Solver):
    """Gaussian-process Bayesian optimisation (scikit-optimize).

    Parameters
    ----------
    space : ParameterSpace
    x0 : dict | None
        First point evaluated (default: the centre of the space).
    seed : int
        Seed of the optimiser's random state.
    n_initial_points : int | None
        Points of the initial design, the start point included, before the
        Gaussian process guides the search. None (default): the number of
        parameters plus 2, at most 10, resolved for each space the solver
        is made for (so each stage of a staged fit gets its own).
    initial_design : {'lhs', 'random'}
        ``'lhs'`` (default): after the start point, a Latin hypercube whose
        points are spread to a low centred discrepancy, so that even a
        design of a few points covers every range; ``'random'``: uniform
        random points (the design of studies made before this option
        existed, which keep it when resumed).
    trust_region : bool
        After the initial design, propose the point of highest expected
        improvement within a box around the best point so far instead of
        over the whole space (the idea of trust-region Bayesian
        optimisation). The box's side, a fraction of each range, starts at
        0.4, doubles (up to 1) after 2 improvements in a row and halves
        (down to 0.05) after 3 proposals in a row that do not improve. It
        keeps a few evaluations from going to the space's far corners,
        where a global acquisition explores first.
    acq_func : str
        Acquisition function (``'gp_hedge'``, ``'EI'``, ``'LCB'``, ``'PI'``).
    acq_optimizer : {'auto', 'lbfgs', 'sampling'}
        How the acquisition function is maximised (``'sampling'`` is
        cheaper, ``'lbfgs'`` more precise).
    n_points : int
        Random candidate points scored per acquisition maximisation.
    transform : {'none', 'log'}
        ``'log'``: the Gaussian process models ``log(1 + value)`` instead of
        the value (values must be > -1). A few very poor points (a drive at
        the wrong end of its range) then weigh less on the model of the
        region that matters, as on an RMSE whose bad values are several
        times its good ones.
    """

    name = "bayesian"

    def __init__(self, space, x0=None, seed=0, n_initial_points=None,
                 initial_design="lhs", acq_func="gp_hedge", acq_optimizer="auto",
                 n_points=10000, trust_region=False, transform="none"):
        if n_initial_points is not None:
            n_initial_points = check_int(n_initial_points, "n_initial_points", low=1)
        check_option(initial_design, INITIAL_DESIGNS, "initial_design")
        check_option(acq_func, ("gp_hedge", "EI", "LCB", "PI"), "acq_func")
        check_option(acq_optimizer, ("auto", "lbfgs", "sampling"), "acq_optimizer")
        n_points = check_int(n_points, "n_points", low=1)
        trust_region = check_bool(trust_region, "trust_region")
        check_option(transform, ("none", "log"), "transform")
        options = {"n_initial_points": n_initial_points, "initial_design": initial_design,
                   "acq_func": acq_func, "acq_optimizer": acq_optimizer,
                   "n_points": n_points}
        if trust_region:
            # recorded only when used, so that settings stored without it match
            options["trust_region"] = True
        if transform != "none":
            options["transform"] = transform
        super().__init__(space, x0, seed, **options)
        self._log = transform == "log"
        self._region = _TrustRegion(len(space)) if trust_region else None
        from skopt import Optimizer

        n_design = (n_initial_points if n_initial_points is not None
                    else default_initial_points(len(space)))
        self._opt = Optimizer(
            [(0.0, 1.0)] * len(space), base_estimator="GP",
            n_initial_points=n_design, acq_func=acq_func,
            acq_optimizer=acq_optimizer,
            acq_optimizer_kwargs={"n_points": n_points}, random_state=self.seed)
        # points proposed before the optimiser's own: the start, then the design
        self._queue = [self.space.to_unit(self.x0)]
        if initial_design == "lhs" and n_design > 1:
            self._queue.extend(_spread_design(len(space), n_design - 1, self.seed))

    @property
    def n_initial_points(self):
        """Points of the initial design, the start point included (int)."""
        return self._opt.n_initial_points_

    def ask(self, n=1):
        n = check_int(n, "n", low=1)
        units = []
        while n and self._queue:
            units.append(self._queue.pop(0))
            n -= 1
        if n and self._region is not None and self._opt.models:
            units.extend(self._region_points(self._opt, n))
        elif n == 1:
            units.append(self._opt.ask())
        elif n > 1:
            units.extend(self._opt.ask(n_points=n))
        out = []
        for u in units:
            params = self.space.from_unit(u)
            # tell the GP where the evaluation really happened (integers rounded)
            snapped = self.space.to_unit(params).tolist()
            self._pending.append((params, snapped))
            out.append(params)
        return out

    def ask_with_pending(self, pending, lie):
        """One new point while the ``pending`` points are still being evaluated.

        Without pending points (or while the start point and the initial
        design are being handed out) this is ``ask(1)``. Otherwise a copy of the Gaussian-process
        optimiser is told the pending points at the value ``lie``
        (scikit-optimize's constant-liar idea: the driver passes the lowest
        value told so far) and proposes the point; the copy is then thrown
        away, so this solver only ever learns real values. The copy's
        random stream is seeded from this solver's, so successive proposals
        differ and depend only on the sequence of calls (replays stay exact).

        Parameters
        ----------
        pending : list of dict
            Points asked for earlier whose values are not known yet.
        lie : float
            Value the copy assumes for each pending point.

        Returns
        -------
        params : dict | None
            The new point (None if the solver has nothing more to propose).
        """
        if not pending or self._queue:
            points = self.ask(1)
            return points[0] if points else None
        lie = self._model_value(check_number(lie, "lie"))
        trial = copy.deepcopy(self._opt)
        trial.rng = np.random.RandomState(self._opt.rng.randint(0, np.iinfo(np.int32).max))
        with warnings.catch_warnings():
            # lies at already-evaluated points (integers, replays) are expected
            warnings.simplefilter("ignore")
            trial.tell([self.space.to_unit(p).tolist() for p in pending],
                       [lie] * len(pending))
            if self._region is not None and trial.models:
                (u,) = self._region_points(trial, 1, salt=len(pending))
            else:
                u = trial.ask()
        params = self.space.from_unit(u)
        self._pending.append((params, self.space.to_unit(params).tolist()))
        return params

    def tell(self, points, values):
        if len(points) != len(values):
            raise ValueError(f"values must have one entry per point ({len(points)}), "
                             f"got {len(values)}")
        if not points:
            return
        xs, ys = [], []
        for point, value in zip(points, values):
            key = self._take_pending(point)
            if key is None:
                key = self.space.to_unit(point).tolist()
            xs.append(key)
            ys.append(self._model_value(check_number(value, "objective value")))
        with warnings.catch_warnings():
            # re-evaluated points (integers, replays) are expected
            warnings.simplefilter("ignore")
            self._opt.tell(xs, ys)
        if self._region is not None:
            for x, y in zip(xs, ys):
                self._region.update(x, y, guided=self.n_told >= self.n_initial_points)
                self.n_told += 1
        else:
            self.n_told += len(points)

    def _model_value(self, value):
        """The value as the Gaussian process models it (see ``transform``)."""
        if not self._log:
            return value
        if value <= -1.0:
            raise ValueError(f"objective values must be > -1 with transform='log', "
                             f"got {value}")
        return math.log1p(value)

    def _region_points(self, opt, n, salt=0):
        """``n`` points of highest expected improvement in the trust region.

        The candidates are drawn from a stream seeded by the solver's seed
        and what it has been told, so a replay proposes the same points.
        Each further point is chosen with the ones before it told to a copy
        at the best value so far (a constant liar).
        """
        from skopt.acquisition import gaussian_ei

        rng = np.random.default_rng([self.seed, self.n_told, salt])
        lo, hi = self._region.box()
        points = []
        work = opt
        for k in range(n):
            if k:
                work = copy.deepcopy(work) if work is opt else work
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    work.tell(points[-1].tolist(), float(np.min(work.yi)))
            cand = lo + rng.random((min(self.options["n_points"], 4096), len(lo))) * (hi - lo)
            ei = gaussian_ei(cand, work.models[-1], y_opt=float(np.min(work.yi)), xi=0.01)
            points.append(cand[int(np.argmax(ei))])
        return points


class _NeedPoint(Exception):
    """COBYLA asked for a point whose value is not known yet."""

    def __init__(self, u):
        super().__init__()
        self.u = u


def _cobyla_box(d):
    """Keep COBYLA inside the unit cube, whatever the scipy version.

    scipy >= 1.11 takes bounds for COBYLA (and the PRIMA-based COBYLA of
    scipy >= 1.16 never leaves them); older versions ignore bounds, so
    there each coordinate gets its own pair of inequality constraints.
    Proposals are clipped into the cube in any case.
    """
    import scipy

    major, minor = (int(x) for x in scipy.__version__.split(".")[:2])
    if (major, minor) >= (1, 11):
        return {"bounds": [(0.0, 1.0)] * d}
    cons = []
    for i in range(d):
        cons.append({"type": "ineq", "fun": lambda u, i=i: u[i]})
        cons.append({"type": "ineq", "fun": lambda u, i=i: 1.0 - u[i]})
    return {"constraints": cons}


class CobylaSolver(Solver):
    """COBYLA (scipy) driven point by point through replay.

    scipy runs its own loop, so each ``ask`` reruns COBYLA from the start
    with an objective that answers from the values told so far and stops at
    the first point it has not seen: that point is the one proposed. COBYLA
    is deterministic, so every rerun follows the same path; resuming a study
    is the same replay, from the values in its log.

    Parameters
    ----------
    space : ParameterSpace
    x0 : dict | None
        Start point (default: the centre of the space).
    seed : int
        Unused by COBYLA (kept for a uniform interface and in the settings).
    rhobeg : float
        Initial step, as a fraction of each parameter's range.
    rhoend : float
        Final step (fraction of each range); COBYLA stops below it.
    maxiter : int
        Upper limit on COBYLA's own evaluation count.
    """

    name = "cobyla"

    def __init__(self, space, x0=None, seed=0, rhobeg=0.25, rhoend=1e-3, maxiter=100000):
        rhobeg = check_number(rhobeg, "rhobeg", low=0.0, high=1.0, low_inclusive=False)
        rhoend = check_number(rhoend, "rhoend", low=0.0, high=rhobeg, low_inclusive=False)
        maxiter = check_int(maxiter, "maxiter", low=1)
        super().__init__(space, x0, seed, rhobeg=rhobeg, rhoend=rhoend, maxiter=maxiter)
        self._cache = {}
        self._done = False
        self.result = None

    def _fun(self, x):
        u = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
        key = tuple(u.tolist())
        if key in self._cache:
            return self._cache[key]
        raise _NeedPoint(u)

    def ask(self, n=1):
        check_int(n, "n", low=1)
        if self._done:
            return []
        if self._pending:
            # COBYLA proposes one point at a time and needs its value first
            return []
        from scipy.optimize import minimize

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = minimize(self._fun, self.space.to_unit(self.x0), method="COBYLA",
                               options={"rhobeg": self.options["rhobeg"],
                                        "tol": self.options["rhoend"],
                                        "maxiter": self.options["maxiter"]},
                               **_cobyla_box(len(self.space)))
        except _NeedPoint as need:
            params = self.space.from_unit(need.u)
            self._pending.append((params, tuple(need.u.tolist())))
            return [params]
        self._done = True
        self.result = res
        return []

    def tell(self, points, values):
        for key, value in self._asked_values(points, values, "COBYLA"):
            self._cache[key] = value

    @property
    def is_done(self):
        return self._done


class CmaSolver(Solver):
    """CMA-ES (the ``cma`` package, optional) on the unit cube.

    Parameters
    ----------
    space : ParameterSpace
    x0 : dict | None
        Mean of the first generation (default: the centre of the space).
    seed : int
        Seed of CMA-ES' random numbers.
    sigma0 : float
        Initial step, as a fraction of each parameter's range.
    popsize : int | None
        Points per generation (default: CMA-ES' own, 4 + 3 ln(n)).
    """

    name = "cma"

    def __init__(self, space, x0=None, seed=0, sigma0=0.25, popsize=None):
        sigma0 = check_number(sigma0, "sigma0", low=0.0, high=1.0, low_inclusive=False)
        popsize = check_int(popsize, "popsize", low=2, allow_none=True)
        super().__init__(space, x0, seed, sigma0=sigma0, popsize=popsize)
        try:
            import cma
        except ImportError:
            raise ImportError(
                "the 'cma' solver needs the optional cma package; install it with "
                "pip install hnnfit[cma]") from None
        opts = {"bounds": [0.0, 1.0], "verbose": -9, "verb_log": 0, "verb_disp": 0,
                # cma treats seed 0 as "seed from the clock"
                "seed": self.seed + 1}
        if popsize is not None:
            opts["popsize"] = popsize
        self._es = cma.CMAEvolutionStrategy(self.space.to_unit(self.x0).tolist(), sigma0,
                                            opts)
        self._gen = None
        self._gen_values = {}
        self._next = 0
        self._means = []

    @property
    def generation_size(self):
        """Points per generation (CMA-ES' population size)."""
        return int(self._es.popsize)

    @property
    def mean(self):
        """The current mean of the search distribution, as parameter values.

        With a noisy objective this is CMA-ES' estimate of the optimum: the
        lowest value seen belongs to the luckiest draw, while the mean is
        moved by the ranking of whole generations.
        """
        # CMA-ES keeps its mean in an unbounded coordinate system that the
        # boundary handling maps into the bounds: report the mapped point
        return self.space.from_unit(np.clip(np.asarray(self._es.result.xfavorite, float),
                                            0.0, 1.0))

    @property
    def means(self):
        """The mean after each completed generation (list of parameter dicts)."""
        return [dict(m) for m in self._means]

    def averaging_window(self):
        """Generations ``averaged_mean()`` averages by default.

        The second half of the completed generations (at least one): the
        first half is spent moving towards the optimum, and averaging it in
        would pull the point back towards the start.

        Returns
        -------
        int
            A count of generations, between 1 and ``len(self.means)``.
        """
        if not self._means:
            raise ValueError("an averaged CMA-ES mean needs at least one completed "
                             "generation, got none")
        return max(1, len(self._means) // 2)

    def averaged_mean(self, last=None):
        """The generation means averaged over the last ``last`` generations.

        With a noisy objective, and above all with new trials for each
        generation (``resample``), the mean follows each generation's noise
        around the optimum; averaging it over many generations cancels most
        of that wander. The average is taken on the unit cube, where CMA-ES
        works (so on a log scale for log-scaled parameters).

        Parameters
        ----------
        last : int | None
            Generations to average, at most the completed ones; default
            :meth:`averaging_window` (the second half of the run).

        Returns
        -------
        dict
            Parameter values.
        """
        window = self.averaging_window()
        # more generations than were run would silently average them all
        last = window if last is None else check_int(last, "last", low=1,
                                                     high=len(self._means))
        unit = np.mean([self.space.to_unit(m) for m in self._means[-last:]], axis=0)
        return self.space.from_unit(unit)

    def ask(self, n=1):
        n = check_int(n, "n", low=1)
        if self._gen is None:
            if self._es.stop():
                return []
            self._gen = [np.asarray(x, dtype=float) for x in self._es.ask()]
            self._gen_values = {}
            self._next = 0
        out = []
        while len(out) < n and self._next < len(self._gen):
            i = self._next
            self._next += 1
            params = self.space.from_unit(np.clip(self._gen[i], 0.0, 1.0))
            self._pending.append((params, i))
            out.append(params)
        return out

    def tell(self, points, values):
        for key, value in self._asked_values(points, values, "CMA-ES"):
            self._gen_values[key] = value
        if self._gen is not None and len(self._gen_values) == len(self._gen):
            self._es.tell(self._gen, [self._gen_values[i] for i in range(len(self._gen))])
            self._gen = None
            self._means.append(self.mean)

    @property
    def is_done(self):
        return self._gen is None and bool(self._es.stop())


class PatternSolver(Solver):
    """A coordinate stencil with a line search along its gradient, on the unit cube.

    Each iteration evaluates the ``2 n`` points one ``step`` either side of
    the centre along every parameter (one batch, so they run in parallel),
    estimates the gradient from their central differences, then evaluates
    a few points along the negative gradient (``line`` multiples of the
    step). The best of all these points becomes the new centre if it beats
    the old one; if none does, the step shrinks. This is implicit filtering
    (Kelley, *Implicit Filtering*, SIAM 2011): a local method for objectives
    that are rough on small scales, as a spiking network's is.

    The method compares values of different points directly, so it suits a
    deterministic objective: fixed seeds (common random numbers), not
    ``resample``, on enough trials that the comparison reflects the mean
    response. It is meant for polishing a point another method found.

    Parameters
    ----------
    space : ParameterSpace
    x0 : dict | None
        The first centre (default: the centre of the space).
    seed : int
        Unused (the method is deterministic); kept for a uniform interface.
    step : float
        Initial stencil step, as a fraction of each parameter's range (on
        the unit cube, so on a log scale for log-scaled parameters).
    shrink : float
        Factor applied to the step after an iteration that found no better
        point, in (0, 1).
    min_step : float
        The method stops once the step falls below this.
    line : sequence of float
        Multiples of the step tried along the negative gradient (scaled so
        that the largest coordinate moves by that many steps); empty for a
        pure compass search.
    """

    name = "pattern"

    def __init__(self, space, x0=None, seed=0, step=0.05, shrink=0.5, min_step=1e-3,
                 line=(1.0, 2.0, 4.0)):
        step = check_number(step, "step", low=0.0, high=0.5, low_inclusive=False)
        shrink = check_number(shrink, "shrink", low=0.0, high=1.0, low_inclusive=False,
                              high_inclusive=False)
        min_step = check_number(min_step, "min_step", low=0.0, high=step,
                                low_inclusive=False)
        if isinstance(line, (str, bytes)) or not hasattr(line, "__iter__"):
            raise TypeError(f"line must be a sequence of step multiples, got {line!r}")
        line = [check_number(m, "line multiple", low=0.0, low_inclusive=False)
                for m in line]
        super().__init__(space, x0, seed, step=step, shrink=shrink, min_step=min_step,
                         line=line)
        self.step = step
        self._centre = self.space.to_unit(self.x0)
        self._value = None        # the centre's value, once told
        self._batch = None        # [(unit point, role)] of the phase under way
        self._values = {}
        self._next = 0
        self._phase = "stencil"
        self._stencil = None      # (unit points, roles, values) of the last stencil
        self.history = []         # (centre value, step) after each iteration

    @property
    def centre(self):
        """The current centre (parameter values): the best point told so far."""
        return self.space.from_unit(self._centre)

    @property
    def centre_value(self):
        """The objective value at :attr:`centre` (None before it is known)."""
        return self._value

    def _stencil_points(self):
        pts = [] if self._value is not None else [(self._centre.copy(), ("centre",))]
        for i in range(len(self._centre)):
            for sgn in (1.0, -1.0):
                u = self._centre.copy()
                u[i] = min(1.0, max(0.0, u[i] + sgn * self.step))
                if u[i] != self._centre[i]:
                    pts.append((u, ("axis", i, sgn)))
        return pts

    def _line_points(self, grad):
        scale = float(np.max(np.abs(grad)))
        if not np.isfinite(scale) or scale == 0.0:
            return []
        direction = -grad / scale
        pts, seen = [], []
        for m in self.options["line"]:
            u = np.clip(self._centre + m * self.step * direction, 0.0, 1.0)
            if np.array_equal(u, self._centre) or any(np.array_equal(u, q) for q in seen):
                continue
            seen.append(u)
            pts.append((u, ("line", m)))
        return pts

    def _gradient(self, points, values):
        """Central (or one-sided, at a bound) differences of a finished stencil."""
        n = len(self._centre)
        ends = {}
        for (u, role), v in zip(points, values):
            if role[0] == "axis":
                ends[(role[1], role[2])] = (u[role[1]], v)
        grad = np.zeros(n)
        for i in range(n):
            hi, lo = ends.get((i, 1.0)), ends.get((i, -1.0))
            a = hi if hi is not None else (self._centre[i], self._value)
            b = lo if lo is not None else (self._centre[i], self._value)
            if a[0] != b[0]:
                grad[i] = (a[1] - b[1]) / (a[0] - b[0])
        return grad

    def ask(self, n=1):
        n = check_int(n, "n", low=1)
        if self._batch is None:
            if self.is_done:
                return []
            self._batch = self._stencil_points()
            self._phase = "stencil"
            self._values = {}
            self._next = 0
        out = []
        while len(out) < n and self._next < len(self._batch):
            i = self._next
            self._next += 1
            params = self.space.from_unit(self._batch[i][0])
            self._pending.append((params, i))
            out.append(params)
        return out

    def tell(self, points, values):
        for key, value in self._asked_values(points, values, "the pattern search"):
            self._values[key] = value
        if self._batch is None or len(self._values) < len(self._batch):
            return
        batch = self._batch
        vals = [self._values[i] for i in range(len(batch))]
        self._batch = None
        if self._phase == "stencil":
            for (u, role), v in zip(batch, vals):
                if role[0] == "centre":
                    self._value = v
            grad = self._gradient(batch, vals)
            self._stencil = (batch, vals)
            line = self._line_points(grad)
            if line:
                self._batch, self._phase = line, "line"
                self._values, self._next = {}, 0
                return
            self._finish([], [])
        else:
            self._finish(batch, vals)

    def _finish(self, line, line_values):
        """Move to the best point of this iteration, or shrink the step."""
        stencil, stencil_values = self._stencil
        cands = [(v, u) for (u, role), v in zip(stencil, stencil_values)
                 if role[0] != "centre"]
        cands += [(v, u) for (u, role), v in zip(line, line_values)]
        best = min(cands, key=lambda c: c[0], default=None)
        if best is not None and best[0] < self._value:
            self._value, self._centre = best[0], best[1].copy()
        else:
            self.step *= self.options["shrink"]
        self._stencil = None
        self.history.append((self._value, self.step))

    @property
    def is_done(self):
        return self._batch is None and self.step < self.options["min_step"]


# the base class's former private name, until every caller imports Solver

_CLASSES = {"bayesian": BayesianSolver, "cobyla": CobylaSolver, "cma": CmaSolver,
            "pattern": PatternSolver}


def make_solver(name, space, x0=None, seed=0, **options):
    """Create a solver by name.

    Parameters
    ----------
    name : {'bayesian', 'cobyla', 'cma', 'pattern'}
    space : ParameterSpace
    x0 : dict | None
        Start point (parameter values); values outside the bounds are moved
        onto them. Default: the centre of the space.
    seed : int
        Seed (>= 0); the same seed and history give the same proposals.
    **options
        Method options (see each solver class).

    Returns
    -------
    solver
    """
    check_solver_options(name, options)
    return _CLASSES[name](space, x0=x0, seed=seed, **options)


def solver_options(name):
    """The names of the options the solver called ``name`` takes.

    Parameters
    ----------
    name : {'bayesian', 'cobyla', 'cma', 'pattern'}

    Returns
    -------
    list of str
        In the order of the solver class's signature.
    """
    check_option(name, SOLVERS, "solver")
    return [p for p in inspect.signature(_CLASSES[name].__init__).parameters
            if p not in ("self", "space", "x0", "seed")]


def check_solver_options(name, options, what="options"):
    """Refuse options the solver called ``name`` does not take.

    Parameters
    ----------
    name : str
        A solver's name (checked too).
    options : dict
        The options given.
    what : str
        How the error names ``options`` (for example the config section
        they came from).

    Raises
    ------
    ValueError
        Naming the first unknown option, the solver's options, and the
        nearest of them when one is close.
    """
    known = solver_options(name)
    for key in options:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"{what} must be options of the {name!r} solver "
                             f"({', '.join(known) or 'none'}), got {key!r}{hint}")


def legacy_defaults(name, options):
    """Option values a stored solver ran with but did not record.

    A study stored before its solver gained an option (see
    ``LEGACY_OPTIONS``) ran as that option's legacy value.

    Parameters
    ----------
    name : str
        The solver's name.
    options : dict | None
        Its stored options.

    Returns
    -------
    dict
        The legacy values of the options ``options`` lacks (empty for a
        study stored with every option).
    """
    options = options or {}
    if name not in LEGACY_OPTIONS:
        return {}
    marker, values = LEGACY_OPTIONS[name]
    if marker in options:
        return {}
    return {k: v for k, v in values.items() if k not in options}


def legacy_options(name, options):
    """Stored ``options`` completed with :func:`legacy_defaults`."""
    return {**legacy_defaults(name, options), **(options or {})}


def comparable_settings(settings):
    """Solver settings with the options a stored study left implicit made explicit.

    Two settings describe the same solver when these are equal: a study
    stored before an option existed (see :func:`legacy_defaults`) matches
    a solver rebuilt with that option's legacy value.
    """
    settings = dict(settings)
    settings["options"] = legacy_options(settings.get("name"), settings.get("options"))
    return settings


def solver_from_settings(space, settings):
    """Create a fresh solver from :meth:`settings` output (used on resume)."""
    return make_solver(settings["name"], space, x0=settings.get("x0"),
                       seed=settings.get("seed", 0),
                       **legacy_options(settings["name"], settings.get("options", {})))
