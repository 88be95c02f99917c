"""Plots of hnnfit's outputs and networks.

Every function draws with matplotlib and returns the Figure it drew in.
Nothing here needs a display: ``show=True`` only calls ``plt.show()``,
which does nothing under the non-interactive Agg backend.

Connection records of ``net.connectivity`` are read both as mappings
(``conn['gid_pairs']``) and as objects (``conn.gid_pairs``), so plots work
with any record type honouring ARCHITECTURE.md.
"""
from itertools import cycle

import numpy as np

from .params import CELL_TYPES
from .validation import check_bool, check_int, check_number, check_type


_CELL_STYLE = {
    "L2_basket": ("tab:purple", "x"),
    "L2_pyramidal": ("tab:cyan", "^"),
    "L5_basket": ("tab:red", "x"),
    "L5_pyramidal": ("tab:blue", "^"),
}

_LAYER_TITLES = {"agg": "Aggregate (L2/3 + L5)", "L2": "L2/3", "L5": "L5"}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _show(show):
    if show:
        _plt().show()


def _new_axes(ax, nrows=1, **kwargs):
    """Return (fig, list of axes), creating a figure when ``ax`` is None."""
    if ax is None:
        fig, axes = _plt().subplots(nrows, 1, squeeze=False, **kwargs)
        return fig, list(axes[:, 0])
    if isinstance(ax, np.ndarray):
        axes = list(ax.ravel())
    elif isinstance(ax, (list, tuple)):
        axes = list(ax)
    else:
        axes = [ax]
    if len(axes) != nrows:
        raise ValueError(f"ax must hold {nrows} axes, got {len(axes)}")
    return axes[0].get_figure(), axes


def _conn_get(conn, key):
    """Field ``key`` of a connection record (mapping or attribute style)."""
    try:
        return conn[key]
    except (TypeError, KeyError, IndexError):
        pass
    try:
        return getattr(conn, key)
    except AttributeError:
        raise ValueError(
            f"connection record must have a {key!r} field, got {type(conn).__name__}"
        ) from None


def _get_connection(net, conn_idx):
    conn_idx = check_int(conn_idx, "conn_idx", low=0)
    n_conn = len(net.connectivity)
    if conn_idx >= n_conn:
        raise ValueError(
            f"conn_idx must be < {n_conn} (the number of connections), got {conn_idx}"
        )
    return conn_idx, net.connectivity[conn_idx]


def _scale_label(base, scale_applied):
    if scale_applied == 1:
        return f"{base} (nAm)"
    return f"{base}\n(nAm $\\times$ {scale_applied:g})"


def _decimate(data, times, decim):
    from scipy.signal import decimate

    factors = decim if isinstance(decim, (list, tuple)) else [decim]
    for factor in factors:
        factor = check_int(factor, "decim", low=1)
        if factor > 1:
            data = decimate(data, factor)
            times = times[::factor]
    return data, times


# viz is a leaf module: it recognises dipoles and spike records by the
# attributes it draws from, so the data classes can call into it without
# an import cycle.
_DIPOLE_ATTRS = ("times", "data", "scale_applied", "nave")
_CELL_RESPONSE_ATTRS = ("times", "spike_times", "spike_gids", "spike_types")


def _is_dipole(obj):
    return all(hasattr(obj, attr) for attr in _DIPOLE_ATTRS) and isinstance(obj.data, dict)


def _fmt_type(value):
    return f"{type(value).__name__} {value!r}"[:80]


def _dipole_list(dpl):
    if _is_dipole(dpl):
        return [dpl]
    if not isinstance(dpl, (list, tuple)):
        raise TypeError(f"dpl must be a Dipole or list of Dipole, got {_fmt_type(dpl)}")
    if len(dpl) == 0:
        raise ValueError("dpl must contain at least one Dipole, got an empty list")
    for idx, item in enumerate(dpl):
        if not _is_dipole(item):
            raise TypeError(f"dpl[{idx}] must be a Dipole, got {_fmt_type(item)}")
    return list(dpl)


def _check_cell_response(cell_response):
    if not all(hasattr(cell_response, attr) for attr in _CELL_RESPONSE_ATTRS):
        raise TypeError(
            f"cell_response must be a CellResponse, got {_fmt_type(cell_response)}")


def _average(dpls, layer):
    """The ``nave``-weighted average of one layer over ``dpls`` (same times)."""
    first = dpls[0]
    for idx, item in enumerate(dpls[1:], start=1):
        if len(item.times) != len(first.times) or not np.array_equal(item.times, first.times):
            raise ValueError(
                f"dpl must share the same times to be averaged, got dpl[{idx}].times "
                f"differing from dpl[0].times")
    naves = np.array([item.nave for item in dpls])
    stack = np.array([item.data[layer] for item in dpls])
    if (naves == naves[0]).all():
        return stack.mean(axis=0)
    return np.average(stack, axis=0, weights=naves)


def _lighter(color, amount=0.5):
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * amount)


# ----------------------------------------------------------------------
# dipoles

def plot_dipole(dpl, tmin=None, tmax=None, ax=None, layer="agg", decim=None,
                color=None, label=None, average=False, show=True):
    """Plot dipole time courses.

    Parameters
    ----------
    dpl : Dipole | list of Dipole
        Dipole(s) to draw, one line each; all must have the same
        ``scale_applied``.
    tmin, tmax : float | None
        Time limits (ms); default the whole signal.
    ax : matplotlib Axes | list of Axes | None
        Axes to draw into (one per layer); a new figure if None.
    layer : str | list of str
        ``'agg'``, ``'L2'`` or ``'L5'``; a list gives one axis per layer.
    decim : int | list of int | None
        Decimation factor(s) (:func:`scipy.signal.decimate`, applied in turn).
    color : color | None
        Colour of all lines; if None each dipole takes the next colour of
        matplotlib's cycle (the average, if drawn, is black).
    label : str | list of str | None
        Legend label(s): one per dipole, or the average's label when
        ``average`` is True (default ``'average'``).
    average : bool
        Also draw the average over ``dpl`` (bold), the trials lighter.
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    dpls = _dipole_list(dpl)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    for name in layers:
        check_type(name, str, "layer")
        for idx, item in enumerate(dpls):
            if name not in item.data:
                raise ValueError(
                    f"layer must be one of the dipole's layers {list(item.data)}, got "
                    f"{name!r} (dpl[{idx}])"
                )
    average = check_bool(average, "average")
    scale = dpls[0].scale_applied
    for idx, item in enumerate(dpls):
        if item.scale_applied != scale:
            raise ValueError(
                f"dpl must all be scaled equally, got scale_applied {item.scale_applied} "
                f"at index {idx} and {scale} at index 0"
            )
    tmin = check_number(tmin, "tmin", allow_none=True)
    tmax = check_number(tmax, "tmax", allow_none=True)
    if tmin is not None and tmax is not None and tmax <= tmin:
        raise ValueError(f"tmax must be > tmin ({tmin}), got {tmax}")

    labels = [None] * len(dpls)
    avg_label = "average"
    if isinstance(label, (list, tuple)):
        if average or len(label) != len(dpls):
            raise ValueError(
                f"label must be a str (or a list of {len(dpls)} labels without "
                f"average), got {label!r}"
            )
        labels = list(label)
    elif label is not None:
        check_type(label, str, "label")
        if average:
            avg_label = label
        elif len(dpls) == 1:
            labels = [label]
        else:
            labels = [f"{label} {i}" for i in range(len(dpls))]

    fig, axes = _new_axes(ax, len(layers), sharex=True, sharey=True,
                          constrained_layout=True,
                          figsize=(6.4, max(4.8, 2.4 * len(layers))))
    for name, this_ax in zip(layers, axes):
        colors = cycle(_plt().rcParams["axes.prop_cycle"].by_key()["color"])
        for item, this_label in zip(dpls, labels):
            data, times = item.data[name], item.times
            if decim is not None:
                data, times = _decimate(data, times, decim)
            line_color = color if color is not None else next(colors)
            if average:
                line_color = _lighter(line_color if color is not None else "k")
            this_ax.plot(times, data, color=line_color, label=this_label,
                         lw=1.0, alpha=0.7 if average else 1.0)
        if average:
            data, times = _average(dpls, name), dpls[0].times
            if decim is not None:
                data, times = _decimate(data, times, decim)
            this_ax.plot(times, data, color=color if color is not None else "k",
                         lw=1.8, label=avg_label)
        t0 = dpls[0].times[0] if tmin is None else tmin
        t1 = dpls[0].times[-1] if tmax is None else tmax
        this_ax.set_xlim(t0, t1)
        if this_ax is axes[-1]:
            this_ax.set_xlabel("Time (ms)")
        this_ax.set_ylabel(_scale_label("Dipole moment", scale))
        this_ax.set_title(_LAYER_TITLES.get(name, name))
        if average or any(lbl is not None for lbl in labels):
            this_ax.legend()
    _show(show)
    return fig


def plot_psd(dpl, fmin=0, fmax=None, tmin=None, tmax=None, layer="agg",
             color=None, label=None, ax=None, show=True):
    """Plot the power spectral density of dipole time courses.

    The PSD is a Hamming-windowed periodogram (:func:`scipy.signal.periodogram`)
    of the chosen window of each dipole; for a list of dipoles (trials) the
    powers are averaged, which acts like Welch's method over trials.

    Parameters
    ----------
    dpl : Dipole | list of Dipole
        Dipole(s), all with the same sampling frequency and scaling.
    fmin, fmax : float | None
        Frequency limits of the plot (Hz); ``fmax`` defaults to Nyquist.
    tmin, tmax : float | None
        Time window (ms) of data to use; default the whole signal.
    layer : str
        ``'agg'``, ``'L2'`` or ``'L5'``.
    color : color | None
        Line colour.
    label : str | None
        Legend label.
    ax : matplotlib Axes | None
        Axes to draw into; a new figure if None.
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from scipy.signal import periodogram

    dpls = _dipole_list(dpl)
    check_type(layer, str, "layer")
    fmin = check_number(fmin, "fmin", low=0)
    fmax = check_number(fmax, "fmax", allow_none=True)
    if fmax is not None and fmax <= fmin:
        raise ValueError(f"fmax must be > fmin ({fmin}), got {fmax}")
    sfreq, scale = dpls[0].sfreq, dpls[0].scale_applied
    powers = []
    for idx, item in enumerate(dpls):
        if layer not in item.data:
            raise ValueError(
                f"layer must be one of the dipole's layers {list(item.data)}, got "
                f"{layer!r}"
            )
        if item.sfreq != sfreq or item.scale_applied != scale:
            raise ValueError(
                f"dpl must share sampling frequency and scaling, got dpl[{idx}] with "
                f"sfreq={item.sfreq}, scale_applied={item.scale_applied}"
            )
        keep = np.ones(len(item.times), dtype=bool)
        if tmin is not None:
            keep &= item.times >= tmin
        if tmax is not None:
            keep &= item.times <= tmax
        data = item.data[layer][keep]
        if len(data) < 2:
            raise ValueError(
                f"tmin/tmax must leave at least 2 samples, got {len(data)} "
                f"(tmin={tmin}, tmax={tmax})"
            )
        freqs, pxx = periodogram(data, fs=sfreq, window="hamming", nfft=len(data))
        powers.append(pxx)
    n_min = min(len(p) for p in powers)
    power = np.mean([p[:n_min] for p in powers], axis=0)
    freqs = freqs[:n_min]

    fig, (this_ax,) = _new_axes(ax, 1, constrained_layout=True)
    this_ax.plot(freqs, power, color=color, label=label)
    this_ax.set_xlim(fmin, fmax if fmax is not None else freqs[-1])
    this_ax.set_xlabel("Frequency (Hz)")
    unit = "nAm" if scale == 1 else f"nAm $\\times$ {scale:g}"
    this_ax.set_ylabel(f"Power spectral density\n([{unit}]$^2$ Hz$^{{-1}}$)")
    if label is not None:
        this_ax.legend()
    _show(show)
    return fig


# ----------------------------------------------------------------------
# spikes

def _trial_list(cell_response, trial_idx):
    n_trials = len(cell_response.spike_times)
    if trial_idx is None:
        return list(range(n_trials))
    idxs = [trial_idx] if not isinstance(trial_idx, (list, tuple, range)) else list(trial_idx)
    for idx in idxs:
        check_int(idx, "trial_idx", low=0, high=max(n_trials - 1, 0))
    if n_trials == 0:
        raise ValueError("trial_idx must select a trial, got a CellResponse without trials")
    return [int(i) for i in idxs]


def _gather_spikes(cell_response, trials):
    times, gids, types = [], [], []
    for idx in trials:
        st = cell_response.spike_times[idx]
        sty = cell_response.spike_types[idx]
        if len(sty) != len(st):
            raise ValueError(
                "cell_response must have spike types; call update_types(gid_ranges) "
                "first"
            )
        times.extend(st)
        gids.extend(cell_response.spike_gids[idx])
        types.extend(sty)
    return (np.asarray(times, dtype=float), np.asarray(gids, dtype=int),
            np.asarray(types, dtype=str))


def _time_end(cell_response, times):
    if len(cell_response.times) > 0:
        return float(cell_response.times[-1])
    return float(times.max()) if len(times) else 1.0


def plot_spikes_raster(cell_response, trial_idx=None, ax=None, cell_types=None,
                       show=True):
    """Raster plot of the network cells' spikes, coloured by cell type.

    Each cell is one row (gids increasing downwards); drive cells are not
    drawn.

    Parameters
    ----------
    cell_response : CellResponse
        The spikes (e.g. ``net.cell_response``).
    trial_idx : int | list of int | None
        Trial(s) to pool; all if None.
    ax : matplotlib Axes | None
        Axes to draw into; a new figure if None.
    cell_types : list of str | None
        Cell types to draw (default the four Jones 2009 types).
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    _check_cell_response(cell_response)
    trials = _trial_list(cell_response, trial_idx)
    times, gids, types = _gather_spikes(cell_response, trials)
    if cell_types is None:
        cell_types = list(CELL_TYPES)
    check_type(cell_types, (list, tuple), "cell_types", "list of str")

    fig, (this_ax,) = _new_axes(ax, 1, constrained_layout=True)
    default_colors = cycle(_plt().rcParams["axes.prop_cycle"].by_key()["color"])
    handles = []
    for cell_type in cell_types:
        color = next(default_colors)
        mask = types == cell_type
        type_gids = np.unique(gids[mask])
        rows = [times[mask & (gids == gid)] for gid in type_gids]
        if rows:
            coll = this_ax.eventplot(rows, lineoffsets=-type_gids, colors=color,
                                     linelengths=1.0)
            handle = coll[0]
        else:
            # keep the type in the legend even when it never fired
            handle = this_ax.plot([], [], "|", color=color)[0]
        handle.set_label(f"{cell_type} spikes")
        handles.append(handle)
    this_ax.legend(handles=handles, loc="lower left", framealpha=0.5)
    this_ax.set_xlabel("Time (ms)")
    this_ax.set_ylabel("Cell (gid)")
    this_ax.set_yticklabels([])
    this_ax.tick_params(axis="y", length=0)
    this_ax.set_title("Spike raster")
    this_ax.set_xlim(0, _time_end(cell_response, times))
    _show(show)
    return fig


def _spike_groups(spike_types, unique_types):
    """Map group label -> list of concrete spike types it gathers."""
    cell_types = set(CELL_TYPES)
    inputs = [t for t in unique_types if t not in cell_types]
    if spike_types is None:
        spike_types = inputs if inputs else list(unique_types)
    if isinstance(spike_types, str):
        spike_types = {spike_types: [spike_types]}
    elif isinstance(spike_types, (list, tuple)):
        for item in spike_types:
            check_type(item, str, "spike_types element")
        spike_types = {item: [item] for item in spike_types}
    elif isinstance(spike_types, dict):
        normalised = {}
        for key, prefixes in spike_types.items():
            if isinstance(prefixes, str):
                prefixes = [prefixes]
            check_type(prefixes, (list, tuple), f"spike_types[{key!r}]", "list of str")
            normalised[key] = list(prefixes)
        spike_types = normalised
    else:
        raise TypeError(
            f"spike_types must be an instance of str, list or dict, got "
            f"{type(spike_types).__name__} {spike_types!r}"
        )
    groups, owner = {}, {}
    for label, prefixes in spike_types.items():
        members = []
        for prefix in prefixes:
            found = [t for t in unique_types if t.startswith(prefix)]
            if not found:
                raise ValueError(
                    f"spike_types must name (prefixes of) present spike types "
                    f"{list(unique_types)}, got {prefix!r}"
                )
            for t in found:
                if t in owner and owner[t] != label:
                    raise ValueError(
                        f"spike_types must map each spike type to one group, got "
                        f"{t!r} in both {owner[t]!r} and {label!r}"
                    )
                owner[t] = label
                if t not in members:
                    members.append(t)
        groups[label] = members
    return groups


def plot_spikes_hist(cell_response, trial_idx=None, ax=None, spike_types=None,
                     bin_width=5, color=None, show=True):
    """Histogram of spike times, one bar series per spike-type group.

    Parameters
    ----------
    cell_response : CellResponse
        The spikes (e.g. ``net.cell_response``).
    trial_idx : int | list of int | None
        Trial(s) to pool; all if None.
    ax : matplotlib Axes | None
        Axes to draw into; a new figure if None.
    spike_types : str | list of str | dict | None
        Which spikes to histogram. A string is a type or type prefix, so
        ``'evprox'`` gathers ``'evprox1'`` and ``'evprox2'`` into one
        series; a list gives one series per entry; a dict maps a label to a
        list of prefixes pooled under that label. None: each drive type
        separately if drives spiked, else each cell type.
    bin_width : float
        Bin width (ms).
    color : str | list of str | dict | None
        One colour, a cycle of colours, or label -> colour.
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    _check_cell_response(cell_response)
    bin_width = check_number(bin_width, "bin_width", low=0, low_inclusive=False)
    trials = _trial_list(cell_response, trial_idx)
    times, _, types = _gather_spikes(cell_response, trials)
    unique_types = sorted(set(types.tolist()))
    groups = _spike_groups(spike_types, unique_types)

    if color is None:
        colors = cycle(["r", "g", "b", "y", "m", "c"])
    elif isinstance(color, str):
        colors = cycle([color])
    elif isinstance(color, (list, tuple)):
        colors = cycle(color)
    elif isinstance(color, dict):
        missing = [label for label in groups if label not in color]
        if missing:
            raise ValueError(f"color must give a colour for every group, got none for {missing}")
        colors = None
    else:
        raise TypeError(f"color must be a str, list or dict, got {type(color).__name__}")

    t_end = _time_end(cell_response, times)
    bins = np.arange(0.0, t_end + bin_width, bin_width)
    fig, (this_ax,) = _new_axes(ax, 1, constrained_layout=True)
    for label, members in groups.items():
        data = times[np.isin(types, members)]
        this_color = color[label] if colors is None else next(colors)
        this_ax.hist(data, bins=bins, label=label, color=this_color)
    this_ax.set_xlim(0, t_end)
    this_ax.set_xlabel("Time (ms)")
    this_ax.set_ylabel("Counts")
    if groups:
        this_ax.legend()
    _show(show)
    return fig


# ----------------------------------------------------------------------
# networks

def _cell_type_names(net):
    names = list(getattr(net, "cell_types", {}) or [])
    if not names:
        names = [c for c in CELL_TYPES if c in net.pos_dict]
    return names


def plot_cells(net, ax=None, show=True):
    """3-D scatter of the network's cell positions by cell type.

    Parameters
    ----------
    net : Network
        Network with ``pos_dict`` (positions, um) and ``gid_ranges``.
    ax : mpl_toolkits.mplot3d.Axes3D | None
        3-D axes to draw into; a new figure if None.
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    plt = _plt()
    if ax is None:
        fig = plt.figure()
        ax = fig.add_subplot(111, projection="3d")
    elif getattr(ax, "name", None) != "3d":
        raise TypeError(f"ax must be a 3-D Axes, got {type(ax).__name__}")
    fig = ax.get_figure()
    for cell_type in _cell_type_names(net):
        pos = np.asarray(net.pos_dict[cell_type], dtype=float).reshape(-1, 3)
        n_gids = len(net.gid_ranges[cell_type])
        if len(pos) != n_gids:
            raise ValueError(
                f"net.pos_dict[{cell_type!r}] must have one position per gid "
                f"({n_gids}), got {len(pos)}"
            )
        color, marker = _CELL_STYLE.get(cell_type, ("k", "o"))
        ax.scatter(pos[:, 0], pos[:, 1], pos[:, 2], color=color, marker=marker,
                   s=40, label=cell_type)
    ax.set_xlabel("x position")
    ax.set_ylabel("y position")
    ax.set_zlabel("z position")
    ax.legend(loc="upper left", fontsize="small")
    _show(show)
    return fig


def _conn_weights(net, conn_idx):
    """(src_gid, target_gid) -> weight (uS) as the simulator would use it."""
    return {(int(s), int(t)): float(w) for s, t, w, _ in net.synaptic_netcons(conn_idx)}


def _conn_title(conn):
    return (f"{_conn_get(conn, 'src_type')} -> {_conn_get(conn, 'target_type')} "
            f"({_conn_get(conn, 'loc')}, {_conn_get(conn, 'receptor')})")


def plot_connectivity_matrix(net, conn_idx, ax=None, show_weight=False,
                             colorbar=True, colormap="Greys", show=True):
    """Source x target matrix of one connection rule.

    Parameters
    ----------
    net : Network
        The network.
    conn_idx : int
        Index into ``net.connectivity``.
    ax : matplotlib Axes | None
        Axes to draw into; a new figure if None.
    show_weight : bool
        If False (default), 1 marks a connection, 0 none; if True, entries
        are the distance-scaled weights (uS) from ``net.synaptic_netcons``.
    colorbar : bool
        Add a colour bar.
    colormap : str
        Matplotlib colormap name.
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    conn_idx, conn = _get_connection(net, conn_idx)
    show_weight = check_bool(show_weight, "show_weight")
    src_type = _conn_get(conn, "src_type")
    target_type = _conn_get(conn, "target_type")
    src_gids = np.asarray(list(net.gid_ranges[src_type]), dtype=int)
    target_gids = np.asarray(list(net.gid_ranges[target_type]), dtype=int)
    src_row = {int(g): i for i, g in enumerate(src_gids)}
    target_col = {int(g): i for i, g in enumerate(target_gids)}
    matrix = np.zeros((len(src_gids), len(target_gids)))
    weights = _conn_weights(net, conn_idx) if show_weight else None
    for src_gid, targets in _conn_get(conn, "gid_pairs").items():
        for target_gid in targets:
            value = weights[(int(src_gid), int(target_gid))] if show_weight else 1.0
            matrix[src_row[int(src_gid)], target_col[int(target_gid)]] = value

    fig, (this_ax,) = _new_axes(ax, 1)
    # anchor the colour scale at 0 so that an all-to-all rule does not
    # collapse to a single mid-grey
    vmax = matrix.max() if show_weight and matrix.max() > 0 else 1.0
    image = this_ax.imshow(matrix, cmap=colormap, interpolation="none",
                           aspect="auto", vmin=0.0, vmax=vmax)
    if colorbar:
        cbar = fig.colorbar(image, ax=this_ax)
        if show_weight:
            cbar.set_label("Weight (uS)")
        else:
            cbar.set_ticks([0.0, 1.0])
            cbar.set_ticklabels(["no", "yes"])
            cbar.set_label("Connected")
    this_ax.set_xlabel(
        f"{target_type} target gids ({target_gids[0]}-{target_gids[-1]})")
    this_ax.set_ylabel(f"{src_type} source gids ({src_gids[0]}-{src_gids[-1]})")
    this_ax.set_xticks([])
    this_ax.set_yticks([])
    this_ax.set_title(_conn_title(conn))
    _show(show)
    return fig


def plot_cell_connectivity(net, conn_idx, src_gid=None, axes=None,
                           colorbar=True, colormap="viridis", show=True):
    """Weights of one source cell's connections, drawn on the target grid.

    The right (or only) panel shows every target cell position (small
    crosses), the targets of ``src_gid`` coloured by their distance-scaled
    weight (uS, from ``net.synaptic_netcons``) and the source cell (red
    square). When the source is a network cell type, a left panel shows all
    source cells, those with connections under this rule highlighted;
    clicking one there (in an interactive backend) redraws its targets.

    Parameters
    ----------
    net : Network
        The network.
    conn_idx : int
        Index into ``net.connectivity``.
    src_gid : int | None
        Source gid; it must appear in the rule's ``gid_pairs``. Default:
        the smallest such gid.
    axes : list of matplotlib Axes | None
        Two axes (source, target) for a cell source, one for a drive
        source; a new figure if None.
    colorbar : bool
        Add a weight colour bar.
    colormap : str
        Matplotlib colormap name.
    show : bool
        Call ``plt.show()``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    conn_idx, conn = _get_connection(net, conn_idx)
    src_type = _conn_get(conn, "src_type")
    target_type = _conn_get(conn, "target_type")
    gid_pairs = _conn_get(conn, "gid_pairs")
    valid = sorted(int(g) for g in gid_pairs)
    if not valid:
        raise ValueError(f"connection {conn_idx} must have connections to plot, got none")
    if src_gid is None:
        src_gid = valid[0]
    src_gid = check_int(src_gid, "src_gid")
    if src_gid not in valid:
        raise ValueError(
            f"src_gid must be a source gid of connection {conn_idx} "
            f"({valid[0]}..{valid[-1]}, {len(valid)} gids), got {src_gid}"
        )
    is_cell_src = src_type in _cell_type_names(net)
    target_pos = np.asarray(net.pos_dict[target_type], dtype=float).reshape(-1, 3)
    target_start = list(net.gid_ranges[target_type])[0]
    src_gid_list = list(net.gid_ranges[src_type])
    src_pos = (np.asarray(net.pos_dict[src_type], dtype=float).reshape(-1, 3)
               if is_cell_src else None)
    weights = _conn_weights(net, conn_idx)

    n_panels = 2 if is_cell_src else 1
    plt = _plt()
    if axes is None:
        fig, axes = plt.subplots(1, n_panels, sharex=True, sharey=True,
                                 squeeze=False, figsize=(4.5 * n_panels + 1, 4))
        axes = list(axes[0])
    else:
        axes = list(np.ravel(axes)) if not isinstance(axes, (list, tuple)) else list(axes)
        if len(axes) != n_panels:
            raise ValueError(f"axes must hold {n_panels} axes, got {len(axes)}")
        fig = axes[0].get_figure()
    ax_target = axes[-1]

    def draw_targets(gid):
        ax_target.clear()
        targets = [int(t) for t in gid_pairs[gid]]
        idx = [t - target_start for t in targets]
        w = [weights[(gid, t)] for t in targets]
        ax_target.scatter(target_pos[:, 0], target_pos[:, 1], color="k",
                          marker="x", s=15, zorder=1)
        image = ax_target.scatter(target_pos[idx, 0], target_pos[idx, 1], c=w,
                                  cmap=colormap, s=50, zorder=2)
        if is_cell_src:
            pos = src_pos[src_gid_list.index(gid)]
            ax_target.scatter(pos[0], pos[1], marker="s", color="red", s=120,
                              zorder=3)
        ax_target.set_xlabel("x position")
        ax_target.set_ylabel("y position")
        ax_target.set_title(f"targets of gid {gid}")
        return image

    image = draw_targets(src_gid)
    if is_cell_src:
        ax_src = axes[0]
        valid_idx = [src_gid_list.index(g) for g in valid]
        ax_src.scatter(src_pos[:, 0], src_pos[:, 1], marker="s", color="red",
                       s=40, alpha=0.2)
        ax_src.scatter(src_pos[valid_idx, 0], src_pos[valid_idx, 1], marker="s",
                       color="red", s=40)
        ax_src.set_xlabel("x position")
        ax_src.set_ylabel("y position")
        ax_src.set_title(f"{src_type} sources")

        def on_click(event):
            if event.inaxes is not ax_src or event.xdata is None:
                return
            dist = np.hypot(src_pos[:, 0] - event.xdata, src_pos[:, 1] - event.ydata)
            gid = src_gid_list[int(np.argmin(dist))]
            if gid in valid:
                draw_targets(gid)
                fig.canvas.draw_idle()

        fig.canvas.mpl_connect("button_press_event", on_click)
    if colorbar:
        cbar = fig.colorbar(image, ax=ax_target)
        cbar.set_label("Weight (uS)")
    fig.suptitle(_conn_title(conn))
    _show(show)
    return fig
