"""Fit configurations: a fit described in a TOML file, checked, as an object.

A configuration says which network to fit, to which target, over which
parameters, with which objective and solver, for how many evaluations, and
whether a second study polishes the result. :func:`load_config` reads and
checks a file into a :class:`FitConfig`; :func:`build_fit` builds the
network, target, parameter space and settings a fit needs from it, without
touching any study file; :func:`write_config` writes a configuration back
as TOML. ``hnnfit fit CONFIG.toml`` runs exactly this; in Python::

    from hnnfit.config import load_config, build_fit
    config = load_config("erp.toml")
    setup = build_fit(config)        # setup.net, setup.target, setup.space, ...

The file has these sections; every key is checked and an unknown one is an
error::

    [network]
    params = "default.json"        # parameter file: a path, or a bare name
                                   # found in hnnfit's params folder
    mesh_shape = [10, 10]          # pyramidal grid per layer
    add_drives_from_params = true  # the drives the parameter file defines
    legacy_mode = false
    [[network.evoked_drives]]      # optional, repeatable: another evoked drive
    name = "evprox3"               # (Network.add_evoked_drive's keywords;
    mu = 130.0                     # numspikes = 1 unless given); the
    sigma = 5.0                    # automatic space and the stages cover it
    location = "proximal"          # like the file's own drives
    weights_ampa = { L5_pyramidal = 2.0 }   # uS

    [target]
    file = "erp.txt"               # or: dataset = "yes_trial_S1_ERP_all_avg"
    tmin = 0.0                     # window (ms); the simulation runs to tmax
    tmax = 170.0
    columns = [1]                  # optional: data columns to average

    [objective]                    # DipoleObjective keyword arguments
    n_trials = 1
    seeds = [0]
    # group_size = 3               # score k-trial averages: the mean RMSE of
                                   # the groups of k seeds (n_trials = 6)
    # resample = true              # new seeds for each batch (a CMA-ES
                                   # generation): seeds + k * their span
    smooth_window = 30.0           # ms
    scale = 3000.0                 # or "fit"
    metric = "rmse"                # nrmse, corr, weighted_rmse, psd_band,
                                   # hnn_rmse (hnn-core's resampled RMSE)
    # layer = "agg"; dt = 0.025; band = [15.0, 30.0]
    # timeout = 600.0              # s per evaluation; a slower one is a failed row
    # engine = "coreneuron"        # or "neuron" (default), "auto"

    [space]                        # name = [low, high], or a table
    "evprox2.mu" = [100.0, 150.0]
    "evprox2.ampa.L5_pyramidal" = { low = 0.01, high = 1.0, log = true }
    # auto = true                  # the automatic space of the evoked drives
                                   # (timings, sigmas, non-zero weights), the
                                   # entries above overriding its ranges; a
                                   # missing [space] means auto = true

    [solver]
    name = "bayesian"              # cobyla, cma, pattern
    seed = 0
    options = { n_initial_points = 10 }
    # x0 = { "evprox2.mu" = 120.0, ... }   start point

    [run]
    n_evals = 50                   # total budget of the study
    n_jobs = 1
    staged = false                 # true (or --staged): one stage per evoked
                                   # drive group, then all (hnnfit.fit.staging)
    # stage_evals = { evprox1 = 40, final = 60 }   # evaluations of these
                                   # stages; the others share the rest of n_evals
    study = "studies/erp.sqlite"   # default: studies/<config name>.sqlite
    # recipe = "erp"               # a fitting recipe (hnnfit.fit.recipes) run
    # time = "45m"                 # within this wall time, instead of n_evals,
                                   # staged and [polish]; time alone: recipe "erp"
    # add_drives = "auto"          # a recipe also looks for an evoked drive the
                                   # model lacks (hnnfit.fit.structure); or a
                                   # number (up to 3) of drives to allow

    [polish]                       # optional: once the fit has its budget, a
                                   # second study refines its best point
    solver = "cma"                 # default; or cobyla, bayesian, pattern
    n_evals = 200
    options = { sigma0 = 0.06, popsize = 12 }   # seed = the fit's by default
    # only = ["evprox2", "evdist1.mu"]   # fit just these (the rest stay at
                                   # the fit's best values)
    # study = "studies/erp_polish.sqlite"   # default: <fit study>_polish.sqlite
    [polish.objective]             # what differs from [objective]
    seeds = [1000, 1001, 1002]     # new trials, far from held-out seeds
    group_size = 3
    resample = true
    [polish.space]                 # ranges to change, or parameters to add
    "evprox2.nmda.L5_pyramidal" = [0.0, 2.0]

Input files (``params``, ``file``) given as relative paths are relative to
the configuration file's folder; the study paths are relative to the
working directory.

Every check that needs no simulation happens before any study file is
touched: :func:`load_config` checks the layout and the kind of each value,
:func:`build_fit` checks the values against the network (parameter names,
bounds, the target window, solver options, stages, the polish). Both raise
``ValueError`` (or ``FileNotFoundError``) with a message naming the bad
value and what was expected.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from .validation import check_bool, check_int, check_number, check_type

__all__ = ["FitConfig", "NetworkConfig", "TargetConfig", "SolverConfig", "RunConfig",
           "PolishConfig", "FitSetup", "load_config", "write_config", "build_fit",
           "check_stage_budget", "recording_config", "DEFAULT_N_EVALS", "DEFAULT_TIME"]

# section -> allowed keys ([space] is free-form)
_SECTIONS = {
    "network": ("params", "mesh_shape", "add_drives_from_params", "legacy_mode",
                "evoked_drives"),
    "target": ("file", "dataset", "tmin", "tmax", "columns"),
    "objective": ("n_trials", "seeds", "group_size", "resample", "smooth_window", "scale",
                  "metric", "layer", "dt", "band", "timeout", "engine"),
    "space": None,
    "solver": ("name", "seed", "options", "x0"),
    "run": ("n_evals", "n_jobs", "study", "staged", "stage_evals", "recipe", "time",
            "add_drives"),
    "polish": ("solver", "seed", "options", "n_evals", "only", "study", "objective", "space"),
}
_PARAM_KEYS = ("low", "high", "log", "integer")
#: Evaluations of a fit (and of a polish) whose configuration gives no ``n_evals``.
DEFAULT_N_EVALS = 20
#: Wall time of a recipe fit of a recording given no other.
DEFAULT_TIME = "30m"


# ---------------------------------------------------------------------------
# the configuration object
# ---------------------------------------------------------------------------
@dataclass
class NetworkConfig:
    """The ``[network]`` section: the network to fit.

    Attributes
    ----------
    params : str
        Path of the parameter file (``.json`` or ``.param``), resolved.
    mesh_shape : tuple of int
        Pyramidal cells per layer, ``(n_x, n_y)``.
    add_drives_from_params : bool
        Add the drives the parameter file defines.
    legacy_mode : bool
        HNN's legacy cell placement.
    evoked_drives : list of dict
        Further evoked drives, each the keywords of
        :meth:`~hnnfit.Network.add_evoked_drive` (``mu``, ``sigma`` in ms,
        weights in uS).
    """

    params: str
    mesh_shape: tuple = (10, 10)
    add_drives_from_params: bool = True
    legacy_mode: bool = False
    evoked_drives: list = field(default_factory=list)


@dataclass
class TargetConfig:
    """The ``[target]`` section: the recorded response to fit.

    Attributes
    ----------
    file : str | None
        Path of a dipole text file, resolved; None when ``dataset`` is given.
    dataset : str | None
        Name of a recorded dataset (:mod:`hnnfit.datasets`).
    tmin, tmax : float | None
        The window fitted, ms (None: the data's own start and end).
    columns : list | None
        Data columns averaged into the target (None: the reader's default).
    """

    file: str | None = None
    dataset: str | None = None
    tmin: float | None = None
    tmax: float | None = None
    columns: list | None = None


@dataclass
class SolverConfig:
    """The ``[solver]`` section.

    Attributes
    ----------
    name : str
        ``'bayesian'``, ``'cobyla'``, ``'cma'`` or ``'pattern'``.
    seed : int
        Solver seed (>= 0).
    options : dict
        Keyword options of the solver class (:mod:`hnnfit.fit.solvers`).
    x0 : dict | None
        Start point, ``{parameter name: value}`` in the parameters' units.
    """

    name: str = "bayesian"
    seed: int = 0
    options: dict = field(default_factory=dict)
    x0: dict | None = None


@dataclass
class RunConfig:
    """The ``[run]`` section: budget and where the study goes.

    Attributes
    ----------
    n_evals : int
        Total evaluations of the study.
    n_jobs : int
        Evaluations run at once.
    study : str | None
        Study file, relative to the working directory (None: the default of
        :meth:`FitConfig.study_path`).
    staged : bool
        One stage per evoked drive group, then all parameters.
    stage_evals : dict | None
        ``{stage name: evaluations}`` of some stages; the others share the
        rest of ``n_evals``.
    recipe : str | None
        A fitting recipe (:mod:`hnnfit.fit.recipes`) run instead of a fit of
        ``n_evals`` evaluations.
    time : str | None
        The recipe's wall-time budget, e.g. ``'45m'``.
    add_drives : str | int | None
        ``'auto'``: the recipe looks for an evoked drive the model lacks
        and keeps it if it pays (see :mod:`hnnfit.fit.structure`); a number
        (up to 3) allows that many drives, one per round; ``'none'``: none.
    """

    n_evals: int = DEFAULT_N_EVALS
    n_jobs: int = 1
    study: str | None = None
    staged: bool = False
    stage_evals: dict | None = None
    recipe: str | None = None
    time: str | None = None
    add_drives: str | None = None

    @property
    def uses_recipe(self):
        """True if the fit runs a recipe (``recipe``, ``time`` or ``add_drives`` given)."""
        return any(v is not None for v in (self.recipe, self.time, self.add_drives))


@dataclass
class PolishConfig:
    """The ``[polish]`` section: a second study refining the fit's best point.

    Attributes
    ----------
    solver : str
        Solver name (default ``'cma'``).
    seed : int | None
        Solver seed (None: the fit's).
    options : dict
        Keyword options of the solver.
    n_evals : int
        Evaluations of the polish.
    only : list of str | None
        Parameters or drives fitted (None: all); the others stay at the fit's
        best values.
    study : str | None
        Study file (None: ``<fit study>_polish.sqlite``).
    objective : dict
        DipoleObjective keywords that differ from the fit's.
    space : list of Parameter
        Ranges changed, or parameters added.
    """

    solver: str = "cma"
    seed: int | None = None
    options: dict = field(default_factory=dict)
    n_evals: int = DEFAULT_N_EVALS
    only: list | None = None
    study: str | None = None
    objective: dict = field(default_factory=dict)
    space: list = field(default_factory=list)

    def study_path(self, fit_study):
        """The polish's study file for a fit whose study is ``fit_study``.

        Parameters
        ----------
        fit_study : str | Path
            The fit's study file.

        Returns
        -------
        Path
        """
        if self.study is not None:
            return Path(self.study)
        fit_study = Path(fit_study)
        return fit_study.with_name(f"{fit_study.stem}_polish.sqlite")

    def polish_kwargs(self):
        """Keyword arguments of ``Study.create_polish`` for this polish.

        Returns
        -------
        dict
            ``overrides``, ``only``, ``objective``, ``solver``,
            ``solver_options`` and ``seed``.
        """
        return {"overrides": {p.name: p for p in self.space}, "only": self.only,
                "objective": self.objective, "solver": self.solver,
                "solver_options": self.options, "seed": self.seed}


@dataclass
class FitConfig:
    """A checked fit configuration (see :mod:`hnnfit.config` for the file).

    Two configurations are equal when they describe the same fit; the file
    they were read from (``path``) plays no part.

    Attributes
    ----------
    network : NetworkConfig
    target : TargetConfig
    objective : dict
        Keyword arguments of :class:`~hnnfit.fit.objective.DipoleObjective`
        (``smooth_window`` and ``dt`` in ms, ``scale`` a factor or ``'fit'``).
    space : list of Parameter
        The parameters fitted (with ``space_auto``: overrides of the
        automatic space).
    space_auto : bool
        Fit the automatic space of the evoked drives.
    solver : SolverConfig
    run : RunConfig
    polish : PolishConfig | None
    path : Path | None
        The file read, if any.
    """

    network: NetworkConfig
    target: TargetConfig
    objective: dict = field(default_factory=dict)
    space: list = field(default_factory=list)
    space_auto: bool = True
    solver: SolverConfig = field(default_factory=SolverConfig)
    run: RunConfig = field(default_factory=RunConfig)
    polish: PolishConfig | None = None
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data, base=None, *, path=None):
        """Check a configuration given as sections (as TOML reads them).

        Parameters
        ----------
        data : dict
            ``{section: {key: value}}``, the layout of the file.
        base : str | Path | None
            Folder that relative input paths are relative to (default: the
            working directory).
        path : str | Path | None
            The file ``data`` came from, named in error messages.

        Returns
        -------
        FitConfig

        Raises
        ------
        ValueError
            An unknown section or key, or a value of the wrong kind.
        FileNotFoundError
            The parameter file does not exist.
        """
        return _parse(copy.deepcopy(data), Path.cwd() if base is None else Path(base),
                      None if path is None else Path(path))

    def to_dict(self):
        """The configuration as sections: ``FitConfig.from_dict(c.to_dict()) == c``.

        Input paths are absolute; keys left at None are left out (TOML has
        no null).

        Returns
        -------
        dict
        """
        net = self.network
        network = {"params": net.params, "mesh_shape": list(net.mesh_shape),
                   "add_drives_from_params": net.add_drives_from_params,
                   "legacy_mode": net.legacy_mode}
        if net.evoked_drives:
            network["evoked_drives"] = copy.deepcopy(net.evoked_drives)
        target = {k: v for k, v in vars(self.target).items() if v is not None}
        space = {"auto": self.space_auto}
        space.update({p.name: _parameter_dict(p) for p in self.space})
        solver = {"name": self.solver.name, "seed": self.solver.seed,
                  "options": copy.deepcopy(self.solver.options)}
        if self.solver.x0 is not None:
            solver["x0"] = dict(self.solver.x0)
        run = {k: v for k, v in vars(self.run).items() if v is not None}
        out = {"network": network, "target": copy.deepcopy(target),
               "objective": _objective_dict(self.objective), "space": space,
               "solver": solver, "run": copy.deepcopy(run)}
        if self.polish is not None:
            pol = self.polish
            polish = {"solver": pol.solver, "options": copy.deepcopy(pol.options),
                      "n_evals": pol.n_evals}
            for key in ("seed", "only", "study"):
                if getattr(pol, key) is not None:
                    polish[key] = copy.deepcopy(getattr(pol, key))
            if pol.objective:
                polish["objective"] = _objective_dict(pol.objective)
            if pol.space:
                polish["space"] = {p.name: _parameter_dict(p) for p in pol.space}
            out["polish"] = polish
        return out

    def study_path(self):
        """The fit's study file: ``[run] study``, else ``studies/<config name>.sqlite``.

        Returns
        -------
        Path

        Raises
        ------
        ValueError
            Neither ``[run] study`` nor a file name to derive it from.
        """
        if self.run.study is not None:
            return Path(self.run.study)
        if self.path is None:
            raise ValueError("study in [run] must be given for a config not read from a "
                             "file, got none")
        return Path("studies") / f"{self.path.stem}.sqlite"


def _parameter_dict(p):
    spec = {"low": p.low, "high": p.high}
    if p.log:
        spec["log"] = True
    if p.integer:
        spec["integer"] = True
    return spec


def _objective_dict(objective):
    return {k: list(v) if isinstance(v, tuple) else copy.deepcopy(v)
            for k, v in objective.items()}


# ---------------------------------------------------------------------------
# reading and checking
# ---------------------------------------------------------------------------
def _known(keys):
    return ", ".join(repr(k) for k in keys)


def _flatten_space(table, prefix="", section="space"):
    """Flatten ``[space]``: unquoted dotted names arrive as nested tables."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not ({"low", "high"} & set(value)):
            if not value:
                raise ValueError(f"parameter {name!r} in [{section}] must have bounds, got {{}}")
            out.update(_flatten_space(value, name + ".", section))
        else:
            out[name] = value
    return out


def _parse_parameter(name, spec, section="space"):
    from .fit.space import Parameter

    where = f"parameter {name!r} in [{section}]"
    if isinstance(spec, list):
        if len(spec) != 2:
            raise ValueError(f"{where} must be [low, high] or a table with low and high, "
                             f"got {spec!r}")
        low, high, log, integer = spec[0], spec[1], False, False
    elif isinstance(spec, dict):
        unknown = [k for k in spec if k not in _PARAM_KEYS]
        if unknown:
            raise ValueError(f"key {unknown[0]!r} of {where} must be one of "
                             f"{_known(_PARAM_KEYS)}, got {unknown[0]!r}")
        missing = [k for k in ("low", "high") if k not in spec]
        if missing:
            raise ValueError(f"{where} must give {' and '.join(missing)}, got {spec!r}")
        low, high = spec["low"], spec["high"]
        log = check_bool(spec.get("log", False), f"log of {where}")
        integer = check_bool(spec.get("integer", False), f"integer of {where}")
    else:
        raise ValueError(f"{where} must be [low, high] or a table with low and high, "
                         f"got {spec!r}")
    low = check_number(low, f"low bound of {where}")
    high = check_number(high, f"high bound of {where}")
    if low >= high:
        raise ValueError(f"low bound of {where} must be < its high bound {high}, got {low}")
    return Parameter(name, low, high, log=log, integer=integer)


def _params_path(name, base, source):
    """A parameter file named in a config: next to the config, else hnnfit's own."""
    from ._resources import params_dir

    given = Path(name).expanduser()
    candidate = given if given.is_absolute() else base / given
    if candidate.is_file() or given.parent != Path("."):
        if not candidate.is_file():
            raise FileNotFoundError(f"params file {str(candidate)!r} in [network] of "
                                    f"{source} does not exist")
        return str(candidate)
    # a bare name: hnnfit's parameter sets ('default.json', or 'default')
    for option in ([given.name] if given.suffix else [given.name + ".json",
                                                       given.name + ".param"]):
        if (params_dir() / option).is_file():
            return str(params_dir() / option)
    raise FileNotFoundError(
        f"params {name!r} in [network] of {source} must be a parameter file next "
        f"to the config ({base}) or in hnnfit's params folder ({params_dir()})")


def load_config(path):
    """Read and check a fit configuration file.

    Parameters
    ----------
    path : str | Path
        A TOML file (see :mod:`hnnfit.config` for its sections).

    Returns
    -------
    config : FitConfig
        Defaults filled in; relative input paths resolved against the file's
        folder; ``config.path`` is the file.

    Raises
    ------
    FileNotFoundError
        The file (or the parameter file it names) does not exist.
    ValueError
        Invalid TOML, an unknown section or key, or a value of the wrong
        kind. (Names of parameters are checked against the network later,
        by :func:`build_fit`.)
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    return _parse(raw, path.resolve().parent, path)


def recording_config(recording, params, *, recipe=None, time=None, n_jobs=None,
                     study=None, mesh_shape=(10, 10)):
    """The configuration of a recipe fit of a recording from a parameter file's drives.

    What ``hnnfit fit RECORDING --params FILE`` runs: the network and evoked
    drives of ``params`` fitted to ``recording`` with a recipe, over the
    automatic space of the drives (their timings, spreads and weights), on
    averages of 3 trials, smoothed and scaled as the parameter file says
    (HNN's ``dipole_smooth_win`` in ms and ``dipole_scalefctr``; without
    them 30 ms and a fitted scale).

    Parameters
    ----------
    recording : str
        A dataset name (:func:`hnnfit.datasets.dataset_names`) or a data
        file (time in ms, dipole in nAm).
    params : str
        A parameter file (``.json`` or HNN's ``.param``), or the bare name
        of one of hnnfit's.
    recipe : str | None
        The recipe (default :data:`hnnfit.fit.recipes.DEFAULT_RECIPE`).
    time : str | None
        Its wall-time budget (default :data:`DEFAULT_TIME`).
    n_jobs : int | None
        Evaluations at once (default: the machine's cores).
    study : str | None
        The study file (default
        ``studies/<recording>_<params>.sqlite``).
    mesh_shape : tuple of int
        Pyramidal grid per layer.

    Returns
    -------
    FitConfig
        Its ``path`` is the study's name with ``.toml``: write it there
        with :func:`write_config`, so that the fit can be repeated or
        resumed from it.
    """
    import os

    from .datasets import dataset_names
    from .fit.recipes import DEFAULT_RECIPE, parse_duration
    from .params import read_params

    check_type(recording, str, "recording")
    check_type(params, str, "params")
    if recording in dataset_names():
        target = {"dataset": recording}
        stem = recording
    else:
        if not Path(recording).is_file():
            raise FileNotFoundError(
                f"recording must be a data file or one of the datasets "
                f"({', '.join(dataset_names())}), got {recording!r}")
        target = {"file": str(Path(recording).resolve())}
        stem = Path(recording).stem
    params_file = _params_path(params, Path.cwd(), "--params")
    values = read_params(params_file)
    smooth = values.get("dipole_smooth_win", 30.0)
    scale = values.get("dipole_scalefctr")
    objective = {"n_trials": 3, "seeds": [0, 1, 2], "smooth_window": float(smooth),
                 "scale": "fit" if scale is None else float(scale), "metric": "rmse",
                 "engine": "auto"}
    time = DEFAULT_TIME if time is None else str(time)
    parse_duration(time)
    if study is None:
        study = str(Path("studies") / f"{stem}_{Path(params_file).stem}.sqlite")
    data = {"network": {"params": params_file, "mesh_shape": list(mesh_shape)},
            "target": target, "objective": objective, "space": {"auto": True},
            "solver": {"name": "bayesian", "seed": 0},
            "run": {"n_jobs": n_jobs or os.cpu_count() or 1, "study": study,
                    "recipe": recipe or DEFAULT_RECIPE, "time": time}}
    return FitConfig.from_dict(data, path=Path(study).with_suffix(".toml"))


def write_config(config, path):
    """Write a configuration as a TOML file that :func:`load_config` reads back equal.

    Parameters
    ----------
    config : FitConfig
    path : str | Path
        The file written (replaced if it exists).

    Returns
    -------
    Path
        ``path``.
    """
    import tomli_w

    check_type(config, FitConfig, "config")
    path = Path(path)
    text = tomli_w.dumps(config.to_dict())
    path.write_text(text, encoding="utf-8")
    return path


def _parse(raw, base, path):
    """:meth:`FitConfig.from_dict` on data it may change (``path``: for messages)."""
    source = path if path is not None else "the config"
    if not isinstance(raw, dict):
        raise ValueError(f"a config must be a table of sections, got {raw!r}")
    for section, value in raw.items():
        if section not in _SECTIONS:
            raise ValueError(f"section [{section}] of {source} must be one of "
                             f"{_known(_SECTIONS)}, got {section!r}")
        if not isinstance(value, dict):
            raise ValueError(f"[{section}] of {source} must be a table, got {value!r}")
        allowed = _SECTIONS[section]
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise ValueError(f"key {key!r} in [{section}] of {source} must be one "
                                     f"of {_known(allowed)}, got {key!r}")
    net_s = dict(raw.get("network", {}))
    tgt_s = dict(raw.get("target", {}))
    obj_s = dict(raw.get("objective", {}))
    sol_s = dict(raw.get("solver", {}))
    run_s = dict(raw.get("run", {}))
    space_raw = dict(raw.get("space", {}))
    auto = check_bool(space_raw.pop("auto", "space" not in raw), "auto in [space]")
    space_s = _flatten_space(space_raw)

    if "params" not in net_s:
        raise ValueError(f"[network] of {source} must give params (a parameter file), "
                         f"got none")
    params = _params_path(check_type(net_s["params"], str, "params in [network]"), base,
                          source)
    mesh = net_s.get("mesh_shape", [10, 10])
    if not (isinstance(mesh, (list, tuple)) and len(mesh) == 2):
        raise ValueError(f"mesh_shape in [network] must be [n_x, n_y], got {mesh!r}")
    drives = net_s.get("evoked_drives", [])
    if not (isinstance(drives, list) and all(isinstance(d, dict) for d in drives)):
        raise ValueError(f"evoked_drives in [network] of {source} must be an array of "
                         f"tables ([[network.evoked_drives]]), got {drives!r}")
    network = NetworkConfig(
        params=params,
        mesh_shape=tuple(check_int(m, "mesh_shape in [network]", low=1) for m in mesh),
        add_drives_from_params=check_bool(net_s.get("add_drives_from_params", True),
                                          "add_drives_from_params in [network]"),
        legacy_mode=check_bool(net_s.get("legacy_mode", False), "legacy_mode in [network]"),
        evoked_drives=drives)

    if ("file" in tgt_s) == ("dataset" in tgt_s):
        raise ValueError(f"[target] of {source} must give exactly one of 'file' and "
                         f"'dataset', got {sorted(k for k in tgt_s if k in ('file', 'dataset'))}")
    if "file" in tgt_s:
        tgt_s["file"] = str(base / check_type(tgt_s["file"], str, "file in [target]"))
    else:
        check_type(tgt_s["dataset"], str, "dataset in [target]")
    for key in ("tmin", "tmax"):
        if key in tgt_s:
            tgt_s[key] = check_number(tgt_s[key], f"{key} in [target]")
    target = TargetConfig(**tgt_s)

    objective = _parse_objective(obj_s, "objective")

    if not space_s and not auto:
        raise ValueError(f"[space] of {source} must name at least one parameter or set "
                         f"auto = true, got neither")
    space = [_parse_parameter(name, spec) for name, spec in space_s.items()]

    solver = SolverConfig(name=sol_s.get("name", "bayesian"), seed=sol_s.get("seed", 0),
                          options=sol_s.get("options", {}), x0=sol_s.get("x0"))
    check_type(solver.name, str, "name in [solver]")
    solver.seed = check_int(solver.seed, "seed in [solver]", low=0)
    if not isinstance(solver.options, dict):
        raise ValueError(f"options in [solver] must be a table, got {solver.options!r}")
    if solver.x0 is not None:
        if not isinstance(solver.x0, dict):
            raise ValueError(f"x0 in [solver] must be a table of parameter values, "
                             f"got {solver.x0!r}")
        solver.x0 = _flatten_space(solver.x0)

    run = RunConfig(n_evals=check_int(run_s.get("n_evals", DEFAULT_N_EVALS),
                                      "n_evals in [run]", low=1),
                    n_jobs=check_int(run_s.get("n_jobs", 1), "n_jobs in [run]", low=1),
                    study=run_s.get("study"),
                    staged=check_bool(run_s.get("staged", False), "staged in [run]"))
    if run.study is not None:
        check_type(run.study, str, "study in [run]")
    stage_evals = run_s.get("stage_evals")
    if stage_evals is not None:
        if not isinstance(stage_evals, dict) or not stage_evals:
            raise ValueError(f"stage_evals in [run] of {source} must be a table of stage "
                             f"name = evaluations, got {stage_evals!r}")
        stage_evals = {name: check_int(n, f"stage_evals[{name!r}] in [run]", low=1)
                       for name, n in stage_evals.items()}
    run.stage_evals = stage_evals
    if "recipe" in run_s:
        from .fit.recipes import get_recipe

        run.recipe = get_recipe(check_type(run_s["recipe"], str, "recipe in [run]")).name
    if "time" in run_s:
        from .fit.recipes import parse_duration

        value = run_s["time"]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"time in [run] must be a duration such as '45m', got "
                             f"{value!r}")
        parse_duration(value)
        run.time = str(value)
    if "add_drives" in run_s:
        from .fit.recipes import new_drive_limit

        try:
            new_drive_limit(run_s["add_drives"])
        except ValueError as err:
            raise ValueError(f"{err} (in [run] of {source})") from None
        run.add_drives = run_s["add_drives"]
    if run.uses_recipe and (stage_evals is not None or "polish" in raw):
        raise ValueError(f"[run] of {source} gives a recipe, which plans its own stages "
                         f"and polish: it must not also give stage_evals or [polish]")
    polish = None if "polish" not in raw else _parse_polish(raw["polish"], source)
    return FitConfig(network=network, target=target, objective=objective, space=space,
                     space_auto=auto, solver=solver, run=run, polish=polish, path=path)


def _parse_objective(obj_s, section):
    if "scale" in obj_s and not isinstance(obj_s["scale"], str):
        obj_s["scale"] = check_number(obj_s["scale"], f"scale in [{section}]")
    if "band" in obj_s:
        obj_s["band"] = tuple(obj_s["band"]) if isinstance(obj_s["band"], list) else obj_s["band"]
    return obj_s


def _parse_polish(pol_s, source):
    """Check ``[polish]``: a second study refining the fit's best point."""
    for key in ("objective", "space", "options"):
        if not isinstance(pol_s.get(key, {}), dict):
            raise ValueError(f"{key} in [polish] of {source} must be a table, "
                             f"got {pol_s[key]!r}")
    obj = dict(pol_s.get("objective", {}))
    for key in obj:
        if key not in _SECTIONS["objective"]:
            raise ValueError(f"key {key!r} in [polish.objective] of {source} must be one of "
                             f"{_known(_SECTIONS['objective'])}, got {key!r}")
    only = pol_s.get("only")
    if only is not None and not (isinstance(only, list) and only
                                 and all(isinstance(o, str) for o in only)):
        raise ValueError(f"only in [polish] must be a list of parameter or drive names, "
                         f"got {only!r}")
    seed = pol_s.get("seed")
    polish = PolishConfig(
        solver=check_type(pol_s.get("solver", "cma"), str, "solver in [polish]"),
        seed=None if seed is None else check_int(seed, "seed in [polish]", low=0),
        options=dict(pol_s.get("options", {})),
        n_evals=check_int(pol_s.get("n_evals", DEFAULT_N_EVALS), "n_evals in [polish]",
                          low=1),
        only=only, study=pol_s.get("study"),
        objective=_parse_objective(obj, "polish.objective"),
        space=[_parse_parameter(name, spec, "polish.space") for name, spec in
               _flatten_space(dict(pol_s.get("space", {})), "", "polish.space").items()])
    if polish.study is not None:
        check_type(polish.study, str, "study in [polish]")
    return polish


# ---------------------------------------------------------------------------
# from a configuration to the parts of a fit
# ---------------------------------------------------------------------------
@dataclass
class FitSetup:
    """What a fit needs, built and checked from a :class:`FitConfig`.

    Attributes
    ----------
    net : Network
        The network, with the configured extra drives.
    target : Target
        The target waveform (times in ms, dipole in nAm).
    space : ParameterSpace
        The parameters fitted.
    objective : dict
        Keyword arguments of :class:`~hnnfit.fit.objective.DipoleObjective`.
    solver : SolverConfig
        The solver, with ``x0`` checked against ``space``.
    stage_names : list of str | None
        The stages of a staged fit, when ``[run] stage_evals`` is given.
    polish : PolishConfig | None
        The checked ``[polish]`` section.
    staged : bool
        ``[run] staged``: one stage per evoked drive group, then all.
    """

    net: object
    target: object
    space: object
    objective: dict
    solver: SolverConfig
    stage_names: list | None = None
    polish: PolishConfig | None = None
    staged: bool = False

    def study_kwargs(self, staged=None):
        """Keyword arguments of ``Study.create`` for this fit (all but the path).

        Parameters
        ----------
        staged : bool | None
            Override ``self.staged`` (the command line's ``--staged``).

        Returns
        -------
        dict
            ``net``, ``target``, ``space``, ``objective``, ``solver``,
            ``solver_options``, ``seed``, ``x0`` and ``stages``.
        """
        staged = self.staged if staged is None else staged
        return {"net": self.net, "target": self.target, "space": self.space,
                "objective": self.objective, "solver": self.solver.name,
                "solver_options": self.solver.options, "seed": self.solver.seed,
                "x0": self.solver.x0, "stages": "evoked" if staged else None}


def build_fit(config):
    """Build and check everything a fit needs, without touching any study file.

    Parameters
    ----------
    config : FitConfig
        From :func:`load_config` or :meth:`FitConfig.from_dict`.

    Returns
    -------
    setup : FitSetup
        The network, target, space, objective settings and solver; create
        the study with ``Study.create(path, **setup.study_kwargs())`` and
        its polish with ``study.create_polish(polish_path,
        **setup.polish.polish_kwargs())``.

    Raises
    ------
    ValueError
        A parameter the network does not have, a target window outside the
        data, bad objective settings, solver options the solver does not
        take, stage budgets of stages the fit does not have, or a bad
        ``[polish]``.
    FileNotFoundError
        A missing target file.
    """
    from .fit.objective import DipoleObjective
    from .fit.space import ParameterSpace
    from .fit.targets import read_target
    from .network import Network
    from .params import read_params

    check_type(config, FitConfig, "config")
    net_s, tgt_s = config.network, config.target
    net = Network(read_params(net_s.params),
                  add_drives_from_params=net_s.add_drives_from_params,
                  legacy_mode=net_s.legacy_mode, mesh_shape=net_s.mesh_shape)
    if net_s.evoked_drives:
        from .network import add_evoked_drives

        add_evoked_drives(net, copy.deepcopy(net_s.evoked_drives),
                          what="[[network.evoked_drives]]")
    if tgt_s.dataset is not None:
        from .datasets import fetch_dataset

        source = fetch_dataset(tgt_s.dataset)
    else:
        source = tgt_s.file
        if not Path(source).is_file():
            raise FileNotFoundError(f"target file {source!r} does not exist")
    target = read_target(source, tmin=tgt_s.tmin, tmax=tgt_s.tmax, columns=tgt_s.columns)
    if config.space_auto:
        from .fit.space import evoked_space

        space = evoked_space(net, tstop=float(target.times[-1]),
                             overrides={p.name: p for p in config.space})
    else:
        space = ParameterSpace(config.space)
    objective = dict(config.objective)
    # the objective checks its settings and the space against the network
    checked = DipoleObjective(net, target, space, **objective)
    sol = config.solver
    solver = SolverConfig(name=sol.name, seed=sol.seed, options=dict(sol.options),
                          x0=None if sol.x0 is None else space.check_values(sol.x0))
    _check_solver(solver.name, space, solver.x0, solver.seed, solver.options, "solver")
    stage_evals = config.run.stage_evals
    names = None
    if stage_evals:
        from .fit.staging import plan_evoked_stages

        names = [st.name for st in plan_evoked_stages(net, space, target.times,
                                                      checked.smooth_window)]
        unknown = [n for n in stage_evals if n not in names]
        if unknown:
            raise ValueError(f"stage_evals in [run] must name stages of this fit "
                             f"({', '.join(names)}), got {', '.join(map(repr, unknown))}")
    polish = config.polish
    if polish is not None:
        from .fit.objective import objective_kwargs
        from .fit.polish import polish_setup

        # the polish will start from the fit's best point; its start point
        # stands in for it, so that a bad [polish] fails before any study
        start = solver.x0 or space.clip(space.current_values(net))
        pnet, pspace, px0, psettings = polish_setup(
            net, space, start, objective_kwargs(checked),
            overrides={p.name: p for p in polish.space}, only=polish.only,
            objective=polish.objective, what="fit's space")
        DipoleObjective(pnet, target, pspace, **psettings)
        _check_solver(polish.solver, pspace, px0, polish.seed or 0, polish.options,
                      "polish")
    return FitSetup(net=net, target=target, space=space, objective=objective,
                    solver=solver, stage_names=names, polish=polish,
                    staged=config.run.staged)


def check_stage_budget(stage_evals, names, n_evals):
    """Refuse stage budgets that do not fit in the total budget.

    Parameters
    ----------
    stage_evals : dict
        ``{stage name: evaluations}``.
    names : list of str
        All stages of the fit.
    n_evals : int
        The total budget.

    Raises
    ------
    ValueError
        ``n_evals`` is less than the given stage budgets plus one evaluation
        for each other stage.
    """
    others = [n for n in names if n not in stage_evals]
    given = sum(stage_evals.values())
    if given + len(others) > n_evals:
        raise ValueError(f"n_evals must cover stage_evals ({given}) and one evaluation for "
                         f"each other stage ({len(others)}), got {n_evals}")


def _check_solver(name, space, x0, seed, options, section):
    from .fit.solvers import check_solver_options, make_solver

    # checked here first so that the error names the config section;
    # make_solver's own check then passes, and it refuses bad option values
    check_solver_options(name, options, f"options in [{section}]")
    make_solver(name, space, x0=x0, seed=seed, **options)
