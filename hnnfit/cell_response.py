"""Spikes (and optional somatic voltages) recorded in a simulation.

:class:`CellResponse` stores, per trial, the spike times (ms), the gids of
the spiking cells or drive cells, and their types (``'L5_pyramidal'``,
``'evprox1'``, ...). It is plain picklable Python.
"""
import glob
import os
import re
from pathlib import Path

import numpy as np

from . import viz
from ._textio import read_text_table
from .params import CELL_TYPES
from .validation import check_number, check_option, check_type



def _check_trials(value, name):
    check_type(value, (list, tuple), name, "list of per-trial lists")
    out = []
    for idx, trial in enumerate(value):
        if isinstance(trial, np.ndarray):
            trial = trial.tolist()
        check_type(trial, (list, tuple), f"{name}[{idx}]", "list")
        out.append(list(trial))
    return out


def _natural_key(path):
    # sort 'spk_2.txt' before 'spk_10.txt'
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", str(path))]


class CellResponse:
    """Spiking activity of all cells and drive cells, trial by trial.

    Parameters
    ----------
    spike_times : list of list of float | None
        ``spike_times[trial]`` lists the spike times (ms) of that trial.
    spike_gids : list of list of int | None
        Gid of the cell that fired each spike, same shape as ``spike_times``.
    spike_types : list of list of str | None
        Type of each spike's cell (``'L2_basket'``, ``'evprox1'``, ...). If
        None, left empty until :meth:`update_types` derives it from gids.
    times : array-like | None
        Sample times (ms) of continuous recordings (``vsoma``).
    cell_type_names : list of str | None
        Cell types of the network (default: the four Jones 2009 types).
    vsoma : list of dict | None
        ``vsoma[trial][gid]`` is the somatic voltage (mV) sampled at
        ``times``, when recorded.

    Attributes
    ----------
    spike_times, spike_gids, spike_types : list of list
        As above, one inner list per trial.
    vsoma : list of dict
        Somatic voltages per trial (empty list if not recorded).
    times : ndarray
        Sample times (ms) of ``vsoma``.
    cell_type_names : list of str
        The network's cell types.
    """

    def __init__(self, spike_times=None, spike_gids=None, spike_types=None,
                 times=None, cell_type_names=None, vsoma=None):
        spike_times = _check_trials([] if spike_times is None else spike_times,
                                    "spike_times")
        spike_gids = _check_trials([] if spike_gids is None else spike_gids,
                                   "spike_gids")
        if len(spike_gids) != len(spike_times):
            raise ValueError(
                f"spike_gids must have one list per trial ({len(spike_times)}), "
                f"got {len(spike_gids)}"
            )
        for idx, (st, sg) in enumerate(zip(spike_times, spike_gids)):
            if len(st) != len(sg):
                raise ValueError(
                    f"spike_gids[{idx}] must have one gid per spike time ({len(st)}), "
                    f"got {len(sg)}"
                )
        if spike_types is None:
            spike_types = [[] for _ in spike_times] if spike_times else []
        spike_types = _check_trials(spike_types, "spike_types")
        if len(spike_types) != len(spike_times):
            raise ValueError(
                f"spike_types must have one list per trial ({len(spike_times)}), "
                f"got {len(spike_types)}"
            )
        for idx, (st, sty) in enumerate(zip(spike_times, spike_types)):
            if sty and len(sty) != len(st):
                raise ValueError(
                    f"spike_types[{idx}] must have one type per spike time "
                    f"({len(st)}), got {len(sty)}"
                )
        self._spike_times = [[float(t) for t in trial] for trial in spike_times]
        self._spike_gids = [[int(g) for g in trial] for trial in spike_gids]
        self._spike_types = [[str(s) for s in trial] for trial in spike_types]
        self._times = np.array([] if times is None else times, dtype=float)
        if cell_type_names is None:
            cell_type_names = list(CELL_TYPES)
        check_type(cell_type_names, (list, tuple), "cell_type_names")
        self.cell_type_names = [str(name) for name in cell_type_names]
        if vsoma is None:
            vsoma = []
        check_type(vsoma, (list, tuple), "vsoma", "list of per-trial dicts")
        self._vsoma = [
            {int(gid): np.asarray(v, dtype=float) for gid, v in trial.items()}
            for trial in vsoma
        ]

    # ------------------------------------------------------------------
    def __repr__(self):
        n_spikes = sum(len(trial) for trial in self._spike_times)
        return f"<CellResponse | {len(self._spike_times)} trials, {n_spikes} spikes>"

    def __eq__(self, other):
        if not isinstance(other, CellResponse):
            return NotImplemented
        if (self._spike_times != other._spike_times
                or self._spike_gids != other._spike_gids
                or self._spike_types != other._spike_types
                or not np.array_equal(self._times, other._times)
                or len(self._vsoma) != len(other._vsoma)):
            return False
        for mine, theirs in zip(self._vsoma, other._vsoma):
            if mine.keys() != theirs.keys():
                return False
            if not all(np.array_equal(mine[g], theirs[g]) for g in mine):
                return False
        return True

    __hash__ = None

    @property
    def spike_times(self):
        """list of list of float: spike times (ms), one list per trial."""
        return self._spike_times

    @property
    def spike_gids(self):
        """list of list of int: gid of each spike, one list per trial."""
        return self._spike_gids

    @property
    def spike_types(self):
        """list of list of str: cell/drive type of each spike, per trial."""
        return self._spike_types

    @property
    def vsoma(self):
        """list of dict: per trial, gid -> somatic voltage (mV) at ``times``."""
        return self._vsoma

    @property
    def times(self):
        """ndarray: sample times (ms) of the continuous recordings."""
        return self._times

    @property
    def n_trials(self):
        """int: number of trials."""
        return len(self._spike_times)

    @property
    def cell_types(self):
        """list of str: the distinct spike types present, sorted."""
        return sorted({s for trial in self._spike_types for s in trial})

    def _add_trial(self, spike_times, spike_gids, vsoma=None, gid_ranges=None):
        """Append one simulated trial (used by the simulation driver).

        Parameters
        ----------
        spike_times : array-like of float
            Spike times (ms) of the trial.
        spike_gids : array-like of int
            Gid of each spike.
        vsoma : dict | None
            gid -> somatic voltage (mV), if recorded.
        gid_ranges : dict | None
            If given, the trial's spike types are derived from it.
        """
        spike_times = [float(t) for t in spike_times]
        spike_gids = [int(g) for g in spike_gids]
        if len(spike_times) != len(spike_gids):
            raise ValueError(
                f"spike_gids must have one gid per spike time ({len(spike_times)}), "
                f"got {len(spike_gids)}"
            )
        self._spike_times.append(spike_times)
        self._spike_gids.append(spike_gids)
        self._spike_types.append(
            _types_from_gids(spike_gids, gid_ranges) if gid_ranges is not None else []
        )
        if vsoma is not None:
            self._vsoma.append(
                {int(g): np.asarray(v, dtype=float) for g, v in vsoma.items()}
            )

    def update_types(self, gid_ranges):
        """Derive every spike's type from its gid.

        Parameters
        ----------
        gid_ranges : dict of str -> range | list of int
            Type name -> gids of that type (e.g. ``net.gid_ranges``); the
            ranges must be disjoint and cover every spiking gid.
        """
        _check_gid_ranges(gid_ranges)
        self._spike_types = [
            _types_from_gids(gids, gid_ranges) for gids in self._spike_gids
        ]

    # ------------------------------------------------------------------
    def mean_rates(self, tstart, tstop, gid_ranges, mean_type="all"):
        """Mean firing rates (Hz) of each cell type.

        Only spikes with ``tstart <= t <= tstop`` count.

        Parameters
        ----------
        tstart, tstop : float
            Counting window (ms), ``tstop > tstart``.
        gid_ranges : dict of str -> range | list of int
            Gids of each cell type (e.g. ``net.gid_ranges``).
        mean_type : 'all' | 'trial' | 'cell'
            ``'all'``: one rate per cell type, averaged over cells and
            trials; ``'trial'``: per trial, averaged over cells;
            ``'cell'``: per trial, per cell.

        Returns
        -------
        rates : dict
            Cell type -> float, list of float (per trial) or list of list
            of float (per trial, per cell in gid order).
        """
        tstart = check_number(tstart, "tstart")
        tstop = check_number(tstop, "tstop")
        if tstop <= tstart:
            raise ValueError(f"tstop must be > tstart ({tstart}), got {tstop}")
        check_option(mean_type, ("all", "trial", "cell"), "mean_type")
        check_type(gid_ranges, dict, "gid_ranges")
        duration_s = (tstop - tstart) / 1000.0
        rates = {}
        for cell_type in self.cell_type_names:
            if cell_type not in gid_ranges:
                raise ValueError(
                    f"gid_ranges must contain cell type {cell_type!r}, got keys "
                    f"{list(gid_ranges)}"
                )
            gids = np.asarray(list(gid_ranges[cell_type]), dtype=int)
            counts = np.zeros((self.n_trials, len(gids)))
            for trial_idx, (times, sgids) in enumerate(
                    zip(self._spike_times, self._spike_gids)):
                times = np.asarray(times, dtype=float)
                sgids = np.asarray(sgids, dtype=int)
                keep = (times >= tstart) & (times <= tstop)
                for col, gid in enumerate(gids):
                    counts[trial_idx, col] = np.count_nonzero(keep & (sgids == gid))
            per_cell = counts / duration_s
            if mean_type == "all":
                rates[cell_type] = float(per_cell.mean()) if per_cell.size else 0.0
            elif mean_type == "trial":
                rates[cell_type] = (per_cell.mean(axis=1).tolist() if len(gids)
                                    else [0.0] * self.n_trials)
            else:
                rates[cell_type] = per_cell.tolist()
        return rates

    # ------------------------------------------------------------------
    def plot_spikes_raster(self, trial_idx=None, ax=None, cell_types=None,
                           show=True):
        """Raster plot of the cells' spikes; see :func:`hnnfit.viz.plot_spikes_raster`.

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        return viz.plot_spikes_raster(self, trial_idx=trial_idx, ax=ax,
                                      cell_types=cell_types, show=show)

    def plot_spikes_hist(self, trial_idx=None, ax=None, bin_width=5,
                         spike_types=None, color=None, show=True):
        """Histogram of spike times by type; see :func:`hnnfit.viz.plot_spikes_hist`.

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        return viz.plot_spikes_hist(self, trial_idx=trial_idx, ax=ax,
                                    bin_width=bin_width, spike_types=spike_types,
                                    color=color, show=show)

    # ------------------------------------------------------------------
    def write(self, fname):
        """Write the spikes to text file(s).

        If ``fname`` contains ``'%d'``, one file per trial is written
        (``fname % trial``), each row ``time<TAB>gid<TAB>type`` as in the
        reference implementation's spike files. Otherwise a single file
        is written with a ``trial time_ms gid type`` header and one row per
        spike, preceded by a ``# n_trials:`` comment so that trials without
        spikes survive. Times are written with full precision.

        Parameters
        ----------
        fname : str | pathlib.Path
            Output path or ``'%d'`` pattern.
        """
        check_type(fname, (str, os.PathLike), "fname")
        fname = str(fname)
        if not all(len(types) == len(times) for types, times
                   in zip(self._spike_types, self._spike_times)):
            raise ValueError(
                "spike_types must be set for every spike before writing; call "
                "update_types(gid_ranges) first"
            )
        if "%d" in fname:
            for trial_idx in range(self.n_trials):
                rows = [
                    f"{t!r}\t{g}\t{s}"
                    for t, g, s in zip(self._spike_times[trial_idx],
                                       self._spike_gids[trial_idx],
                                       self._spike_types[trial_idx])
                ]
                Path(fname % trial_idx).write_text(
                    "".join(row + "\n" for row in rows))
        else:
            lines = [f"# n_trials: {self.n_trials}", "trial\ttime_ms\tgid\ttype"]
            for trial_idx in range(self.n_trials):
                lines.extend(
                    f"{trial_idx}\t{t!r}\t{g}\t{s}"
                    for t, g, s in zip(self._spike_times[trial_idx],
                                       self._spike_gids[trial_idx],
                                       self._spike_types[trial_idx])
                )
            Path(fname).write_text("\n".join(lines) + "\n")


def _check_gid_ranges(gid_ranges):
    check_type(gid_ranges, dict, "gid_ranges")
    seen = {}
    for name, gids in gid_ranges.items():
        for gid in gids:
            if gid in seen:
                raise ValueError(
                    f"gid_ranges must be disjoint, got gid {gid} in both "
                    f"{seen[gid]!r} and {name!r}"
                )
            seen[gid] = name
    return seen


def _types_from_gids(gids, gid_ranges):
    owner = _check_gid_ranges(gid_ranges)
    types = []
    for gid in gids:
        if gid not in owner:
            raise ValueError(
                f"gid_ranges must cover every spiking gid, got gid {gid} outside all "
                f"ranges"
            )
        types.append(owner[gid])
    return types


def _read_rows(path):
    """Rows of a spike file as lists of strings, plus header and metadata."""
    meta, lines = read_text_table(path)
    header, rows = None, []
    for _, _, tokens in lines:
        if header is None and not rows:
            try:
                float(tokens[0])
            except ValueError:
                header = tokens
                continue
        rows.append(tokens)
    return meta, header, rows


def _parse_spike_rows(rows, path, has_trial):
    offset = 1 if has_trial else 0
    trials, times, gids, types = [], [], [], []
    for tokens in rows:
        if len(tokens) < offset + 2:
            raise ValueError(
                f"spike file {path} must have columns [trial,] time, gid[, type], got "
                f"row {' '.join(tokens)!r}"
            )
        try:
            if has_trial:
                trials.append(int(float(tokens[0])))
            times.append(float(tokens[offset]))
            gids.append(int(float(tokens[offset + 1])))
        except ValueError:
            raise ValueError(
                f"spike file {path} must hold numbers in its trial/time/gid columns, "
                f"got row {' '.join(tokens)!r}"
            ) from None
        types.append(tokens[offset + 2] if len(tokens) > offset + 2 else None)
    return trials, times, gids, types


def read_spikes(fname, gid_ranges=None):
    """Read spikes written by :meth:`CellResponse.write` or by the reference.

    Parameters
    ----------
    fname : str | pathlib.Path
        One of: a single file with a ``trial`` column (hnnfit's format or a
        ``trial,time_ms,gid,type`` CSV); a ``'%d'`` pattern (files
        ``fname % 0``, ``fname % 1``, ... as long as they exist); a glob
        pattern such as ``'spk_*.txt'`` (files sorted naturally, one per
        trial); or one per-trial file without a trial column.
    gid_ranges : dict | None
        Type name -> gids. Required when the files have no type column;
        if given, spike types are derived from it.

    Returns
    -------
    cell_response : CellResponse
    """
    check_type(fname, (str, os.PathLike), "fname")
    fname = str(fname)
    if "%d" in fname:
        files = []
        while Path(fname % len(files)).is_file():
            files.append(fname % len(files))
    elif glob.has_magic(fname):
        files = sorted(glob.glob(fname), key=_natural_key)
    else:
        files = [fname] if Path(fname).is_file() else []
    if not files:
        raise FileNotFoundError(f"no spike file found for {fname!r}")

    spike_times, spike_gids, spike_types = [], [], []
    missing_types = False
    for path in files:
        meta, header, rows = _read_rows(path)
        has_trial = header is not None and header[0].lower() == "trial"
        trials, times, gids, types = _parse_spike_rows(rows, path, has_trial)
        missing_types |= any(t is None for t in types)
        if has_trial:
            n_trials = int(meta.get("n_trials", max(trials, default=-1) + 1))
            start = len(spike_times)
            for _ in range(n_trials):
                spike_times.append([])
                spike_gids.append([])
                spike_types.append([])
            for trial, t, g, s in zip(trials, times, gids, types):
                if not 0 <= trial < n_trials:
                    raise ValueError(
                        f"spike file {path} must number trials from 0 to "
                        f"{n_trials - 1}, got trial {trial}"
                    )
                spike_times[start + trial].append(t)
                spike_gids[start + trial].append(g)
                spike_types[start + trial].append(s)
        else:
            spike_times.append(times)
            spike_gids.append(gids)
            spike_types.append(types)

    if missing_types and gid_ranges is None:
        raise ValueError(
            "gid_ranges must be given when the spike files have no type column, "
            "got None"
        )
    if missing_types:
        spike_types = None
    present = {s for trial in (spike_types or []) for s in trial}
    cell_type_names = [c for c in CELL_TYPES if c in present] if present else None
    cell_response = CellResponse(spike_times=spike_times, spike_gids=spike_gids,
                                 spike_types=spike_types,
                                 cell_type_names=cell_type_names)
    if gid_ranges is not None:
        cell_response.update_types(gid_ranges)
        cell_response.cell_type_names = [c for c in CELL_TYPES if c in gid_ranges]
    return cell_response
