"""``simulate_dipole``: run a network's trials and collect their outputs."""
import time
import warnings

import numpy as np

from . import simulator
from .cell_response import CellResponse
from .dipole import Dipole
from .exceptions import CompilationError, SimulationError
from .network import Network
from .parallel import JoblibBackend, current_backend
from .params import get_param
from .validation import check_bool, check_int, check_option, check_positive, check_type


ENGINES = ("neuron", "coreneuron", "auto")


def simulate_dipole(net, tstop=None, dt=0.025, n_trials=None, postproc=False,
                    record_vsoma=False, verbose=True, *, warm=False, engine="neuron",
                    n_threads=1):
    """Simulate the current dipole of a network.

    Trials are independent: each plays its own drive events (per-trial
    seeds as in the reference implementation). They run in this process,
    or in parallel worker processes inside ``with JoblibBackend(n_jobs=N):``.

    Parameters
    ----------
    net : Network
        The network to simulate. Its drives' event times are (re)drawn for
        ``n_trials`` trials and stored in ``net.external_drives[name]['events']``;
        spikes end up in ``net.cell_response``.
    tstop : float | None
        Simulation end (ms); None takes the parameter file's ``tstop``.
    dt : float
        Integration time step (ms).
    n_trials : int | None
        Number of trials; None takes the parameter file's ``N_trials`` (or 1).
    postproc : bool
        Smooth with the parameter file's ``dipole_smooth_win`` (ms) and
        scale by ``dipole_scalefctr``, as the HNN GUI does.
    record_vsoma : bool
        Record every cell's somatic voltage (mV) into ``net.cell_response.vsoma``.
    verbose : bool
        Print a progress line every 10 ms of simulated time (CoreNEURON:
        once, at the end).
    warm : bool
        Keep the built NEURON model in each (worker) process and reuse it
        for the next simulation of a network with the same structure,
        replacing only drive event times and synaptic weights and delays.
        The results are bit-identical to a fresh build (``warm=False``,
        which builds and tears down a model per trial).
    engine : str
        ``'neuron'`` (default), ``'coreneuron'`` (integrate with CoreNEURON,
        using mechanisms compiled for it, in worker processes that load
        that build; raises ``SimulationError`` where it is unavailable) or
        ``'auto'`` (CoreNEURON if it can be compiled, else NEURON with a
        warning).
    n_threads : int
        Threads that integrate one trial (NEURON's ``ParallelContext.nthread``).
        Keep 1 when trials or fit evaluations already run in parallel
        worker processes on every core.

    Returns
    -------
    dpls : list of Dipole
        One dipole (nAm) per trial.
    """
    check_type(net, Network, "net")
    if tstop is None:
        tstop = get_param(net._params, "tstop")
    tstop = check_positive(tstop, "tstop")
    dt = check_positive(dt, "dt")
    if dt >= tstop:
        raise ValueError(f"dt must be smaller than tstop ({tstop} ms), got {dt}")
    if n_trials is None:
        n_trials = get_param(net._params, "N_trials") or 1
    n_trials = check_int(n_trials, "n_trials", low=1)
    postproc = check_bool(postproc, "postproc")
    record_vsoma = check_bool(record_vsoma, "record_vsoma")
    warm = check_bool(warm, "warm")
    check_option(engine, ENGINES, "engine")
    n_threads = check_int(n_threads, "n_threads", low=1)

    if not net.connectivity:
        warnings.warn("the network has no connections", UserWarning, stacklevel=2)
    if not net.external_drives:
        warnings.warn("the network has no external drives", UserWarning, stacklevel=2)

    return simulate_trials(net, tstop, dt, list(range(n_trials)), postproc=postproc,
                           record_vsoma=record_vsoma, verbose=verbose,
                           backend=current_backend(), warm=warm, engine=engine,
                           n_threads=n_threads)


def _resolve_engine(engine):
    """``'neuron'`` or ``'coreneuron'`` for a requested engine.

    CoreNEURON is checked by compiling its mechanism build (cached after
    the first time); loading it happens in the worker processes.
    """
    if engine == "neuron":
        return engine
    try:
        simulator.ensure_mechanisms(coreneuron=True)
    except CompilationError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        if engine == "auto":
            warnings.warn(f"CoreNEURON is not available ({reason}); simulating with NEURON",
                          UserWarning, stacklevel=3)
            return "neuron"
        raise SimulationError(
            f"engine 'coreneuron' is not available: its mechanisms could not be "
            f"compiled ({reason})") from err
    return "coreneuron"


def simulate_trials(net, tstop, dt, trial_seeds, *, postproc=False, record_vsoma=False,
                    verbose=False, backend=None, warm=False, engine="neuron", n_threads=1,
                    timeout=None):
    """Simulate chosen trials (random streams) of a network.

    Unlike :func:`simulate_dipole`, which runs trials ``0 .. n_trials-1``,
    this runs one trial per entry of ``trial_seeds``: trial ``j`` plays the
    drive events of trial index ``trial_seeds[j]``, so a network can be
    scored on chosen random streams (as a fit's objective does). It takes
    no defaults from the parameter file and does not warn about a network
    without connections or drives.

    Parameters
    ----------
    net : Network
        The network; its drive events are redrawn for these trials and
        ``net.cell_response`` is replaced.
    tstop : float
        Simulation end (ms).
    dt : float
        Integration time step (ms), smaller than ``tstop``.
    trial_seeds : list of int
        Trial indices (>= 0) whose drive events to play, one simulation each.
    postproc : bool
        Smooth and scale as the parameter file says (see :func:`simulate_dipole`).
    record_vsoma : bool
        Record every cell's somatic voltage (mV).
    verbose : bool
        Print progress lines.
    backend : JoblibBackend | None
        Where the trials run; None runs them in this process.
    warm, engine, n_threads
        As in :func:`simulate_dipole`.
    timeout : float | None
        Limit (s) on the wall time of all trials together; a time-out raises
        :class:`~hnnfit.exceptions.SimulationError`.

    Returns
    -------
    dpls : list of Dipole
        One dipole (nAm) per entry of ``trial_seeds``.
    """
    check_type(net, Network, "net")
    tstop = check_positive(tstop, "tstop")
    dt = check_positive(dt, "dt")
    if dt >= tstop:
        raise ValueError(f"dt must be smaller than tstop ({tstop} ms), got {dt}")
    if isinstance(trial_seeds, (str, bytes)) or not hasattr(trial_seeds, "__len__"):
        raise TypeError(f"trial_seeds must be a list of int, got {trial_seeds!r}")
    if len(trial_seeds) == 0:
        raise ValueError("trial_seeds must name at least one trial, got an empty list")
    trial_seeds = [check_int(seed, f"trial_seeds[{idx}]", low=0)
                   for idx, seed in enumerate(trial_seeds)]
    n_trials = len(trial_seeds)
    deadline = None if timeout is None else time.time() + timeout
    backend = backend if backend is not None else JoblibBackend(n_jobs=1)
    requested = check_option(engine, ENGINES, "engine")
    engine = _resolve_engine(requested)
    net._instantiate_drives(tstop=tstop, n_trials=n_trials, trial_seeds=trial_seeds)
    try:
        results = backend.run_trials(
            net, list(range(n_trials)), tstop, dt, record_vsoma=record_vsoma,
            verbose=verbose, warm=warm, engine=engine, n_threads=n_threads,
            deadline=deadline)
    except SimulationError as err:
        if requested != "auto" or engine != "coreneuron":
            raise
        warnings.warn(f"CoreNEURON failed ({err}); simulating with NEURON",
                      UserWarning, stacklevel=2)
        engine = "neuron"
        results = backend.run_trials(
            net, list(range(n_trials)), tstop, dt, record_vsoma=record_vsoma,
            verbose=verbose, warm=warm, engine=engine, n_threads=n_threads,
            deadline=deadline)

    n_pyr_x, n_pyr_y = net._n_pyr_x, net._n_pyr_y
    cell_response = CellResponse(times=results[0]["times"],
                                 cell_type_names=list(net.cell_types))
    dpls = []
    for res in results:
        raw = res["dipole"]
        for layer, values in raw.items():
            if not np.all(np.isfinite(values)):
                raise SimulationError(
                    f"trial {res['trial_idx']}: the {layer} dipole is not finite "
                    "(the model diverged)"
                )
        dpl = Dipole(res["times"], {"agg": raw["L2"] + raw["L5"], "L2": raw["L2"],
                                    "L5": raw["L5"]})
        # the reference's raw output: offset-corrected, then fA*m -> nA*m
        dpl._baseline_renormalize(n_pyr_x, n_pyr_y)._convert_fAm_to_nAm()
        if postproc:
            window = get_param(net._params, "dipole_smooth_win")
            factor = get_param(net._params, "dipole_scalefctr")
            if window and window > 0:
                dpl.smooth(window_len=window)
            if factor and factor > 0:
                dpl.scale(factor)
        dpls.append(dpl)
        cell_response._add_trial(res["spike_times"], res["spike_gids"],
                                 vsoma=res["vsoma"] if record_vsoma else None,
                                 gid_ranges=net.gid_ranges)
    net.cell_response = cell_response
    net._sim_timing = [
        {"trial": r["trial_idx"], "build_s": r["build_s"], "run_s": r["run_s"],
         "reused": r.get("reused", False), "engine": engine, "n_threads": n_threads}
        for r in results
    ]
    return dpls
