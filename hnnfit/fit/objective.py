"""The simulation as a black-box objective: parameters in, a score out.

:class:`DipoleObjective` applies a parameter point to a network, simulates
``n_trials`` trials on fixed random streams (common random numbers, so the
same point always gets the same value), averages them, smooths and scales
the dipole as HNN users do, and compares it with a target on the target's
own time points.
"""
import time
import warnings
from itertools import combinations, islice
from math import comb

import numpy as np

from ..dipole import average_dipoles
from ..parallel import JoblibBackend
from ..simulation import simulate_trials
from ..validation import (check_bool, check_int, check_nonnegative, check_option, check_positive,
                          check_type)
from .space import ParameterSpace
from .targets import Target

METRICS = ("rmse", "nrmse", "corr", "weighted_rmse", "psd_band", "hnn_rmse")
LAYERS = ("agg", "L2", "L5")


def fit_scale(sim, target, weights=None):
    """Least-squares, non-negative scale factor ``s`` minimising ``|s*sim - target|``.

    Parameters
    ----------
    sim, target : ndarray
        Simulated and target values on the same time points.
    weights : ndarray | None
        Non-negative weight of each time point.

    Returns
    -------
    float
        ``max(0, <w sim, target> / <w sim, sim>)``; 0 when ``sim`` is all zero.
    """
    w = np.ones_like(sim) if weights is None else weights
    denom = float(np.sum(w * sim * sim))
    if denom <= 0.0:
        return 0.0
    return max(0.0, float(np.sum(w * sim * target)) / denom)


def _hnn_pair(sim_times, sim, times, target):
    """The simulated and target samples hnn-core's RMSE compares.

    Both series are cut to the window common to them, from its first to its
    last time (the sample nearest each, the last one left out), and the
    longer one is Fourier-resampled (``scipy.signal.resample``) to the other
    one's length.
    """
    from scipy.signal import resample

    t0 = max(times[0], sim_times[0])
    t1 = min(times[-1], sim_times[-1])
    e0, e1 = int(np.abs(times - t0).argmin()), int(np.abs(times - t1).argmin())
    s0, s1 = int(np.abs(sim_times - t0).argmin()), int(np.abs(sim_times - t1).argmin())
    a, b = np.asarray(sim[s0:s1], dtype=float), np.asarray(target[e0:e1], dtype=float)
    if len(a) > len(b):
        a = resample(a, len(b))
    elif len(a) < len(b):
        b = resample(b, len(a))
    return a, b


MAX_GROUPS = 20000  # k-trial groups scored exactly; more are sampled


def _groups(n, k, max_groups, chunk=2000):
    """Index arrays of ``k``-subsets of ``range(n)``, ``chunk`` rows at a time.

    Every subset when there are at most ``max_groups``, else ``max_groups``
    random ones (distinct trials within each) from a fixed generator, so
    the same trials always give the same distribution.
    """
    if comb(n, k) <= max_groups:
        subsets = combinations(range(n), k)
        while rows := list(islice(subsets, chunk)):
            yield np.array(rows, dtype=int)
        return
    rng = np.random.default_rng(0)
    for start in range(0, max_groups, chunk):
        m = min(chunk, max_groups - start)
        yield np.sort(rng.random((m, n)).argsort(axis=1)[:, :k], axis=1)


def error_budget(trials, target, k=1, max_groups=MAX_GROUPS):
    """Split the squared error of ``k``-trial averages into bias and trial spread.

    A fit is judged on averages of a few trials it never saw. Their mean
    squared error over the time points is, in expectation,
    ``bias2 + var / k``: the squared error of the model's mean waveform
    plus the trial-to-trial variance divided by the trials averaged.
    Both are estimated here from ``n >= 2`` independent trials.

    Parameters
    ----------
    trials : ndarray, shape (n, n_times)
        Processed (smoothed, scaled) waveforms of single trials on the
        target's time points (nAm).
    target : ndarray, shape (n_times,)
        The target's values (nAm).
    k : int
        Trials per average.
    max_groups : int
        Averages of ``k`` distinct trials are scored one by one for
        ``group_rmse``: every such group when there are at most this many,
        else this many drawn at random (with a fixed seed).

    Returns
    -------
    dict
        ``expected`` (root expected mean square error of a ``k``-trial
        average, nAm), ``bias2`` and ``var`` (nAm^2, averaged over time
        points; ``bias2`` is unbiased, so it can be slightly negative when
        the mean waveform fits to within the noise), ``k``, ``n_trials``,
        per time point ``mean`` (nAm), ``bias2_t`` and ``var_t``
        (nAm^2), ``trial_rmse`` (each trial's own RMSE, nAm) and
        ``group_rmse`` (the RMSE of averages of ``k`` distinct trials, nAm;
        empty when ``k`` exceeds the trials): their spread is how much a
        held-out check on one group of ``k`` can land away from
        ``expected``, heavy tails included.
    """
    trials = np.asarray(trials, dtype=float)
    target = np.asarray(target, dtype=float)
    if trials.ndim != 2 or trials.shape[0] < 2:
        raise ValueError(f"trials must be an array of at least 2 trials by time points, got "
                         f"shape {trials.shape}")
    if trials.shape[1] != target.shape[-1] or target.ndim != 1:
        raise ValueError(f"target must have one value per time point ({trials.shape[1]}), "
                         f"got shape {target.shape}")
    k = check_int(k, "k", low=1)
    max_groups = check_int(max_groups, "max_groups", low=1)
    n = trials.shape[0]
    mean = trials.mean(axis=0)
    var_t = trials.var(axis=0, ddof=1)
    # (mean - target)^2 over-estimates the squared bias by the mean's own
    # sampling variance, var / n
    bias2_t = (mean - target) ** 2 - var_t / n
    bias2, var = float(bias2_t.mean()), float(var_t.mean())
    trial_rmse = np.sqrt(np.mean((trials - target) ** 2, axis=1))
    group_rmse = np.concatenate([np.empty(0)] + [
        np.sqrt(np.mean((trials[rows].mean(axis=1) - target) ** 2, axis=1))
        for rows in (_groups(n, k, max_groups) if k <= n else ())])
    return {"expected": float(np.sqrt(max(bias2 + var / k, 0.0))), "bias2": bias2,
            "var": var, "k": k, "n_trials": n, "mean": mean, "bias2_t": bias2_t,
            "var_t": var_t, "trial_rmse": trial_rmse, "group_rmse": group_rmse}


def _mean_dipole(dpls):
    """The average of a list of dipoles (the dipole itself for one)."""
    return average_dipoles(dpls) if len(dpls) > 1 else dpls[0]


def _psd(values, dt_ms):
    from scipy.signal import periodogram

    freqs, power = periodogram(values - values.mean(), fs=1000.0 / dt_ms)
    return freqs, power


# DipoleObjective's keyword settings (what a study stores and with_settings
# changes), in constructor order
def _distinct_seeds(seeds):
    """Seeds as ints, each once: a repeated seed is the same trial counted twice."""
    seeds = [check_int(s, "seed", low=0) for s in seeds]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seeds must be distinct (each is one trial's random stream), got "
                         f"{', '.join(map(str, repeated))} more than once in {seeds}")
    return seeds


SETTING_KEYS = ("n_trials", "seeds", "group_size", "resample", "smooth_window", "scale",
                "metric", "weights", "band", "layer", "dt", "timeout", "engine")


class DipoleObjective:
    """Score a network's simulated dipole against a target waveform.

    Parameters
    ----------
    net : Network
        The network to fit (never modified; each evaluation works on a copy).
    target : Target
        The recorded waveform (ms, nAm); its time points are where the
        simulated dipole is compared.
    space : ParameterSpace
        Maps parameter names to network changes (including its optional
        ``set_params`` hook).
    n_trials : int
        Trials averaged per evaluation.
    seeds : sequence of int | None
        Trial indices (random streams) used for the ``n_trials`` trials;
        default ``range(n_trials)``. Fixed across evaluations.
    group_size : int | None
        Score averages of this many trials instead of one average of them
        all: the trials (in seed order) are split into consecutive groups of
        ``group_size``, each group's average is scored, and the value is the
        mean of the group scores. ``n_trials`` must be a multiple of it.
        ``None`` (default) scores the average of all trials. With
        ``n_trials=6, group_size=3`` the value estimates what 3-trial
        averages on fresh seeds score, trial-to-trial variability included,
        which a 6-trial average hides.
    resample : bool
        For a study's optimisation: give each batch of evaluations new
        seeds (``seeds`` shifted by a multiple of their span), the points
        of one batch sharing them, instead of the same ``seeds`` for every
        evaluation (see :mod:`hnnfit.fit.optimize`). The objective itself
        scores whatever seeds it is given.
    smooth_window : float
        Hamming smoothing window (ms); 0 disables smoothing.
    scale : float | 'fit'
        Fixed factor applied to the dipole (e.g. 3000), or ``'fit'`` for the
        least-squares non-negative factor of each evaluation.
    metric : str | callable
        One of ``'rmse'`` (default), ``'nrmse'`` (RMSE divided by the
        target's peak-to-peak range), ``'corr'`` (1 - Pearson correlation),
        ``'weighted_rmse'`` (needs ``weights``), ``'psd_band'`` (RMS
        difference of log10 power in ``band``, for rhythms), ``'hnn_rmse'``
        (RMSE computed as hnn-core's optimizer does: the simulated samples
        between the target's first and last time, excluding the last,
        Fourier-resampled to the target's sample count; values comparable
        with numbers reported by hnn-core, about 1% below ``'rmse'`` on the
        recorded ERPs), or a callable ``metric(sim, target, times) -> float``.
    weights : ndarray | callable | None
        Time weights for ``'weighted_rmse'`` (and the fitted scale): an
        array on the target's times or ``weights(times) -> array``.
    band : tuple of float | None
        ``(fmin, fmax)`` in Hz for ``'psd_band'``.
    layer : str
        Which dipole to compare: ``'agg'``, ``'L2'`` or ``'L5'``.
    dt : float
        Integration step (ms).
    timeout : float | None
        Wall-time limit (s) of one evaluation; past it the evaluation fails
        with a time-out error (a failed row in a study) instead of blocking.
    engine : {'neuron', 'coreneuron', 'auto'}
        Integrator (see :func:`hnnfit.simulate_dipole`); CoreNEURON agrees
        with NEURON to about 1e-13 of the dipole's peak.
    """

    def __init__(self, net, target, space, *, n_trials=1, seeds=None, group_size=None,
                 resample=False, smooth_window=30.0, scale=3000.0, metric="rmse", weights=None,
                 band=None, layer="agg", dt=0.025, timeout=None, engine="neuron"):
        self.net = net
        self.target = check_type(target, Target, "target")
        self.space = check_type(space, ParameterSpace, "space")
        self.n_trials = check_int(n_trials, "n_trials", low=1)
        if seeds is None:
            seeds = list(range(self.n_trials))
        self.seeds = _distinct_seeds(seeds)
        if len(self.seeds) != self.n_trials:
            raise ValueError(
                f"seeds must have n_trials ({self.n_trials}) entries, got {len(self.seeds)}"
            )
        self.group_size = check_int(group_size, "group_size", low=1, allow_none=True)
        if self.group_size is not None:
            self._check_groups(len(self.seeds), "n_trials")
        self.resample = check_bool(resample, "resample")
        self.smooth_window = check_nonnegative(smooth_window, "smooth_window")
        if isinstance(scale, str):
            if scale != "fit":
                raise ValueError(f"scale must be a positive number or 'fit', got {scale!r}")
            self.scale = scale
        else:
            self.scale = check_positive(scale, "scale")
        if callable(metric):
            self.metric = metric
        else:
            self.metric = check_option(metric, METRICS, "metric")
        self.layer = check_option(layer, LAYERS, "layer")
        self.dt = check_positive(dt, "dt")
        self.timeout = check_positive(timeout, "timeout", allow_none=True)
        self.engine = check_option(engine, ("neuron", "coreneuron", "auto"), "engine")
        times = self.target.times
        if weights is not None:
            w = weights(times) if callable(weights) else weights
            w = np.asarray(w, dtype=float)
            if w.shape != times.shape or not np.all(np.isfinite(w)) or (w < 0).any():
                raise ValueError(
                    f"weights must be {len(times)} finite non-negative values (one per "
                    f"target time), got shape {w.shape}"
                )
            if not (w > 0).any():
                raise ValueError("weights must not all be zero")
            weights = w
        if self.metric == "weighted_rmse" and weights is None:
            raise ValueError("metric 'weighted_rmse' needs weights")
        if self.metric == "hnn_rmse" and weights is not None:
            raise ValueError("metric 'hnn_rmse' takes no weights (use 'weighted_rmse')")
        self.weights = weights
        if self.metric == "psd_band":
            if band is None or len(band) != 2 or not 0 <= band[0] < band[1]:
                raise ValueError(f"band must be (fmin, fmax) with 0 <= fmin < fmax in Hz, got {band!r}")
            band = (float(band[0]), float(band[1]))
        self.band = band
        space.validate(net)

    def with_settings(self, **changes):
        """A copy scoring the same network, target and space with some settings changed.

        Parameters
        ----------
        **changes
            Constructor keywords (``n_trials``, ``seeds``, ``group_size``,
            ``resample``, ``smooth_window``, ``scale``, ``metric``,
            ``weights``, ``band``, ``layer``, ``dt``, ``timeout``,
            ``engine``). ``n_trials`` without ``seeds`` gives seeds
            ``0..n_trials-1``; ``seeds`` without ``n_trials`` sets it.

        Returns
        -------
        DipoleObjective
            E.g. ``objective.with_settings(dt=0.025)`` judges, at the fine
            step (ms), a point that a search at a coarser one found.
        """
        unknown = sorted(set(changes) - set(SETTING_KEYS))
        if unknown:
            raise ValueError(f"with_settings takes DipoleObjective settings "
                             f"({', '.join(SETTING_KEYS)}), got {', '.join(unknown)}")
        kwargs = {k: getattr(self, k) for k in SETTING_KEYS}
        if "n_trials" in changes and "seeds" not in changes:
            kwargs["seeds"] = None
        if changes.get("seeds") is not None and "n_trials" not in changes:
            kwargs["n_trials"] = len(changes["seeds"])
        kwargs.update(changes)
        return DipoleObjective(self.net, self.target, self.space, **kwargs)

    # -- identity -------------------------------------------------------
    def settings(self):
        """JSON-able description (stored in a study to refuse mismatches)."""
        metric = self.metric if isinstance(self.metric, str) else (
            f"callable:{getattr(self.metric, '__module__', '?')}."
            f"{getattr(self.metric, '__qualname__', repr(self.metric))}")
        out = {
            "kind": "dipole",
            "n_trials": self.n_trials,
            "seeds": list(self.seeds),
            "group_size": self.group_size,
            "smooth_window": self.smooth_window,
            "scale": self.scale,
            "metric": metric,
            "layer": self.layer,
            "band": list(self.band) if self.band else None,
            "dt": self.dt,
            "tstop": self.tstop,
            "timeout": self.timeout,
            "engine": self.engine,
            "weights": None if self.weights is None else [float(w) for w in self.weights],
        }
        if self.resample:
            # only when set, so that studies written before it still match
            out["resample"] = True
        return out

    @property
    def tstop(self):
        """Simulation end (ms): the end of the target's window, no further."""
        return float(self.target.times[-1])

    # -- evaluation -----------------------------------------------------
    def make_net(self, params):
        """The network with ``params`` applied (a new object)."""
        return self.space.apply(self.net, params)

    def simulate(self, params, seeds=None):
        """Average raw dipole (Dipole, nAm) of ``params`` over ``seeds``."""
        return _mean_dipole(self._simulate_trials(params, seeds))

    def _simulate_trials(self, params, seeds, n_jobs=1):
        seeds = self.seeds if seeds is None else _distinct_seeds(seeds)
        net = self.make_net(params)
        # warm: the worker keeps its built model between evaluations (the
        # result is bit-identical to a fresh build)
        return simulate_trials(net, self.tstop, self.dt, seeds, warm=True,
                               timeout=self.timeout, engine=self.engine,
                               backend=JoblibBackend(n_jobs=n_jobs))

    def _check_groups(self, n, what):
        if n % self.group_size:
            raise ValueError(f"{what} must be a multiple of group_size ({self.group_size}), "
                             f"got {n}")

    def score_dipole(self, dpl, scale=None):
        """Score an (unsmoothed, unscaled) dipole; return ``(value, scale, sim)``.

        ``sim`` is the processed dipole on the target's time points.
        ``scale`` overrides the objective's scale (used to score trial
        groups with the factor fitted to all trials).
        """
        dpl = dpl.copy()
        if self.smooth_window > 0:
            dpl.smooth(self.smooth_window)
        times = self.target.times
        sim = np.interp(times, dpl.times, dpl.data[self.layer])
        target = self.target.values
        if self.metric == "hnn_rmse":
            a, b = _hnn_pair(dpl.times, dpl.data[self.layer], times, target)
            if scale is None:
                scale = fit_scale(a, b) if self.scale == "fit" else self.scale
            value = float(np.sqrt(np.mean((a * scale - b) ** 2)))
            return value, scale, sim * scale
        if scale is None:
            scale = fit_scale(sim, target, self.weights) if self.scale == "fit" else self.scale
        sim = sim * scale
        return self._metric(sim, target, times), scale, sim

    def _metric(self, sim, target, times):
        metric = self.metric
        if callable(metric):
            return float(metric(sim, target, times))
        if metric == "rmse":
            return float(np.sqrt(np.mean((sim - target) ** 2)))
        if metric == "nrmse":
            return float(np.sqrt(np.mean((sim - target) ** 2)) / np.ptp(target))
        if metric == "weighted_rmse":
            w = self.weights
            return float(np.sqrt(np.sum(w * (sim - target) ** 2) / np.sum(w)))
        if metric == "corr":
            if np.std(sim) == 0.0:
                return 1.0
            return float(1.0 - np.corrcoef(sim, target)[0, 1])
        # psd_band
        dt = float(np.median(np.diff(times)))
        freqs, p_sim = _psd(sim, dt)
        _, p_tgt = _psd(target, dt)
        sel = (freqs >= self.band[0]) & (freqs <= self.band[1])
        if not sel.any():
            raise ValueError(f"band {self.band} Hz holds no frequency of the target's spectrum")
        tiny = 1e-30
        return float(np.sqrt(np.mean(
            (np.log10(p_sim[sel] + tiny) - np.log10(p_tgt[sel] + tiny)) ** 2)))

    def __call__(self, params, seeds=None):
        """Evaluate one point.

        Returns
        -------
        dict
            ``value`` (the metric), ``scale`` (factor used), ``seeds``,
            ``n_trials``, ``sim_s`` (wall seconds) and ``dipole`` (the
            processed, scaled dipole on the target's times, nAm: the
            average of all trials). With ``group_size`` and more than one
            group of seeds, also
            ``group_values``, the score of each group; ``value`` is their
            mean and ``scale`` the factor of all trials' average, which
            every group is scored with.
        """
        t0 = time.perf_counter()
        seeds = self.seeds if seeds is None else list(seeds)
        if self.group_size is not None:
            self._check_groups(len(seeds), "the number of seeds")
        dpls = self._simulate_trials(params, seeds)
        value, scale, sim = self.score_dipole(_mean_dipole(dpls))
        extra = {}
        if self.group_size is not None and len(dpls) > self.group_size:
            k = self.group_size
            groups = [dpls[i:i + k] for i in range(0, len(dpls), k)]
            extra["group_values"] = [self.score_dipole(_mean_dipole(g), scale=scale)[0]
                                     for g in groups]
            value = float(np.mean(extra["group_values"]))
        return {
            **extra,
            "value": value,
            "scale": scale,
            "seeds": list(seeds),
            "n_trials": len(seeds),
            "sim_s": time.perf_counter() - t0,
            "dipole": sim,
        }

    def score_held_out(self, params, seeds):
        """Score ``params`` on other random streams (held-out ``seeds``).

        Parameters
        ----------
        params : dict
            One value per parameter of the space.
        seeds : list of int
            The trials' random streams, e.g. ones the fit did not use.

        Returns
        -------
        dict
            What calling the objective returns (``value``, ``dipole``, ...).
        """
        return self(params, seeds=seeds)

    def validate(self, params, seeds):
        """Deprecated name of :meth:`score_held_out`."""
        warnings.warn("DipoleObjective.validate is deprecated; use score_held_out",
                      DeprecationWarning, stacklevel=2)
        return self.score_held_out(params, seeds)

    def error_budget(self, params, seeds, k=None, n_jobs=1):
        """What ``k``-trial averages of ``params`` score, split into bias and noise.

        Every trial of ``seeds`` is smoothed and scaled on its own (with the
        factor of their average when the scale is fitted) and compared with
        the target by :func:`error_budget`. Only for the ``'rmse'``
        metric, whose square it splits.

        Parameters
        ----------
        params : dict
            The point (parameter name to value).
        seeds : sequence of int
            At least 2 trial seeds, ideally ones no fit used.
        k : int | None
            Trials per average; default the objective's ``group_size``, else
            its ``n_trials``.
        n_jobs : int
            Trials simulated at once, in worker processes.

        Returns
        -------
        dict
            :func:`error_budget`'s result plus ``scale``, ``seeds`` and
            ``trials`` (the processed single trials on the target's time
            points, nAm, one row per seed); ``expected`` is in nAm.
        """
        if self.metric != "rmse":
            raise ValueError(f"metric must be 'rmse' for an error budget, got {self.metric!r}")
        seeds = [check_int(s, "seed", low=0) for s in seeds]
        if len(seeds) < 2:
            raise ValueError(f"seeds must hold at least 2 seeds, got {len(seeds)}")
        if k is None:
            k = self.group_size or self.n_trials
        # checked before the (long) simulations
        k = check_int(k, "k", low=1)
        n_jobs = check_int(n_jobs, "n_jobs", low=1)
        dpls = self._simulate_trials(params, seeds, n_jobs=n_jobs)
        _, scale, _ = self.score_dipole(_mean_dipole(dpls))
        sims = np.array([self.score_dipole(d, scale=scale)[2] for d in dpls])
        out = error_budget(sims, self.target.values, k)
        out.update(scale=scale, seeds=seeds, trials=sims)
        return out


def objective_kwargs(objective):
    """The :class:`DipoleObjective` keyword arguments of an objective or a dict.

    Parameters
    ----------
    objective : DipoleObjective | dict | None
        An objective (its settings are read), or keyword arguments of
        :class:`DipoleObjective` (names checked, values left to it); None
        gives no arguments.

    Returns
    -------
    dict
        Keyword arguments; a dict giving ``seeds`` without ``n_trials``
        gets ``n_trials = len(seeds)``.

    Raises
    ------
    ValueError
        A key that is not a setting of :class:`DipoleObjective`.
    """
    if isinstance(objective, DipoleObjective):
        return {k: getattr(objective, k) for k in SETTING_KEYS}
    out = dict(objective or {})
    unknown = sorted(set(out) - set(SETTING_KEYS))
    if unknown:
        raise ValueError(f"objective must only hold DipoleObjective settings "
                         f"({', '.join(SETTING_KEYS)}), got {', '.join(unknown)}")
    if out.get("seeds") is not None and "n_trials" not in out:
        out["n_trials"] = len(out["seeds"])
    return out
