"""The user-facing fitting study: ``hnnfit.Study``.

:class:`Study` ties together what the fitting core keeps apart: the
storage (:class:`hnnfit.fit.storage.StudyStorage`, one SQLite file), the objective
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
from pathlib import Path

import numpy as np

from ..exceptions import StudyError
from ..network_io import network_from_dict, network_hash, network_json
from ..param_export import network_to_params
from ..params import write_params
from ..validation import check_bool, check_type
from . import assess, plots, runner
from .objective import SETTING_KEYS, DipoleObjective, objective_kwargs
from .optimize import replay_solver
from .polish import create_polish
from .solvers import comparable_settings, legacy_defaults, make_solver, solver_from_settings
from .space import Parameter, ParameterSpace, evoked_space
from .staging import FINAL, Stage, plan_evoked_stages
from .storage import EvalState, StudyStorage
from .targets import Target, read_target

# metadata entry of the code a study's network needs (pickled hook, metric)
_CODE_KEY = "network_code"


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
    if isinstance(target, str) and not Path(target).exists():
        from ..datasets import dataset_names, fetch_dataset

        if target in dataset_names():
            # a recorded dataset by name, as a config's [target] dataset
            return read_target(fetch_dataset(target))
        raise ValueError(f"target must be a Target, a data file or one of the datasets "
                         f"({', '.join(dataset_names())}), got {target!r}")
    return read_target(target)


def _objective_kwargs(settings):
    """DipoleObjective keyword arguments from stored settings."""
    kwargs = {k: settings[k] for k in SETTING_KEYS if k in settings}
    if kwargs.get("weights") is not None:
        kwargs["weights"] = np.asarray(kwargs["weights"], dtype=float)
    if kwargs.get("band") is not None:
        kwargs["band"] = tuple(kwargs["band"])
    return kwargs


def _network_entries(net, space, objective):
    """The metadata that stores a network: its JSON description and any user code.

    The network is data (:mod:`hnnfit.network_io`), and its description is
    the study's identity, which no change of a class's layout can break.
    Only what the user gave as code (a ``set_params`` hook, a callable
    metric) is pickled, beside it.
    """
    code = {"set_params": space.set_params,
            "metric": objective.metric if callable(objective.metric) else None}
    blob = None
    if any(v is not None for v in code.values()):
        blob = _cloudpickle().dumps(code, protocol=pickle.HIGHEST_PROTOCOL)
    return network_json(net), blob


def _is_pickle(blob):
    # how the first format stored networks: a pickle of the network and code
    return bytes(blob[:1]) == b"\x80"


def _stored_network(meta, path):
    """``{'net', 'set_params', 'metric'}`` from the metadata of study ``path``."""
    blob = meta.get("network")
    if blob is None:
        raise StudyError(f"study {str(path)!r} holds no network; it was "
                         f"not written by hnnfit.Study")
    try:
        if _is_pickle(blob):
            return pickle.loads(blob)
        stored = {"net": network_from_dict(json.loads(bytes(blob).decode())),
                  "set_params": None, "metric": None}
        code = meta.get(_CODE_KEY)
        if code is not None:
            stored.update(pickle.loads(code))
        return stored
    except Exception as err:
        raise StudyError(
            f"the network stored in study {str(path)!r} cannot be "
            f"rebuilt ({type(err).__name__}: {err}); is the module defining its "
            f"set_params hook importable?") from None


def _upgrade_network(storage):
    """Store a first-format study's pickled network as its JSON description.

    Done once, when such a study is opened for writing; its identity then
    comes from the description, as for a study created now.
    """
    blob = storage.get_metadata("network")
    if blob is None or not _is_pickle(blob):
        return
    stored = _stored_network({"network": blob}, storage.path)
    text = network_json(stored["net"])
    entries = {"network": text.encode(), "network_hash": network_hash(stored["net"])}
    code = {k: stored.get(k) for k in ("set_params", "metric")}
    if any(v is not None for v in code.values()):
        entries[_CODE_KEY] = _cloudpickle().dumps(code, protocol=pickle.HIGHEST_PROTOCOL)
    storage.set_metadata_many(entries)


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
    storage : hnnfit.fit.storage.StudyStorage
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
            The network to fit; stored as its JSON description
            (:mod:`hnnfit.network_io`), with any ``set_params`` hook
            of the space and any callable metric).
        target : Target | str | pathlib.Path | ndarray
            The waveform to fit (ms, nAm): anything :func:`read_target`
            reads, or the name of a recorded dataset
            (:func:`hnnfit.datasets.dataset_names`, fetched and cached by
            :func:`hnnfit.datasets.fetch_dataset`).
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
            Start point, within the bounds (``ValueError`` if not); default:
            the network's current values of the parameters (clipped into the
            bounds), or the centre of the space when the space has a
            ``set_params`` hook.
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
        else:
            # a start point the user chose is not moved silently into the bounds
            x0 = space.check_values(x0 if isinstance(x0, dict) else list(x0))
        solver_options = dict(solver_options or {})
        stored = {}
        if exist_ok and StudyStorage.holds_study(path):
            # a first-format study is compared by its network's description
            with StudyStorage.load(path) as old:
                _upgrade_network(old)
                stored = old.solver_settings or {}
            if stored.get("name") == solver:
                # a study stored before an option existed ran as its legacy
                # value; a caller who leaves the option out resumes it so
                solver_options = {**legacy_defaults(solver, stored.get("options")),
                                  **solver_options}
        solver_obj = make_solver(solver, space, x0=x0, seed=seed, **solver_options)
        settings = solver_obj.settings()
        if stored.get("name") == solver and (comparable_settings(stored)
                                             == comparable_settings(settings)):
            settings = stored   # the same solver, as the stored study spells it
        text, code = _network_entries(net, space, objective)
        plan = None if stages is None else _evoked_plan(net, space, target, objective)
        storage = StudyStorage.create(path, target=target, space=space,
                                      objective=objective.settings(), solver=settings,
                                      network=text, description=description,
                                      exist_ok=exist_ok)
        try:
            if code is not None and storage.get_metadata(_CODE_KEY) is None:
                storage.set_metadata(_CODE_KEY, code)
            _store_stages(storage, plan)
        except BaseException:
            storage.close()
            raise
        return cls(storage, net, target, space, objective, settings, plan)

    # -------------------------------------------------------------------- load
    @classmethod
    def load(cls, path, *, readonly=False, take_over=False):
        """Open a study file and rebuild its network, target, space and objective.

        Parameters
        ----------
        path : str | pathlib.Path
        readonly : bool
            Open for reading only: nothing is written (no lock taken, no
            migration of an older file, rows a crashed driver left running
            stay as they are), so a study another process is running, or
            one on read-only media, can be inspected. Such a study cannot
            be optimised.
        take_over : bool
            Break the hold of another driver that is recorded as running
            the study (see :meth:`hnnfit.fit.storage.StudyStorage.load`).
            Only for a driver known to be gone, e.g. on another host.

        Returns
        -------
        Study

        Raises
        ------
        StudyError
            The file is not an hnnfit study, has a newer schema, its stored
            network cannot be rebuilt, or another live process drives it
            (unless ``readonly``).
        """
        readonly = check_bool(readonly, "readonly")
        storage = StudyStorage.load(path, readonly=readonly,
                                    take_over=check_bool(take_over, "take_over"))
        try:
            if not readonly:
                _upgrade_network(storage)
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

    @classmethod
    def from_config(cls, config, path=None, *, staged=None, description=None, exist_ok=True):
        """Create (or reopen) the study a configuration describes.

        Parameters
        ----------
        config : hnnfit.config.FitConfig | str | pathlib.Path
            A configuration, or the TOML file to load it from
            (:func:`hnnfit.config.load_config`).
        path : str | pathlib.Path | None
            The study file; default: the configuration's ``[run] study``.
        staged : bool | None
            Override the configuration's ``[run] staged``.
        description : str | None
            Free text stored with the study.
        exist_ok : bool
            Reopen a study the file already holds (checked to be the same
            fit), as ``hnnfit fit`` does.

        Returns
        -------
        Study
            The study, not yet run: ``study.optimize(config.run.n_evals,
            n_jobs=config.run.n_jobs, stage_evals=config.run.stage_evals)``
            runs it; a ``[polish]`` section is created from it with
            :meth:`create_polish` and ``config.polish.polish_kwargs()``.
        """
        from ..config import FitConfig, build_fit, check_stage_budget, load_config

        if not isinstance(config, FitConfig):
            config = load_config(config)
        setup = build_fit(config)
        staged = config.run.staged if staged is None else check_bool(staged, "staged")
        if config.run.stage_evals:
            if not staged:
                raise ValueError("stage_evals in [run] needs a staged fit (staged = true), "
                                 "got an unstaged one")
            check_stage_budget(config.run.stage_evals, setup.stage_names, config.run.n_evals)
        path = config.study_path() if path is None else path
        return cls.create(path, **setup.study_kwargs(staged=staged), description=description,
                          exist_ok=exist_ok)

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
                f"{len(self.space)} parameters, {c[EvalState.COMPLETE]} complete, "
                f"{c[EvalState.FAILED]} failed, best {best}>")

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
            ``position``, ``error``, and ``stage`` in a staged study). If
            it returns True, the run proposes nothing more, records the
            evaluations in flight and returns with ``stopped`` set (a
            staged run stops after that stage).
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

        ``Network(read_params(path), add_drives_from_params=True)``
        rebuilds the best network, its grid size included, and its drives
        (same event times, hence the same dipole). The file holds the network's own
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
