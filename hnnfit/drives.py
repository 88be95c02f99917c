"""Event times of the network's external drive cells.

A drive (``net.external_drives[name]``, see ARCHITECTURE.md) owns a block of
artificial "drive cells", each of which emits a train of events per trial.
The trains are drawn so that they reproduce the reference implementation
bit for bit:

Seeding
    Each drive cell gets its own legacy ``numpy.random.RandomState``,
    seeded with ``event_seed + trial_idx * n_gids + drive_cell_index``, where

    * ``event_seed`` is the drive's seed (a drive built from a parameter file
      has already had the first gid of its range added to it),
    * ``n_gids`` is the total number of gids in the network -- cells plus
      the cells of *every* drive -- at the time the events are drawn,
    * ``drive_cell_index`` is the cell's position inside the drive's gid
      range (0 for its first cell), not its absolute gid.

    Rhythmic (bursty) drives draw their random start time from a second
    ``RandomState`` seeded with ``event_seed + trial_idx * n_gids`` alone,
    so all cells of a bursty drive share one start time per trial.

    Because the per-trial step is ``n_gids``, the event times depend on the
    size of the whole network. The single-cell function therefore needs
    ``n_gids`` in addition to the arguments listed in ARCHITECTURE.md; it is
    a required keyword argument of both functions below.

Draws
    evoked: ``numspikes`` normal draws ``N(mu, sigma)``.
    poisson: exponential inter-event intervals of mean ``1000 / rate`` ms,
    accumulated from ``tstart`` while below ``tstop``.
    bursty: burst centres every ``1000 / burst_rate`` ms from the start time
    up to ``tstop``, each jittered by ``N(0, burst_std)``, and ``numspikes``
    events per burst spaced ``spike_isi`` ms apart, centred on the burst.

Clipping
    Only times ``0 < t <= tstop`` (the simulation's ``tstop``) are kept,
    sorted ascending, so a train may hold fewer events than drawn.

Cell-specific drives
    A cell-specific drive cell feeds a single cell; its ``target_type`` picks
    the per-cell-type Poisson rate when ``rate_constant`` is a dict. A drive
    cell whose target type has no rate emits nothing (the reference's
    behaviour for untargeted types in legacy mode).

``sync_within_trial`` (hnnfit extension)
    If ``dynamics['sync_within_trial']`` is true, every drive cell of the
    drive draws from the generator of drive cell 0, so all cells receive the
    same events in a trial (for a cell-specific Poisson drive with per-type
    rates, the same random stream scaled by each type's rate). The reference
    version used for the fidelity data has no such switch; there,
    synchronous input means ``n_drive_cells=1, cell_specific=False``, which
    gives the same trains as drive cell 0 here.
"""
import numbers

import numpy as np

from .validation import (check_bool, check_int, check_nonnegative,
                         check_number, check_option, check_positive,
                         check_type)

__all__ = ["drive_event_times", "instantiate_drive_events", "DRIVE_TYPES"]

DRIVE_TYPES = ("evoked", "poisson", "bursty")

# RandomState accepts seeds in [0, 2**32)
_MAX_SEED = 2 ** 32 - 1


def _rng(seed, what):
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(
            f"{what} must be between 0 and {_MAX_SEED}, got {seed}"
        )
    return np.random.RandomState(seed)


def _check_drive(drive):
    check_type(drive, dict, "drive")
    for key in ("type", "dynamics", "event_seed"):
        if key not in drive:
            raise ValueError(f"drive must have a {key!r} entry, got keys {sorted(drive)}")
    check_option(drive["type"], DRIVE_TYPES, "drive['type']")
    check_type(drive["dynamics"], dict, "drive['dynamics']")
    check_int(drive["event_seed"], "drive['event_seed']")


def _dyn(dynamics, key, drive_type):
    if key not in dynamics:
        raise ValueError(
            f"dynamics of a {drive_type} drive must have a {key!r} entry, "
            f"got keys {sorted(dynamics)}"
        )
    return dynamics[key]


def _evoked_times(dynamics, rng):
    mu = check_number(_dyn(dynamics, "mu", "evoked"), "dynamics['mu']")
    sigma = check_nonnegative(_dyn(dynamics, "sigma", "evoked"), "dynamics['sigma']")
    numspikes = check_int(_dyn(dynamics, "numspikes", "evoked"),
                          "dynamics['numspikes']", low=1)
    return rng.normal(mu, sigma, numspikes)


def _poisson_rate(dynamics, target_type):
    rate = _dyn(dynamics, "rate_constant", "poisson")
    if isinstance(rate, dict):
        if target_type is None:
            raise ValueError(
                "target_type must be a cell type for a Poisson drive with "
                f"per-cell-type rate_constant {sorted(rate)}, got None"
            )
        if target_type not in rate:
            return None
        rate = rate[target_type]
        name = f"dynamics['rate_constant'][{target_type!r}]"
    else:
        name = "dynamics['rate_constant']"
    return check_positive(rate, name)


def _poisson_times(dynamics, rng, rate, sim_tstop):
    tstart = check_nonnegative(dynamics.get("tstart", 0), "dynamics['tstart']")
    tstop = dynamics.get("tstop")
    tstop = sim_tstop if tstop is None else check_number(
        tstop, "dynamics['tstop']", low=tstart)
    mean_isi = 1000.0 / rate  # ms
    # Intervals are drawn in blocks and summed left to right from tstart,
    # which gives the same numbers as drawing and adding one at a time.
    block = max(16, int(1.2 * (tstop - tstart) / mean_isi) + 16)
    times = []
    t_last = tstart
    while True:
        steps = rng.exponential(1.0 / rate, block) * 1000.0
        run = np.add.accumulate(np.concatenate(([t_last], steps)))[1:]
        inside = run < tstop
        if not inside.all():
            times.append(run[:int(np.argmin(inside))])
            break
        times.append(run)
        t_last = run[-1]
    return np.concatenate(times)


def _bursty_times(dynamics, rng, start_rng, sim_tstop):
    kind = "bursty"
    tstart = check_number(_dyn(dynamics, "tstart", kind), "dynamics['tstart']")
    tstart_std = check_nonnegative(dynamics.get("tstart_std", 0.0),
                                   "dynamics['tstart_std']")
    tstop = dynamics.get("tstop")
    tstop = sim_tstop if tstop is None else check_number(tstop, "dynamics['tstop']")
    rate = check_positive(_dyn(dynamics, "burst_rate", kind), "dynamics['burst_rate']")
    jitter = check_nonnegative(_dyn(dynamics, "burst_std", kind), "dynamics['burst_std']")
    numspikes = check_int(_dyn(dynamics, "numspikes", kind), "dynamics['numspikes']",
                          low=1)
    isi = check_nonnegative(dynamics.get("spike_isi", 10), "dynamics['spike_isi']")
    period = 1000.0 / rate  # ms
    if (numspikes - 1) * isi > period:
        raise ValueError(
            f"burst duration ((numspikes - 1) * spike_isi = {(numspikes - 1) * isi} ms)"
            f" must be <= the burst period (1000 / burst_rate = {period} ms)"
        )
    if tstart_std > 0.0:
        tstart = start_rng.normal(tstart, tstart_std)
    centres = rng.normal(np.arange(tstart, tstop, period), jitter)
    if numspikes == 1:
        return centres
    offsets = (np.arange(numspikes) - (numspikes - 1) / 2) * isi
    return (centres[None, :] + offsets[:, None]).ravel()


def drive_event_times(drive, drive_cell_index, gid, trial_idx, tstop,
                      target_type=None, *, n_gids):
    """Event times of one drive cell in one trial.

    Parameters
    ----------
    drive : dict
        The drive (``net.external_drives[name]``): ``'type'`` (``'evoked'``,
        ``'poisson'`` or ``'bursty'``), ``'event_seed'`` (int) and
        ``'dynamics'``: evoked ``mu`` (ms), ``sigma`` (ms), ``numspikes``;
        poisson ``tstart`` (ms), ``tstop`` (ms or None = simulation end),
        ``rate_constant`` (Hz, float or dict cell type -> Hz); bursty
        ``tstart`` (ms), ``tstart_std`` (ms), ``tstop`` (ms or None),
        ``burst_rate`` (Hz), ``burst_std`` (ms), ``numspikes`` (events per
        burst), ``spike_isi`` (ms). Any type may set ``sync_within_trial``.
    drive_cell_index : int
        Position of the drive cell in the drive's gid range (0-based); this,
        not the absolute gid, enters the seed.
    gid : int | None
        Absolute gid of the drive cell; only used to name the cell in error
        messages.
    trial_idx : int
        Trial number (0-based).
    tstop : float
        Simulation end (ms); later events are dropped.
    target_type : str | None
        Cell type the drive cell feeds (cell-specific drives); selects the
        Poisson rate when ``rate_constant`` is a dict. None for drives whose
        cells feed all their targets.
    n_gids : int
        Total number of gids in the network (cells and all drive cells);
        the seed advances by this much per trial.

    Returns
    -------
    times : numpy.ndarray
        Sorted event times (ms), all in ``(0, tstop]``; possibly empty.
    """
    _check_drive(drive)
    index = check_int(drive_cell_index, "drive_cell_index", low=0)
    if gid is not None:
        check_int(gid, "gid", low=0)
    trial_idx = check_int(trial_idx, "trial_idx", low=0)
    tstop = check_positive(tstop, "tstop")
    n_gids = check_int(n_gids, "n_gids", low=1)
    if target_type is not None:
        check_type(target_type, str, "target_type")
    n_cells = drive.get("n_drive_cells")
    if isinstance(n_cells, numbers.Integral) and index >= n_cells:
        raise ValueError(
            f"drive_cell_index must be < n_drive_cells = {n_cells}, got {index}"
        )
    dynamics = drive["dynamics"]
    if check_bool(dynamics.get("sync_within_trial", False),
                  "dynamics['sync_within_trial']"):
        index = 0

    base = int(drive["event_seed"]) + trial_idx * n_gids
    who = f"seed of drive cell {index}" + (f" (gid {gid})" if gid is not None else "")
    rng = _rng(base + index, who)

    kind = drive["type"]
    if kind == "evoked":
        times = _evoked_times(dynamics, rng)
    elif kind == "poisson":
        rate = _poisson_rate(dynamics, target_type)
        if rate is None:
            return np.empty(0)
        times = _poisson_times(dynamics, rng, rate, tstop)
    else:
        start_rng = _rng(base, "bursty start-time seed")
        times = _bursty_times(dynamics, rng, start_rng, tstop)

    times = np.asarray(times, dtype=float)
    times = times[(times > 0) & (times <= tstop)]
    times.sort()
    return times


def instantiate_drive_events(drive, gid_range, target_types, tstop, n_trials,
                             *, n_gids, trial_seeds=None):
    """Event times of every cell of one drive in every trial.

    Parameters
    ----------
    drive : dict
        The drive, as for :func:`drive_event_times`.
    gid_range : range
        The drive's gids (``net.gid_ranges[name]``).
    target_types : sequence of (str | None) | None
        For a cell-specific drive, the cell type fed by each drive cell, in
        gid order (None for a drive cell left without a target); None for a
        drive whose cells feed all their targets.
    tstop : float
        Simulation end (ms).
    n_trials : int
        Number of trials.
    n_gids : int
        Total number of gids in the network (see :func:`drive_event_times`).
    trial_seeds : sequence of int | None
        The trial indices whose random streams to use, one per trial
        (``events[j]`` uses trial index ``trial_seeds[j]``); None means
        ``range(n_trials)``. Fits use this to score on chosen seeds.

    Returns
    -------
    events : list of list of list of float
        ``events[trial][i]``: sorted event times (ms) of drive cell ``i``.
    """
    _check_drive(drive)
    check_type(gid_range, range, "gid_range")
    n_trials = check_int(n_trials, "n_trials", low=1)
    if target_types is not None:
        target_types = list(target_types)
        if len(target_types) != len(gid_range):
            raise ValueError(
                f"target_types must have one entry per drive cell "
                f"({len(gid_range)}), got {len(target_types)}"
            )
    if trial_seeds is None:
        trial_seeds = range(n_trials)
    else:
        trial_seeds = [check_int(k, "trial seed", low=0) for k in trial_seeds]
        if len(trial_seeds) != n_trials:
            raise ValueError(
                f"trial_seeds must have n_trials ({n_trials}) entries, got {len(trial_seeds)}"
            )
    events = []
    for trial_idx in trial_seeds:
        trial = []
        for index, gid in enumerate(gid_range):
            target = None if target_types is None else target_types[index]
            if target_types is not None and target is None:
                # a cell-specific drive cell without a target receives no
                # events but keeps its slot so indices stay aligned with gids
                trial.append([])
                continue
            trial.append(drive_event_times(
                drive, index, gid, trial_idx, tstop, target,
                n_gids=n_gids).tolist())
        events.append(trial)
    return events
