"""Current-dipole time courses: the :class:`Dipole` container, its
operations (smoothing, scaling, filtering, averaging) and text I/O.

A dipole holds one time axis (ms) and one or more layer waveforms (nAm):
``'agg'`` (the sum over layers), ``'L2'`` (layer 2/3 pyramidal cells) and
``'L5'`` (layer 5 pyramidal cells). Recorded data usually has ``'agg'`` only.

This module is pure Python and never reaches NEURON: simulations, which
return Dipoles, live in :mod:`hnnfit.simulation`.
"""
import copy
import os
import re
from pathlib import Path

import numpy as np

from . import viz
from ._textio import read_text_table
from .validation import (
    check_finite_array,
    check_increasing,
    check_int,
    check_number,
    check_positive,
    check_type,
)

LAYERS = ("agg", "L2", "L5")

# Baseline offsets of the reference model's raw (fA*m) dipole, per pyramidal
# cell of one layer. With no input, the L2 dipole sits at a constant offset,
# while the L5 dipole drifts: constant up to 37 ms, then two linear pieces
# fitted over [37, 750) ms and [750, ...) ms. These numbers are facts of the
# reference implementation (hnn-core), needed to reproduce its raw output.
_L2_OFFSET_PER_CELL = 0.0443
_L5_OFFSET_PER_CELL = -49.0502
_L5_T_CONST = 37.0
_L5_T_BREAK = 750.0
_L5_SLOPE_EARLY, _L5_INTERCEPT_EARLY = 3.4770508e-3, -51.231085
_L5_SLOPE_LATE, _L5_INTERCEPT_LATE = 1.01e-4, -48.412078

_FAM_TO_NAM = 1e-6

_FILE_MAGIC = "# hnnfit dipole"


def _as_layer_dict(data, n_times):
    """Turn the ``data`` argument of :class:`Dipole` into a dict of float arrays."""
    if isinstance(data, dict):
        if "agg" not in data:
            raise ValueError(
                f"data must contain an 'agg' layer, got layers {sorted(data)}"
            )
        layers = {}
        for key, values in data.items():
            check_type(key, str, "data layer name")
            arr = check_finite_array(values, f"data[{key!r}]", ndim=1)
            layers[key] = arr.copy()
    else:
        arr = check_finite_array(data, "data")
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] not in (1, 3):
            raise ValueError(
                "data must be a dict of layers or an array of shape (n_times, 1) "
                f"or (n_times, 3) with columns agg, L2, L5, got shape {arr.shape}"
            )
        names = LAYERS if arr.shape[1] == 3 else LAYERS[:1]
        layers = {name: arr[:, i].copy() for i, name in enumerate(names)}
    for key, arr in layers.items():
        if len(arr) != n_times:
            raise ValueError(
                f"data[{key!r}] must have one value per time point ({n_times}), "
                f"got {len(arr)}"
            )
    return layers


class Dipole:
    """Current-dipole moment time courses of one trial (or an average).

    Parameters
    ----------
    times : array-like, shape (n_times,)
        Sample times (ms), strictly increasing, at least two samples.
    data : dict of array-like | array-like, shape (n_times,) or (n_times, 1 or 3)
        Dipole moment (nAm). A dict maps layer names (``'agg'`` required,
        usually also ``'L2'`` and ``'L5'``) to waveforms; an array has the
        columns ``agg`` (one column) or ``agg, L2, L5`` (three columns).
    nave : int
        Number of trials averaged into this dipole (default 1).

    Attributes
    ----------
    times : ndarray, shape (n_times,)
        Sample times (ms).
    data : dict of ndarray
        Layer name -> dipole moment (nAm, times ``scale_applied``).
    sfreq : float
        Sampling frequency (Hz), from the first time step.
    nave : int
        Number of averaged trials.
    scale_applied : float
        Product of all factors applied with :meth:`scale`.

    Notes
    -----
    :meth:`smooth`, :meth:`savgol_filter` and :meth:`scale` work in place and
    return the dipole itself, so they chain:
    ``dpl.copy().smooth(30).scale(3000)``.
    """

    def __init__(self, times, data, nave=1):
        times = check_increasing(times, "times")
        if len(times) < 2:
            raise ValueError(f"times must have at least 2 samples, got {len(times)}")
        self.times = times.copy()
        self.data = _as_layer_dict(data, len(self.times))
        self.nave = check_int(nave, "nave", low=1)
        # same definition as the reference so that window sizes in samples,
        # derived from it, round identically
        self.sfreq = 1000.0 / (self.times[1] - self.times[0])
        self.scale_applied = 1

    def __repr__(self):
        return (
            f"<Dipole | {len(self.times)} samples, {self.times[0]:g}-"
            f"{self.times[-1]:g} ms, layers {list(self.data)}, nave={self.nave}>"
        )

    def __eq__(self, other):
        if not isinstance(other, Dipole):
            return NotImplemented
        return (
            np.array_equal(self.times, other.times)
            and list(self.data) == list(other.data)
            and all(np.array_equal(self.data[k], other.data[k]) for k in self.data)
            and self.nave == other.nave
            and self.scale_applied == other.scale_applied
        )

    __hash__ = None

    def copy(self):
        """Return an independent (deep) copy of this dipole.

        Returns
        -------
        dpl : Dipole
            The copy.
        """
        return copy.deepcopy(self)

    # ------------------------------------------------------------------
    # operations (in place, chainable)

    def scale(self, factor):
        """Multiply every layer by ``factor``, in place.

        Parameters
        ----------
        factor : float
            Scaling factor (dimensionless), e.g. the number of pyramidal
            cells a simulated column stands for.

        Returns
        -------
        self : Dipole
            This dipole, for chaining; ``scale_applied`` is multiplied by
            ``factor``.
        """
        factor = check_number(factor, "factor")
        for key in self.data:
            self.data[key] *= factor
        self.scale_applied *= factor
        return self

    def _window_samples(self, window_len):
        window_len = check_positive(window_len, "window_len")
        n_samples = int(np.round(1e-3 * window_len * self.sfreq))
        if n_samples < 1:
            raise ValueError(
                f"window_len must span at least one sample ({1000.0 / self.sfreq:g} ms "
                f"at sfreq={self.sfreq:g} Hz), got {window_len} ms"
            )
        if n_samples > len(self.times):
            raise ValueError(
                f"window_len must not be longer than the signal "
                f"({len(self.times)} samples), got {window_len} ms = {n_samples} samples"
            )
        return n_samples

    def smooth(self, window_len):
        """Smooth every layer with a normalised Hamming window, in place.

        Each layer is convolved with a Hamming window of
        ``round(window_len * sfreq / 1000)`` samples whose weights sum to 1;
        the output keeps the input's length and is aligned with it (the
        central part of the full convolution, the signal being taken as
        zero outside the recorded interval). This is the reference
        implementation's smoothing.

        Parameters
        ----------
        window_len : float
            Window length (ms), > 0 and not longer than the signal.

        Returns
        -------
        self : Dipole
            This dipole, for chaining.
        """
        n_samples = self._window_samples(window_len)
        window = np.hamming(n_samples)
        window /= window.sum()
        for key in self.data:
            self.data[key] = np.convolve(self.data[key], window, mode="same")
        return self

    def savgol_filter(self, h_freq):
        """Low-pass every layer with a Savitzky-Golay filter, in place.

        A 5th-order polynomial is fitted in a sliding window of
        ``2 * (round(sfreq / h_freq) // 2) + 1`` samples (the reference's
        choice); the cut-off is only approximate.

        Parameters
        ----------
        h_freq : float
            Approximate high cut-off frequency (Hz), > 0 and below half the
            sampling frequency.

        Returns
        -------
        self : Dipole
            This dipole, for chaining.
        """
        from scipy.signal import savgol_filter

        h_freq = check_positive(h_freq, "h_freq")
        nyquist = self.sfreq / 2.0
        if h_freq >= nyquist:
            raise ValueError(
                f"h_freq must be < half the sampling frequency ({nyquist:g} Hz), "
                f"got {h_freq}"
            )
        polyorder = 5
        n_window = (int(np.round(self.sfreq / h_freq)) // 2) * 2 + 1
        if n_window <= polyorder:
            raise ValueError(
                f"h_freq must be <= {self.sfreq / (polyorder + 1):g} Hz so that the "
                f"filter window exceeds the polynomial order {polyorder}, got {h_freq}"
            )
        if n_window > len(self.times):
            raise ValueError(
                f"h_freq must give a filter window no longer than the signal "
                f"({len(self.times)} samples), got {h_freq} Hz = {n_window} samples"
            )
        for key in self.data:
            self.data[key] = savgol_filter(
                self.data[key], window_length=n_window, polyorder=polyorder
            )
        return self

    # ------------------------------------------------------------------
    # conversion of the simulator's raw output

    def _baseline_renormalize(self, n_pyr_x, n_pyr_y):
        """Remove the reference model's resting baseline from a raw dipole.

        Applies to the raw per-layer dipole in fA*m, before
        :meth:`_convert_fAm_to_nAm`. The L2 offset is constant; the L5
        offset is piecewise in time (see the module constants). ``'agg'``
        is then recomputed as ``L2 + L5``.

        Parameters
        ----------
        n_pyr_x, n_pyr_y : int
            Pyramidal grid size per layer (cells).
        """
        n_pyr_x = check_int(n_pyr_x, "n_pyr_x", low=1)
        n_pyr_y = check_int(n_pyr_y, "n_pyr_y", low=1)
        for layer in ("L2", "L5"):
            if layer not in self.data:
                raise ValueError(
                    f"data must contain layer {layer!r} for baseline renormalisation, "
                    f"got layers {list(self.data)}"
                )
        n_pyr = n_pyr_x * n_pyr_y
        t = self.times
        self.data["L2"] -= n_pyr * _L2_OFFSET_PER_CELL

        l5 = self.data["L5"]
        early = t <= _L5_T_CONST
        middle = (t > _L5_T_CONST) & (t < _L5_T_BREAK)
        late = t >= _L5_T_BREAK
        l5[early] -= n_pyr * _L5_OFFSET_PER_CELL
        l5[middle] -= n_pyr * (_L5_SLOPE_EARLY * t[middle] + _L5_INTERCEPT_EARLY)
        l5[late] -= n_pyr * (_L5_SLOPE_LATE * t[late] + _L5_INTERCEPT_LATE)

        self.data["agg"] = self.data["L2"] + self.data["L5"]
        return self

    def _convert_fAm_to_nAm(self):
        """Convert every layer from fA*m (the simulator's unit) to nAm."""
        for key in self.data:
            self.data[key] *= _FAM_TO_NAM
        return self

    # ------------------------------------------------------------------
    # plots

    def plot(self, tmin=None, tmax=None, layer="agg", decim=None, ax=None,
             color=None, show=True):
        """Plot one layer (or a list of layers) of the dipole.

        Parameters
        ----------
        tmin, tmax : float | None
            Time limits of the plot (ms); default the whole signal.
        layer : str | list of str
            ``'agg'``, ``'L2'`` or ``'L5'``; a list gives one axis per layer.
        decim : int | list of int | None
            Decimation factor(s) applied (with anti-alias filtering) before
            plotting.
        ax : matplotlib Axes | list of Axes | None
            Where to plot; a new figure if None.
        color : color | None
            Line colour; matplotlib's cycle if None.
        show : bool
            Call ``plt.show()`` (a no-op with non-interactive backends).

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        return viz.plot_dipole(self, tmin=tmin, tmax=tmax, ax=ax, layer=layer,
                               decim=decim, color=color, show=show)

    def plot_psd(self, fmin=0, fmax=None, tmin=None, tmax=None, layer="agg",
                 color=None, label=None, ax=None, show=True):
        """Plot the power spectral density of one layer.

        See :func:`hnnfit.viz.plot_psd` for the parameters (frequencies in
        Hz, times in ms).

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        return viz.plot_psd(self, fmin=fmin, fmax=fmax, tmin=tmin, tmax=tmax,
                            layer=layer, color=color, label=label, ax=ax, show=show)

    # ------------------------------------------------------------------
    # I/O

    def write(self, fname):
        """Write the dipole to a text file in hnnfit's format.

        The file starts with comment lines holding ``nave`` and
        ``scale_applied``, then a header row (``time_ms`` followed by the
        layer names, ``agg L2 L5`` for a simulated dipole) and one
        tab-separated row per sample. Numbers are written with full
        precision, so :func:`read_dipole` gives back an equal dipole.

        Parameters
        ----------
        fname : str | pathlib.Path
            Output file path (any extension; ``.txt`` recommended).
        """
        check_type(fname, (str, os.PathLike), "fname")
        layers = list(self.data)
        for name in layers:
            if not re.fullmatch(r"\w+", name):
                raise ValueError(
                    f"layer names must be alphanumeric to be written, got {name!r}"
                )
        lines = [
            _FILE_MAGIC,
            f"# nave: {self.nave}",
            f"# scale_applied: {float(self.scale_applied)!r}",
            "\t".join(["time_ms", *layers]),
        ]
        columns = [self.times] + [self.data[name] for name in layers]
        for row in zip(*columns):
            lines.append("\t".join(repr(float(v)) for v in row))
        Path(fname).write_text("\n".join(lines) + "\n")


def _parse_numeric_row(tokens):
    try:
        return [float(tok) for tok in tokens]
    except ValueError:
        return None


def read_dipole(fname):
    """Read a dipole from a text file.

    Reads hnnfit's own files (see :meth:`Dipole.write`), the reference
    implementation's tab-separated four-column files, CSV files with a
    ``time_ms,agg,L2,L5`` header, and recorded waveforms with two columns
    (time in ms, dipole in nAm), whitespace- or comma-separated.

    Parameters
    ----------
    fname : str | pathlib.Path
        Path of the file.

    Returns
    -------
    dpl : Dipole
        The dipole; a two-column file gives an ``'agg'``-only dipole.
    """
    check_type(fname, (str, os.PathLike), "fname")
    path = Path(fname)
    if not path.is_file():
        raise FileNotFoundError(f"dipole file not found: {path}")
    meta, lines = read_text_table(path)
    header = None
    rows = []
    for line_no, text, tokens in lines:
        values = _parse_numeric_row(tokens)
        if values is None:
            if header is None and not rows:
                header = tokens
                continue
            raise ValueError(
                f"dipole file {path} must contain only numbers after its header, "
                f"got {text[:60]!r} on line {line_no}"
            )
        if rows and len(values) != len(rows[0]):
            raise ValueError(
                f"dipole file {path} must have the same number of columns on every "
                f"row, got {len(values)} instead of {len(rows[0])} on line {line_no}"
            )
        rows.append(values)
    if not rows:
        raise ValueError(f"dipole file {path} must contain data rows, got none")
    table = np.array(rows, dtype=float)
    n_cols = table.shape[1]
    if header is not None:
        if len(header) != n_cols:
            raise ValueError(
                f"dipole file {path} must have one header name per column, got "
                f"{len(header)} names for {n_cols} columns"
            )
        names = header[1:]
    elif n_cols == 2:
        names = ["agg"]
    elif n_cols == 4:
        names = list(LAYERS)
    else:
        raise ValueError(
            f"dipole file {path} must have 2 columns (time, dipole) or 4 columns "
            f"(time, agg, L2, L5), got {n_cols}"
        )
    if n_cols < 2:
        raise ValueError(f"dipole file {path} must have at least 2 columns, got {n_cols}")
    if len(names) == 1 and names[0] not in LAYERS:
        # a two-column recording with its own column label
        names = ["agg"]
    data = {name: table[:, i + 1] for i, name in enumerate(names)}
    nave = int(meta["nave"]) if "nave" in meta else 1
    dpl = Dipole(table[:, 0], data, nave=nave)
    if "scale_applied" in meta:
        scale = float(meta["scale_applied"])
        dpl.scale_applied = int(scale) if scale.is_integer() else scale
    return dpl


def average_dipoles(dpls):
    """Average a list of dipoles sample by sample.

    Parameters
    ----------
    dpls : list of Dipole
        Dipoles with identical time axes, layers and ``scale_applied``.
        Dipoles that are themselves averages are weighted by their ``nave``.

    Returns
    -------
    dpl : Dipole
        The average; its ``nave`` is the sum of the inputs' ``nave``.
    """
    check_type(dpls, (list, tuple), "dpls")
    if len(dpls) == 0:
        raise ValueError("dpls must contain at least one Dipole, got an empty list")
    for idx, dpl in enumerate(dpls):
        check_type(dpl, Dipole, f"dpls[{idx}]")
    first = dpls[0]
    for idx, dpl in enumerate(dpls[1:], start=1):
        if not np.array_equal(dpl.times, first.times):
            raise ValueError(
                f"dpls must share the same times, got dpls[{idx}].times differing "
                f"from dpls[0].times"
            )
        if list(dpl.data) != list(first.data):
            raise ValueError(
                f"dpls must have the same layers, got {list(dpl.data)} at index {idx} "
                f"and {list(first.data)} at index 0"
            )
        if dpl.scale_applied != first.scale_applied:
            raise ValueError(
                f"dpls must all be scaled equally, got scale_applied "
                f"{dpl.scale_applied} at index {idx} and {first.scale_applied} at index 0"
            )
    naves = np.array([dpl.nave for dpl in dpls])
    avg = {}
    for key in first.data:
        stack = np.array([dpl.data[key] for dpl in dpls])
        if (naves == naves[0]).all():
            avg[key] = stack.mean(axis=0)
        else:
            avg[key] = np.average(stack, axis=0, weights=naves)
    out = Dipole(first.times, avg, nave=int(naves.sum()))
    out.scale_applied = first.scale_applied
    return out

