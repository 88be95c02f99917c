"""The user-facing fitting study: ``hnnfit.Study``.

:class:`Study` ties together what the fitting core keeps apart: the
storage (:class:`hnnfit.fit.study.Study`, one SQLite file), the objective
(:class:`~hnnfit.fit.objective.DipoleObjective`), the parameter space and
a solver. Everything needed to continue a study is in its file:
:meth:`Study.load` rebuilds the network, target, space, objective and
solver from it alone.

The class creates and loads studies and answers for their results; the
work is done by modules with one job each, which its methods call:
:mod:`~hnnfit.fit.runner` (the run loop, staged runs included),
:mod:`~hnnfit.fit.polish` (polish studies), :mod:`~hnnfit.fit.assess`
(held-out scoring), :mod:`~hnnfit.fit.plots` and
:mod:`hnnfit.param_export` (parameter files).
"""
from __future__ import annotations

import json
import pickle
import warnings

import numpy as np

from ..exceptions import StudyError
from ..param_export import network_to_params
from ..params import write_params
from ..validation import check_bool, check_type
from . import assess, plots, runner
from .objective import SETTING_KEYS, DipoleObjective, objective_kwargs
from .optimize import replay_solver
from .polish import create_polish, polish_setup  # noqa: F401 (the command line's import)
from .runner import BUDGET_KEY, JOBS_KEY, STAGE_EVALS_KEY  # noqa: F401 (the last two: likewise)
from .solvers import make_solver, solver_from_settings
from .space import Parameter, ParameterSpace, evoked_space
from .staging import FINAL, Stage, plan_evoked_stages
from .study import Study as _Storage
from .targets import Target, read_target

# the command line's name for objective_kwargs
_objective_kwargs_of = objective_kwargs


def _cloudpickle():
    # joblib ships cloudpickle; it pickles hooks defined in scripts (__main__)
    # or closures by value, which the standard pickle cannot
    try:
        from joblib.externals import cloudpickle
    except ImportError:  # pragma: no cover - joblib is a dependency
        import cloudpickle
    return cloudpickle


def _as_space(space):
    """A ParameterSpace from a space or a list of (name, low, high[, options])."""
    if isinstance(space, ParameterSpace):
        return space
    if not isinstance(space, (list, tuple)):
        raise TypeError(f"space must be a ParameterSpace or a list of (name, low, high"
                        f"[, options]) tuples, got {type(space).__name__}")
    params = []
    for item in space:
        if isinstance(item, (Parameter, dict)):
            params.append(item if isinstance(item, Parameter) else Parameter(**item))
            continue
        if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
            raise ValueError(f"space entries must be (name, low, high[, options]) tuples, "
                             f"got {item!r}")
        opts = dict(item[3]) if len(item) == 4 else {}
        if "integer" not in opts and str(item[0]).endswith(".numspikes"):
            # an event count is an integer; spare the user saying so
            opts["integer"] = True
        params.append(Parameter(item[0], item[1], item[2], **opts))
    return ParameterSpace(params)


def _as_target(target):
    if isinstance(target, Target):
        return target
    return read_target(target)


def _objective_kwargs(settings):
    """DipoleObjective keyword arguments from stored settings."""
    kwargs = {k: settings[k] for k in SETTING_KEYS if k in settings}
    if kwargs.get("weights") is not None:
        kwargs["weights"] = np.asarray(kwargs["weights"], dtype=float)
    if kwargs.get("band") is not None:
        kwargs["band"] = tuple(kwargs["band"])
    return kwargs


def _network_blob(net, space, objective):
    """The pickled network, with the code the user gave (hook, callable metric)."""
    return _cloudpickle().dumps({
        "net": net, "set_params": space.set_params,
        "metric": objective.metric if callable(objective.metric) else None},
        protocol=pickle.HIGHEST_PROTOCOL)


def _stored_network(meta, path):
    """The dict :func:`_network_blob` pickled, from the metadata of study ``path``."""
    blob = meta.get("network")
    if blob is None:
        raise StudyError(f"study {str(path)!r} holds no network; it was "
                         f"not written by hnnfit.Study")
    try:
        return pickle.loads(blob)
    except Exception as err:
        raise StudyError(
            f"the network stored in study {str(path)!r} cannot be "
            f"rebuilt ({type(err).__name__}: {err}); is the module defining its "
            f"set_params hook importable?") from None


def _evoked_plan(net, space, target, objective):
    """The stages of an evoked staged fit, after checking the study allows one."""
    if objective.metric not in ("rmse", "weighted_rmse"):
        raise ValueError(f"metric of a staged fit must be 'rmse' or 'weighted_rmse' "
                         f"(stages are scored by a weighted RMSE), got "
                         f"{objective.metric!r}")
    if space.set_params is not None:
        raise ValueError("a staged fit needs the built-in parameter names (it "
                         "assigns parameters to drives), got a space with a "
                         "set_params hook")
    return plan_evoked_stages(net, space, target.times, objective.smooth_window)


def _store_stages(storage, plan):
    """Record the stage plan in a new study; in an existing one, check it matches."""
    raw = storage.metadata.get("stages")
    stored = None if raw is None else json.loads(raw)
    wanted = None if plan is None else [s.to_dict() for s in plan]
    if "stages" not in storage.metadata:
        storage.set_metadata("stages", json.dumps(wanted))
    elif stored != wanted:
        raise StudyError(
            f"study {str(storage.path)!r} was created "
            f"{'without stages' if stored is None else 'with stages'}; open it "
            f"with the same stages argument or use a new study file")


def _stored_stages(meta):
    """The stage plan a study's metadata holds (None for an unstaged study)."""
    plan = json.loads(meta["stages"]) if meta.get("stages") is not None else None
    return None if plan is None else [Stage.from_dict(d) for d in plan]


class Study:
    """A fitting study stored in one file: create it, optimise, resume, inspect.

    Do not call the constructor; use :meth:`create` or :meth:`load`.

    Attributes
    ----------
    path : pathlib.Path
        The study file.
    net : Network
        The network being fitted (parameters at their initial values).
    target : Target
        The waveform fitted (ms, nAm).
    space : ParameterSpace
        The fitted parameters and their bounds.
    objective : DipoleObjective
        The objective (smoothing, scaling, metric, seeds).
    solver_settings : dict
        Method, seed, start point ``x0`` and options of the solver.
    storage : hnnfit.fit.study.Study
        The underlying storage (rows and metadata).
    stages : list of Stage | None
        A staged study's stages, in the order they run (None if unstaged).
    solver_ : solver
        After :meth:`optimize` of an unstaged study: its solver as the run
        left it (see also :meth:`replay_solver`).
    """

    def __init__(self, storage, net, target, space, objective, solver_settings,
                 stages=None):
        self.storage = storage
        self.stages = stages
        self.path = storage.path
        self.net = net
        self.target = target
        self.space = space
        self.objective = objective
        self.solver_settings = solver_settings

    # ------------------------------------------------------------------ create
    @classmethod
    def create(cls, path, net, target, space=None, *, objective=None, solver="bayesian",
               solver_options=None, seed=0, x0=None, description=None, exist_ok=False,
               stages=None):
        """Create a study file (or, with ``exist_ok``, reopen a matching one).

        Parameters
        ----------
        path : str | pathlib.Path
            The study file to create (its folder must exist).
        net : Network
            The network to fit; stored pickled (with any ``set_params`` hook
            of the space and any callable metric).
        target : Target | str | pathlib.Path | ndarray
            The waveform to fit (ms, nAm), or anything :func:`read_target` reads.
        space : ParameterSpace | list | dict | None
            The parameters: a space or a list of ``(name, low, high[,
            {'log': True, 'integer': True}])``; ``'<drive>.numspikes'``
            entries are integers by default. None: the automatic space of
            the network's evoked drives (:func:`~hnnfit.fit.space.
            evoked_space`); a dict: that automatic space with these
            overrides (``{name: (low, high)}`` or ``{name: None}`` to drop).
        objective : dict | None
            Keyword arguments of :class:`DipoleObjective` (``n_trials``,
            ``seeds``, ``group_size``, ``resample``, ``smooth_window`` (ms),
            ``scale``, ``metric``, ``weights``, ``band`` (Hz), ``layer``,
            ``dt`` (ms)). ``resample=True`` gives each batch of evaluations
            new seeds (see :mod:`hnnfit.fit.optimize`); with a noisy
            objective the search then cannot fit a few trials' noise.
        solver : {'bayesian', 'cobyla', 'cma', 'pattern'}
            The optimisation method.
        solver_options : dict | None
            Options of the method (see :func:`make_solver`).
        seed : int
            Seed of the solver.
        x0 : dict | None
            Start point; default: the network's current values of the
            parameters (clipped into the bounds), or the centre of the space
            when the space has a ``set_params`` hook.
        description : str | None
            Free text stored with the study.
        exist_ok : bool
            If ``path`` already holds a study, open it instead of raising,
            after checking that the target, space, objective, solver and
            network are those it was created with (``StudyError`` if not).
        stages : {None, 'evoked'}
            ``'evoked'``: a staged fit (see :mod:`hnnfit.fit.staging`): one
            stage per group of evoked drives, in time order, each scored
            with a time weighting on the part of the waveform its drives
            shape and simulated only to the end of that window, each
            starting from the best point found so far; then a final stage
            over every parameter on the whole waveform. Needs the metric
            ``'rmse'`` or ``'weighted_rmse'``.

        Returns
        -------
        Study
        """
        from ..network import Network

        check_type(net, Network, "net")
        exist_ok = check_bool(exist_ok, "exist_ok")
        target = _as_target(target)
        if space is None or isinstance(space, dict):
            space = evoked_space(net, tstop=float(target.times[-1]), overrides=space)
        space = _as_space(space)
        space.validate(net)
        if stages is not None and stages != "evoked":
            raise ValueError(f"stages must be None or 'evoked', got {stages!r}")
        obj_kwargs = objective_kwargs(objective)
        net = net.copy()
        objective = DipoleObjective(net, target, space, **obj_kwargs)
        if x0 is None:
            x0 = space.midpoint() if space.set_params is not None else space.current_values(net)
        solver_obj = make_solver(solver, space, x0=x0, seed=seed, **dict(solver_options or {}))
        settings = solver_obj.settings()
        blob = _network_blob(net, space, objective)
        plan = None if stages is None else _evoked_plan(net, space, target, objective)
        storage = _Storage.create(path, target=target, space=space,
                                  objective=objective.settings(), solver=settings,
                                  network=blob, description=description,
                                  exist_ok=exist_ok)
        try:
            _store_stages(storage, plan)
        except BaseException:
            storage.close()
            raise
        return cls(storage, net, target, space, objective, settings, plan)

    # -------------------------------------------------------------------- load
    @classmethod
    def load(cls, path):
        """Open a study file and rebuild its network, target, space and objective.

        Parameters
        ----------
        path : str | pathlib.Path

        Returns
        -------
        Study

        Raises
        ------
        StudyError
            The file is not an hnnfit study, has a newer schema, or its
            stored network cannot be rebuilt.
        """
        storage = _Storage.load(path)
        try:
            meta = storage.metadata
            stored = _stored_network(meta, storage.path)
            net = stored["net"]
            space = ParameterSpace.from_dict(meta["space"], set_params=stored["set_params"])
            target = storage.target
            obj_kwargs = _objective_kwargs(meta["objective"] or {})
            if stored.get("metric") is not None:
                obj_kwargs["metric"] = stored["metric"]
            objective = DipoleObjective(net, target, space, **obj_kwargs)
            settings = meta["solver"]
            plan = _stored_stages(meta)
        except BaseException:
            storage.close()
            raise
        return cls(storage, net, target, space, objective, settings, plan)

    def create_polish(self, path, *, overrides=None, only=None, objective=None,
                      solver="cma", solver_options=None, seed=None, description=None,
                      exist_ok=False, start=None):
        """Create a study that refines this study's best point (a local polish).

        See :func:`hnnfit.fit.polish.create_polish` for the parameters.

        Returns
        -------
        Study
            The new study, not yet run; its ``x0`` is the start point.
        """
        return create_polish(self, path, overrides=overrides, only=only, objective=objective,
                             solver=solver, solver_options=solver_options, seed=seed,
                             description=description, exist_ok=exist_ok, start=start)

    def close(self):
        """Close the study file."""
        self.storage.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self.storage.counts()
        best = self.storage.best(FINAL if self.stages is not None else None)
        best = "-" if best is None else f"{best['value']:.6g}"
        return (f"<hnnfit.Study {self.path.name}: {self.solver_settings['name']}, "
                f"{len(self.space)} parameters, {c['complete']} complete, "
                f"{c['failed']} failed, best {best}>")

    # ---------------------------------------------------------------- optimize
    def make_solver(self):
        """A fresh solver with the study's settings."""
        return solver_from_settings(self.space, self.solver_settings)

    def replay_solver(self):
        """The study's solver as the run left it, rebuilt from the log.

        Every finished batch is told again to a fresh solver; nothing is
        simulated or written. For a CMA-ES study this gives its mean and
        generation means (``averaged_mean()``) after the study is reopened,
        e.g. the estimate of a resampled fit. :meth:`optimize` leaves the
        same object in ``solver_``.

        Returns
        -------
        solver

        Raises
        ------
        ValueError
            A staged study (each stage has its own solver).
        StudyError
            A study run pipelined (Bayesian optimisation), or one whose log
            the solver does not reproduce.
        """
        if self.stages is not None:
            raise ValueError("replay_solver is for unstaged studies; a staged study has "
                             "one solver per stage")
        return replay_solver(self.storage, self.make_solver())

    def optimize(self, n_evals, n_jobs=1, backend=None, progress=True, callback=None,
                 scheduler=None, stage_evals=None):
        """Run the study until it holds ``n_evals`` evaluations.

        ``n_evals`` is the study's total budget (complete plus failed
        evaluations), not a number to add: calling ``optimize(100)`` on a
        study interrupted after 40 evaluations runs the remaining 60, and
        the points proposed are those an uninterrupted run would have
        proposed. Recorded evaluations are replayed, not simulated again.
        A run with evaluations to do records ``n_evals``, ``n_jobs`` and
        ``stage_evals`` in the study, so that ``hnnfit resume STUDY``
        continues it with the same settings.

        Parameters
        ----------
        n_evals : int
            Total number of evaluations the study should hold.
        n_jobs : int
            Evaluations run at once (in worker processes when > 1).
        backend : {'sequential', 'loky', 'dask'} | None
            See :func:`~hnnfit.fit.optimize.run_optimization`.
        progress : bool
            Print a progress line (evaluations, best so far, ETA) to stderr
            (see :class:`~hnnfit.fit.runner.ProgressBar`).
        callback : callable | None
            ``callback(row)`` after each recorded evaluation (a dict with
            ``status``, ``value``, ``id``, ``params``, ``batch``,
            ``position``, ``error``, and ``stage`` in a staged study).
        scheduler : str | None
            With ``backend='dask'``: the address of a dask.distributed
            scheduler to run the evaluations on (default: the Client already
            running in this process). The study file is written only here.
        stage_evals : dict | None
            Staged studies only: evaluations of some or all stages
            (``{stage name: n}``, see :attr:`stages`). The stages not named
            share the rest of ``n_evals`` as they do without it: 40% to the
            final stage, the rest to the drive stages in proportion to
            their number of parameters.

        Returns
        -------
        RunSummary
            For a staged study: totals over the stages, the final stage's
            best, and a ``stages`` attribute mapping each stage's name to
            its own summary.
        """
        return runner.run_study(self, n_evals, n_jobs=n_jobs, backend=backend,
                                progress=progress, callback=callback, scheduler=scheduler,
                                stage_evals=stage_evals)

    def _refuse_if_busy(self):
        """StudyError if another live process on this host is running the study."""
        runner.refuse_if_busy(self)

    # ----------------------------------------------------------- staged fits
    def stage_point(self, stage=None):
        """The best point carried forward after a stage (dict of all parameters).

        See :func:`hnnfit.fit.runner.stage_point`.
        """
        return runner.stage_point(self, stage)

    def stage_summary(self):
        """One row per stage: drives, parameters, window, evaluations, best value.

        See :func:`hnnfit.fit.runner.stage_summary`.

        Returns
        -------
        pandas.DataFrame
        """
        return runner.stage_summary(self)

    # ------------------------------------------------------------------ results
    @property
    def evaluations(self):
        """Every evaluation of the study, one row each (pandas.DataFrame).

        Columns: ``id``, ``stage``, ``batch``, ``position``, ``value``,
        ``scale``, ``status`` (``'complete'``, ``'failed'``, ``'running'``
        or ``'abandoned'``), ``error``, the ``seeds`` and ``n_trials`` it
        ran on, ``start_time``, ``end_time`` (s since the epoch),
        ``sim_seconds``, the driver's ``host`` and ``pid``, one column per
        parameter, the ``worker_host`` and ``worker_pid`` that ran it, and
        ``info``.
        """
        return self.storage.trials

    @property
    def trials(self):
        """Deprecated name of :attr:`evaluations` (a trial is a random stream)."""
        warnings.warn("Study.trials is deprecated; use Study.evaluations",
                      DeprecationWarning, stacklevel=2)
        return self.evaluations

    @property
    def best_params(self):
        """Parameter values of the best complete evaluation (dict).

        For a staged study: the point carried through the stages (every
        parameter at its latest stage's best, see :meth:`stage_point`).
        """
        if self.stages is not None:
            if self.storage.best() is None:
                raise StudyError(f"study {str(self.path)!r} has no complete evaluation yet")
            return self.stage_point()
        return self.storage.best_params

    @property
    def best_value(self):
        """Lowest objective value among complete evaluations.

        For a staged study: the final stage's best (stages before it use
        weighted windows, whose values are not comparable).
        """
        if self.stages is not None:
            best = self.storage.best(FINAL)
            if best is None:
                raise StudyError(f"study {str(self.path)!r} has no complete evaluation "
                                 f"in its final stage yet")
            return best["value"]
        return self.storage.best_value

    @property
    def n_complete(self):
        """Number of complete evaluations."""
        return self.storage.n_complete

    @property
    def n_failed(self):
        """Number of failed evaluations."""
        return self.storage.n_failed

    def counts(self):
        """Number of evaluations by status (``'running'``, ``'complete'``,
        ``'failed'``, ``'abandoned'``)."""
        return self.storage.counts()

    @property
    def description(self):
        """The free text given at creation (or None)."""
        return self.storage.metadata.get("description")

    @property
    def machine(self):
        """The machine and software the study was created on (dict, or None).

        :func:`hnnfit.sys_info` at creation: CPU model and vector extensions,
        BLAS, the CoreNEURON build's compiler flags and the versions of NEURON,
        numpy, scipy, scikit-learn and the rest. A study run again elsewhere
        may take another path (see :mod:`hnnfit.sysinfo`); None for studies
        created before hnnfit recorded it.
        """
        return self.storage.metadata.get("machine")

    @property
    def x0(self):
        """The solver's start point (dict)."""
        return dict(self.solver_settings["x0"])

    def best_net(self):
        """The network with the best parameters applied (a new Network)."""
        return self.objective.make_net(self.best_params)

    # ------------------------------------------------------- held-out scoring
    def score_held_out(self, seeds, dt=None):
        """Score the best parameters on the trials ``seeds`` (e.g. held out).

        See :func:`hnnfit.fit.assess.score_held_out`.

        Returns
        -------
        dict
            The objective's result on ``seeds`` plus ``fit_value``, the best
            value on the study's own seeds.
        """
        return assess.score_held_out(self, seeds, dt=dt)

    def validate(self, seeds, dt=None):
        """Deprecated name of :meth:`score_held_out`."""
        warnings.warn("Study.validate is deprecated; use Study.score_held_out",
                      DeprecationWarning, stacklevel=2)
        return self.score_held_out(seeds, dt=dt)

    def error_budget(self, seeds, params=None, k=None, n_jobs=1, dt=None):
        """Split the RMSE of ``k``-trial averages on ``seeds`` into bias and noise.

        See :func:`hnnfit.fit.assess.error_budget`.

        Returns
        -------
        dict
        """
        return assess.error_budget(self, seeds, params=params, k=k, n_jobs=n_jobs, dt=dt)

    def used_seeds(self):
        """Sorted seeds the study's evaluations were run on (its objective's
        seeds, plus every batch's own with ``resample``)."""
        return assess.used_seeds(self)

    def surrogate_point(self, radius=2.0, ridge=1.0, last=None):
        """The minimum of a quadratic model of the waveform, pooled over evaluations.

        See :func:`hnnfit.fit.assess.surrogate_point`.

        Returns
        -------
        params : dict
        rmse : float
            Predicted RMSE (nAm) of the expected waveform.
        """
        return assess.surrogate_point(self, radius=radius, ridge=ridge, last=last)

    def rescore(self, seeds, top=5, n_jobs=1, backend=None):
        """Score the ``top`` best evaluations again on other random streams.

        See :func:`hnnfit.fit.assess.rescore`.

        Returns
        -------
        pandas.DataFrame
        """
        return assess.rescore(self, seeds, top=top, n_jobs=n_jobs, backend=backend)

    # ------------------------------------------------------------------ export
    def export(self, path, params=None):
        """Write the best network (or another point's) as a JSON parameter file.

        ``Network(read_params(path), add_drives_from_params=True,
        mesh_shape=...)`` rebuilds the best network's drives (same event
        times, hence the same dipole). The file holds the network's own
        parameters with every evoked drive written as HNN's flat keys
        (``t_evprox_1``, ``sigma_t_evprox_1``, ``numspikes_evprox_1``,
        ``gbar_evprox_1_L2Pyr_ampa``, ``prng_seedcore_evprox_1``, ...) and
        its Poisson drive, if any, as ``t0_pois``, ``T_pois``,
        ``L5Pyr_Pois_lamtha``, ... (see :func:`network_to_params`).

        Parameters
        ----------
        path : str | pathlib.Path
            The ``.json`` file to write.
        params : dict | None
            Values of the study's parameters to write instead of the best
            point, e.g. ``study.replay_solver().averaged_mean()``; each
            within its bounds.

        Returns
        -------
        params : Params
            What was written.

        Raises
        ------
        HnnfitError
            A drive (or a change made by a ``set_params`` hook) cannot be
            expressed in a parameter file; the message names it.
        """
        if params is None:
            net = self.best_net()
        else:
            net = self.objective.make_net(self.space.check_values(params))
        params = network_to_params(net)
        write_params(params, path)
        return params

    # ------------------------------------------------------------------- plots
    def plot_convergence(self, ax=None, show=True):
        """Every evaluation's value and the best so far; failed ones marked.

        See :func:`hnnfit.fit.plots.plot_convergence`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return plots.plot_convergence(self, ax=ax, show=show)

    def plot_fit(self, show=True):
        """The target, the initial (x0) and the best dipoles (nAm).

        See :func:`hnnfit.fit.plots.plot_fit`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return plots.plot_fit(self, show=show)

    def plot_params(self, show=True):
        """Each parameter's values over the evaluations, with its bounds.

        See :func:`hnnfit.fit.plots.plot_params`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return plots.plot_params(self, show=show)


_LIST_COLUMNS = ("study", "state", "stage", "evaluations", "budget", "complete", "failed",
                 "abandoned", "running", "stale", "best_value", "created", "last",
                 "description", "solver", "pid", "path", "error")


def list_studies(folder="studies"):
    """Summarise the study files of a folder without changing any of them.

    Each ``*.sqlite`` file directly in ``folder`` is read as a study (no
    network is rebuilt, no row is marked abandoned, so a study being run
    by another process is safe to list). Files that are not hnnfit
    studies are listed too, with the reason in ``error``.

    Parameters
    ----------
    folder : str | pathlib.Path
        The folder to look in (not recursively); default ``'studies'``.

    Returns
    -------
    pandas.DataFrame
        One row per file, by name, with columns

        - ``study`` (file name), ``path``;
        - ``state``: ``'running'`` (a live process on this host is
          evaluating it), ``'interrupted'`` (its driver died with
          evaluations in flight: resume redoes them), ``'stopped'`` (fewer
          evaluations than the budget it was last optimised towards),
          ``'done'`` (the budget is reached), ``'idle'`` (evaluations but no
          recorded budget: written by an hnnfit older than
          :meth:`Study.optimize`'s record of it), ``'empty'`` (no
          evaluation yet) or ``'not a study'``;
        - ``stage``: the stage of the newest evaluation of a staged study;
        - ``evaluations`` (complete plus failed), ``budget`` (the
          ``n_evals`` the study was last optimised towards, or None),
          and the counts ``complete``, ``failed``, ``abandoned``,
          ``running`` (in flight in a live process) and ``stale`` (left
          running by a process that is gone);
        - ``best_value``: the lowest value, of the final stage for a staged
          study (None before it starts: the stages' weighted scores are not
          comparable with it);
        - ``created``, ``last`` (the newest evaluation's end): UTC
          timestamps; ``description``, ``solver`` (name), ``pid`` (of the
          live driver, else None) and ``error``.
    """
    import pandas as pd

    df = pd.DataFrame.from_records(_scan_studies(folder), columns=list(_LIST_COLUMNS))
    for col in ("created", "last"):
        df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    # counts stay integers next to the missing ones of files that are not studies
    for col in ("evaluations", "budget", "complete", "failed", "abandoned", "running",
                "stale", "pid"):
        df[col] = df[col].astype("Int64")
    return df


def _scan_studies(folder):
    """The records of :func:`list_studies` as dicts (times in seconds since
    the epoch, missing values None)."""
    import os
    import sqlite3
    from pathlib import Path

    folder = Path(check_type(folder, (str, os.PathLike), "folder"))
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing folder, got {str(folder)!r}")
    records = []
    for path in sorted(folder.glob("*.sqlite")):
        if not path.is_file():
            continue
        rec = dict.fromkeys(_LIST_COLUMNS)
        rec.update(study=path.name, path=str(path))
        try:
            storage = _Storage.load(path, mark_abandoned=False)
        except (StudyError, sqlite3.DatabaseError, OSError) as err:
            rec.update(state="not a study", error=" ".join(str(err).split()))
            records.append(rec)
            continue
        try:
            rec.update(_study_record(storage))
        finally:
            storage.close()
        records.append(rec)
    return records


def _study_record(storage):
    """The fields of :func:`list_studies` for one open storage."""
    meta = storage.metadata
    # an unstaged study created by Study.create stores the JSON null
    staged = meta.get("stages") is not None and json.loads(meta["stages"]) is not None
    counts = storage.counts()
    live = storage.running_elsewhere()
    newest = storage.conn.execute(
        "SELECT stage FROM evaluations ORDER BY id DESC LIMIT 1").fetchone()
    last_end = storage.conn.execute(
        "SELECT MAX(end_time) FROM evaluations WHERE status IN ('complete', 'failed')"
    ).fetchone()[0]
    best = storage.best(FINAL if staged else None)
    budget = meta.get(BUDGET_KEY)
    budget = int(budget) if budget is not None else None
    done = counts["complete"] + counts["failed"]
    pid = None
    if live:
        pid = storage.conn.execute("SELECT pid FROM evaluations WHERE id=?",
                                   (live[0],)).fetchone()[0]
    stale = counts["running"] - len(live)
    if live:
        state = "running"
    elif stale:
        state = "interrupted"
    elif newest is None:
        state = "empty"
    elif budget is None:
        state = "idle"
    else:
        state = "done" if done >= budget else "stopped"
    solver = meta.get("solver") or {}
    created = meta.get("created")
    return {
        "state": state,
        "stage": newest[0] if staged and newest is not None else None,
        "evaluations": done, "budget": budget,
        "complete": counts["complete"], "failed": counts["failed"],
        "abandoned": counts["abandoned"], "running": len(live), "stale": stale,
        "best_value": None if best is None else float(best["value"]),
        "created": None if created is None else float(created),
        "last": last_end,
        "description": meta.get("description"),
        "solver": solver.get("name") if isinstance(solver, dict) else None,
        "pid": pid,
    }
