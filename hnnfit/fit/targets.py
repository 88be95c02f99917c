"""Recorded waveforms to fit: reading, validating and windowing.

A target is a time course of a current dipole (nAm) sampled at strictly
increasing times (ms). It may come from

- an HNN-style whitespace text file: a time column followed by one dipole
  column, or by several columns (one per trial), which are averaged or
  kept;
- a CSV file with a header line (first column time, then data columns);
- a numpy array of shape ``(n_times, 2)`` (or more columns, as for text).

Every check runs when the target is read, so a bad file is reported before
any simulation starts.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from ..validation import (check_bool, check_finite_array, check_increasing,
                          check_number, check_type)

#: Fewest samples a target (or a window of one) may have; fewer than this
#: cannot constrain a smoothed waveform fit in any useful way.
MIN_SAMPLES = 5

# Relative slack when comparing a window edge with the first/last sample:
# times written with limited precision (e.g. 1.7, 3.3, ...) must still
# accept a window given as the exact nominal edge.
_EDGE_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class Target:
    """A recorded dipole waveform.

    Parameters
    ----------
    times : array of float, shape (n_times,)
        Sample times (ms), strictly increasing.
    values : array of float, shape (n_times,)
        Dipole (nAm): the mean over trials when several were read.
    trials : array of float, shape (n_times, n_trials) | None
        Per-trial columns (nAm), kept only when asked for.
    source : str
        Where the data came from (a path or ``'<array>'``), for messages.
    """

    times: np.ndarray
    values: np.ndarray
    trials: np.ndarray | None = None
    source: str = "<array>"
    _hash: str = field(default="", repr=False)

    def __post_init__(self):
        # private copies: the arrays are made read-only below
        times = check_increasing(self.times, "target times").copy()
        values = check_finite_array(self.values, "target values", ndim=1).copy()
        if len(times) != len(values):
            raise ValueError(
                f"target values must have one value per time ({len(times)}), "
                f"got {len(values)}"
            )
        if len(times) < MIN_SAMPLES:
            raise ValueError(
                f"target must have at least {MIN_SAMPLES} samples, got {len(times)}"
                f" (from {self.source})"
            )
        trials = self.trials
        if trials is not None:
            trials = check_finite_array(trials, "target trials", ndim=2).copy()
            if trials.shape[0] != len(times):
                raise ValueError(
                    f"target trials must have {len(times)} rows (one per time), "
                    f"got {trials.shape[0]}"
                )
            trials.setflags(write=False)
        times.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "trials", trials)
        object.__setattr__(self, "_hash", _digest(times, values))

    @property
    def n_times(self):
        """Number of samples."""
        return len(self.times)

    @property
    def n_trials(self):
        """Number of trial columns kept (1 when only the mean is kept)."""
        return 1 if self.trials is None else self.trials.shape[1]

    @property
    def tmin(self):
        """First sample time (ms)."""
        return float(self.times[0])

    @property
    def tmax(self):
        """Last sample time (ms)."""
        return float(self.times[-1])

    @property
    def dt(self):
        """Median sampling interval (ms)."""
        return float(np.median(np.diff(self.times)))

    def window(self, tmin=None, tmax=None):
        """Return a new target restricted to ``tmin <= t <= tmax``.

        Parameters
        ----------
        tmin, tmax : float | None
            Window edges (ms); ``None`` keeps the data's own edge. The window
            must lie inside the data and hold at least ``MIN_SAMPLES``
            samples.

        Returns
        -------
        target : Target
        """
        lo, hi = _check_window(self.times, tmin, tmax, self.source)
        keep = (self.times >= lo) & (self.times <= hi)
        n_keep = int(keep.sum())
        if n_keep < MIN_SAMPLES:
            raise ValueError(
                f"target window [{lo}, {hi}] ms must hold at least {MIN_SAMPLES} "
                f"samples, got {n_keep} (from {self.source})"
            )
        trials = None if self.trials is None else self.trials[keep]
        return Target(self.times[keep], self.values[keep], trials, self.source)

    def hash(self):
        """SHA-256 (hex) of the times and values; identifies the target in a study."""
        return self._hash

    def to_dict(self):
        """A JSON-able description (times, values, hash; trials if kept)."""
        out = {"times": self.times.tolist(), "values": self.values.tolist(),
               "hash": self.hash(), "source": self.source}
        if self.trials is not None:
            out["trials"] = self.trials.tolist()
        return out

    @classmethod
    def from_dict(cls, data):
        """Rebuild a target written by :meth:`to_dict`."""
        return cls(np.asarray(data["times"], float), np.asarray(data["values"], float),
                   None if data.get("trials") is None else np.asarray(data["trials"], float),
                   data.get("source", "<study>"))

    def __eq__(self, other):
        if not isinstance(other, Target):
            return NotImplemented
        return self.hash() == other.hash()

    def __hash__(self):
        return hash(self._hash)

    def __repr__(self):
        return (f"<Target {self.n_times} samples, {self.tmin:g}-{self.tmax:g} ms, "
                f"{self.n_trials} trial(s), from {self.source}>")


def _digest(times, values):
    h = hashlib.sha256()
    # fixed byte order so that the hash is the same on every machine
    h.update(np.ascontiguousarray(times, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return h.hexdigest()


def _check_window(times, tmin, tmax, source):
    first, last = float(times[0]), float(times[-1])
    slack = _EDGE_TOL * max(1.0, abs(first), abs(last))
    lo = first if tmin is None else check_number(tmin, "tmin")
    hi = last if tmax is None else check_number(tmax, "tmax")
    if lo >= hi:
        raise ValueError(f"tmin must be < tmax, got tmin={lo} and tmax={hi}")
    if lo < first - slack:
        raise ValueError(
            f"tmin must be >= the first sample time {first} ms, got {lo} "
            f"(from {source})"
        )
    if hi > last + slack:
        raise ValueError(
            f"tmax must be <= the last sample time {last} ms, got {hi} "
            f"(from {source})"
        )
    return lo - slack, hi + slack


def _read_table(path):
    """Return (header or None, 2-D float array) from a text or CSV file."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(
            f"target file must be a text or CSV table of numbers, got a binary file {path}"
        ) from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"target file must contain data, got an empty file {path}")
    delimiter = "," if "," in lines[0] else None
    header = None
    first = lines[0].split(delimiter)
    try:
        [float(tok) for tok in first]
    except ValueError:
        header = [tok.strip() for tok in first]
        lines = lines[1:]
    rows = []
    for i, line in enumerate(lines):
        toks = line.split(delimiter)
        try:
            rows.append([float(tok) for tok in toks])
        except ValueError:
            raise ValueError(
                f"target file must hold only numbers after its header, got "
                f"{line.strip()[:60]!r} on data line {i + 1} of {path}"
            ) from None
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ValueError(
            f"target file must have the same number of columns on every line, "
            f"got {sorted(widths)} in {path}"
        )
    if header is not None and rows and len(header) != len(rows[0]):
        raise ValueError(
            f"target file header must name every column ({len(rows[0])}), got "
            f"{len(header)} names in {path}"
        )
    return header, np.asarray(rows, dtype=float)


def _select_columns(data, header, columns, source):
    if columns is None:
        return data[:, 1:]
    if isinstance(columns, (str, int, np.integer)):
        columns = [columns]
    idx = []
    for col in columns:
        if isinstance(col, str):
            if header is None or col not in header:
                names = "none (the file has no header)" if header is None else ", ".join(header)
                raise ValueError(f"columns must name columns of the file ({names}), got {col!r}")
            idx.append(header.index(col))
        else:
            col = int(col)
            if not 1 <= col < data.shape[1]:
                raise ValueError(
                    f"columns must be data column indices in 1..{data.shape[1] - 1} "
                    f"(column 0 is time), got {col} for {source}"
                )
            idx.append(col)
    return data[:, idx]


def read_target(path_or_array, tmin=None, tmax=None, average_columns=True, columns=None):
    """Read a recorded dipole waveform to fit.

    Parameters
    ----------
    path_or_array : str | PathLike | array of float, shape (n_times, 1 + n_cols)
        A whitespace text file (HNN style, no header), a CSV file with a
        header, or an array. Column 0 is time (ms); the others are dipole
        values (nAm), one per trial.
    tmin, tmax : float | None
        Keep only samples with ``tmin <= t <= tmax`` (ms). The window must
        lie inside the data.
    average_columns : bool
        If True (default) several data columns are averaged and only the
        mean is kept; if False they are also kept as ``Target.trials``.
    columns : int | str | list | None
        Which data columns to use (indices counted with time as column 0,
        or header names); default: all columns after the first.

    Returns
    -------
    target : Target
    """
    check_bool(average_columns, "average_columns")
    if isinstance(path_or_array, (str, PathLike)):
        path = Path(path_or_array)
        if not path.is_file():
            raise ValueError(f"path_or_array must be an existing file, got {str(path)!r}")
        header, data = _read_table(path)
        source = str(path)
    else:
        check_type(path_or_array, (np.ndarray, list, tuple), "path_or_array",
                   "a file path or an array")
        header, source = None, "<array>"
        data = check_finite_array(path_or_array, "target array", ndim=2)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(
            f"target data must have a time column and at least one data column, "
            f"got shape {data.shape} from {source}"
        )
    data = check_finite_array(data, f"target data from {source}", ndim=2)
    times = check_increasing(data[:, 0], f"target times from {source}")
    cols = _select_columns(data, header, columns, source)
    values = cols.mean(axis=1) if cols.shape[1] > 1 else cols[:, 0].copy()
    trials = None if (average_columns or cols.shape[1] == 1) else cols.copy()
    target = Target(times, values, trials, source)
    if tmin is not None or tmax is not None:
        target = target.window(tmin, tmax)
    return target
