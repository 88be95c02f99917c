"""A :class:`~hnnfit.network.Network` as a declarative JSON description.

:func:`network_to_dict` turns a network into plain JSON data: the
parameter set, the grid, every connection rule with the exact source ->
target pairs it connects (after probabilistic pruning), every drive with
its dynamics, weights, delays and seeds, and the cell positions or cell
templates where they differ from what the parameter set gives.
:func:`network_from_dict` rebuilds an equal network from it (the equality
of :meth:`Network.__eq__ <hnnfit.network.Network.__eq__>`), so a rebuilt
network simulates to the same dipole.

The description is canonical: one network always gives the same text
(:func:`network_json`, sorted keys, floats written so that they read back
exactly), and :func:`network_hash` of it identifies a network without
depending on how Python lays out the class in memory, as a pickle would.

Simulation outputs are not part of a description: the drives' event times
instantiated by a simulation and ``cell_response`` are left out, so the
network read back equals ``net.copy()``.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import numbers
from pathlib import Path

import numpy as np

from .cells import CellTemplate, DistanceRule, SectionSpec
from .network import Connection, Drive, Network
from .params import CELL_TYPES, Params
from .validation import check_type

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "network_from_dict",
    "network_hash",
    "network_json",
    "network_to_dict",
    "read_network",
    "write_network",
]

#: Value of the ``"format"`` key of every network description.
FORMAT_NAME = "hnnfit.network"
#: Version of the description layout this module writes; it reads this
#: version and every older one.
FORMAT_VERSION = 1

# Keys every Connection / Drive holds; anything else would be lost, so it is
# refused rather than dropped silently.
_CONNECTION_KEYS = frozenset((
    "src_type", "target_type", "num_srcs", "num_targets", "src_gids", "target_gids",
    "gid_pairs", "loc", "receptor", "nc_dict", "probability", "allow_autapses"))
_DRIVE_KEYS = frozenset((
    "type", "location", "n_drive_cells", "cell_specific", "event_seed", "conn_seed",
    "dynamics", "weights_ampa", "weights_nmda", "synaptic_delays", "probability",
    "space_constant", "events", "name", "target_types"))
# Network attributes the description covers (cell_response, _sim_timing and
# the drives' events are simulation outputs; _n_gids and _n_cells follow
# from gid_ranges).
_NETWORK_ATTRS = frozenset((
    "_legacy_mode", "_n_pyr_x", "_n_pyr_y", "_params", "cell_types", "gid_ranges",
    "pos_dict", "connectivity", "external_drives", "cell_response", "threshold",
    "delay", "_n_gids", "_n_cells", "_inplane_distance", "_layer_separation",
    "_sim_timing"))


# --------------------------------------------------------------------------
# plain values
# --------------------------------------------------------------------------
def _plain(value, where):
    """``value`` as JSON data that reads back equal, or a clear error.

    numpy scalars become Python numbers (they compare equal); tuples, sets
    and other objects are refused because JSON would not give them back.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number to be stored as JSON, "
                             f"got {value!r}")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} must have str keys to be stored as JSON, got "
                                f"{type(key).__name__} key {key!r}")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list):
        return [_plain(item, f"{where}[{idx}]") for idx, item in enumerate(value)]
    raise TypeError(
        f"{where} must be plain data (None, bool, int, float, str, list or dict) to be "
        f"stored in a network description, got {type(value).__name__} {value!r}")


def _point(xyz, where):
    if not isinstance(xyz, (tuple, list)) or len(xyz) != 3:
        raise TypeError(f"{where} must be an (x, y, z) position, got {xyz!r}")
    return [_plain(c, f"{where}[{i}]") for i, c in enumerate(xyz)]


# --------------------------------------------------------------------------
# connections
# --------------------------------------------------------------------------
def _runs(gids):
    """``[[first, count], ...]``: ``gids`` cut into runs of consecutive ascending ints."""
    runs = []
    for gid in gids:
        gid = int(gid)
        if runs and runs[-1][0] + runs[-1][1] == gid:
            runs[-1][1] += 1
        else:
            runs.append([gid, 1])
    return runs


def _from_runs(runs, where):
    gids = []
    for run in runs:
        if (not isinstance(run, list) or len(run) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in run)
                or run[1] < 1):
            raise ValueError(f"{where} must hold [first_gid, count] runs, got {run!r}")
        gids.extend(range(run[0], run[0] + run[1]))
    return gids


def _connection_to_dict(conn, idx):
    where = f"connectivity[{idx}]"
    extra = set(conn) - _CONNECTION_KEYS
    if extra:
        raise ValueError(f"{where} holds keys a network description does not store: "
                         f"{sorted(extra)}")
    return {
        "src_type": conn["src_type"],
        "target_type": conn["target_type"],
        "num_srcs": int(conn["num_srcs"]),
        "num_targets": int(conn["num_targets"]),
        "src_gids": _runs(sorted(conn["src_gids"])),
        "target_gids": _runs(sorted(conn["target_gids"])),
        # a list keeps the sources' order, in which the simulator connects them
        "gid_pairs": [[int(src), _runs(targets)]
                      for src, targets in conn["gid_pairs"].items()],
        "loc": conn["loc"],
        "receptor": conn["receptor"],
        "nc_dict": _plain(dict(conn["nc_dict"]), f"{where}['nc_dict']"),
        "probability": _plain(conn["probability"], f"{where}['probability']"),
        "allow_autapses": bool(conn["allow_autapses"]),
    }


def _connection_from_dict(d, idx):
    where = f"connectivity[{idx}]"
    _check_keys(d, _CONNECTION_KEYS, where)
    conn = Connection()
    for key in ("src_type", "target_type", "num_srcs", "num_targets", "loc", "receptor",
                "probability", "allow_autapses"):
        conn[key] = d[key]
    conn["src_gids"] = set(_from_runs(d["src_gids"], f"{where}['src_gids']"))
    conn["target_gids"] = set(_from_runs(d["target_gids"], f"{where}['target_gids']"))
    conn["gid_pairs"] = {src: _from_runs(runs, f"{where}['gid_pairs']")
                         for src, runs in d["gid_pairs"]}
    conn["nc_dict"] = dict(d["nc_dict"])
    return conn


# --------------------------------------------------------------------------
# drives
# --------------------------------------------------------------------------
def _drive_to_dict(drive, name):
    where = f"external_drives[{name!r}]"
    extra = set(drive) - _DRIVE_KEYS
    if extra:
        raise ValueError(f"{where} holds keys a network description does not store: "
                         f"{sorted(extra)}")
    # event times are drawn anew by every simulation: not part of the description
    return _plain({key: value for key, value in drive.items() if key != "events"}, where)


def _drive_from_dict(d, name):
    _check_keys(d, _DRIVE_KEYS - {"events"}, f"external_drives[{name!r}]")
    drive = Drive()
    for key in ("type", "location", "n_drive_cells", "cell_specific", "event_seed",
                "conn_seed", "dynamics", "weights_ampa", "weights_nmda",
                "synaptic_delays", "probability", "space_constant", "events", "name",
                "target_types"):
        drive[key] = [] if key == "events" else d[key]
    return drive


# --------------------------------------------------------------------------
# cell templates (stored only when they differ from the parameter set's)
# --------------------------------------------------------------------------
def _mech_value(value, where):
    if isinstance(value, DistanceRule):
        return {"distance_rule": _plain(dataclasses.asdict(value), where)}
    return _plain(value, where)


def _template_to_dict(template, cell_type):
    where = f"cell_types[{cell_type!r}]"
    sections = []
    for name, sec in template.sections.items():
        swhere = f"{where}.sections[{name!r}]"
        sections.append([name, {
            "L": _plain(sec.L, swhere), "diam": _plain(sec.diam, swhere),
            "Ra": _plain(sec.Ra, swhere), "cm": _plain(sec.cm, swhere),
            "nseg": _plain(sec.nseg, swhere), "v0": _plain(sec.v0, swhere),
            "end_pts": [_point(p, f"{swhere}.end_pts") for p in sec.end_pts],
            # a list keeps the order mechanisms are inserted in, which can
            # change the order NEURON sums their currents in
            "mechs": [[mech, [[par, _mech_value(val, f"{swhere}.mechs[{mech!r}]")]
                              for par, val in pars.items()]]
                      for mech, pars in sec.mechs.items()],
            "syns": _plain(list(sec.syns), f"{swhere}.syns"),
        }])
    return {
        "cell_type": template.cell_type,
        "sections": sections,
        "topology": [_plain(list(edge), f"{where}.topology") for edge in template.topology],
        "synapses": _plain(template.synapses, f"{where}.synapses"),
        "sect_loc": _plain(template.sect_loc, f"{where}.sect_loc"),
        "is_pyramidal": bool(template.is_pyramidal),
        "dipole_axis": template.dipole_axis,
        "spike_threshold": _plain(template.spike_threshold, f"{where}.spike_threshold"),
    }


def _template_from_dict(d):
    def mech_value(value):
        if isinstance(value, dict) and "distance_rule" in value:
            return DistanceRule(**value["distance_rule"])
        return value

    sections = {}
    for name, sec in d["sections"]:
        sections[name] = SectionSpec(
            L=sec["L"], diam=sec["diam"], Ra=sec["Ra"], cm=sec["cm"], nseg=sec["nseg"],
            end_pts=[list(p) for p in sec["end_pts"]],
            mechs={mech: {par: mech_value(val) for par, val in pars}
                   for mech, pars in sec["mechs"]},
            syns=list(sec["syns"]), v0=sec["v0"])
    return CellTemplate(
        cell_type=d["cell_type"], sections=sections,
        topology=[tuple(edge) for edge in d["topology"]], synapses=d["synapses"],
        sect_loc=d["sect_loc"], is_pyramidal=d["is_pyramidal"],
        dipole_axis=d["dipole_axis"], spike_threshold=d["spike_threshold"])


# --------------------------------------------------------------------------
# positions (stored only when they differ from the grid's)
# --------------------------------------------------------------------------
def _grid_pos_dict(net):
    """The positions ``net`` would have if nobody moved a cell by hand."""
    probe = Network(net._params, legacy_mode=net._legacy_mode,
                    mesh_shape=(net._n_pyr_x, net._n_pyr_y), add_connections=False)
    probe.set_cell_positions(inplane_distance=net._inplane_distance,
                             layer_separation=net._layer_separation)
    pos = {ct: probe.pos_dict[ct] for ct in CELL_TYPES}
    pos["origin"] = probe.pos_dict["origin"]
    return pos, probe.cell_types


def _pos_dict_to_list(pos_dict):
    out = []
    for name, value in pos_dict.items():
        if name == "origin":
            out.append([name, _point(value, "pos_dict['origin']")])
        else:
            out.append([name, [_point(p, f"pos_dict[{name!r}]") for p in value]])
    return out


def _pos_dict_from_list(items):
    pos = {}
    for name, value in items:
        if name == "origin":
            pos[name] = tuple(value)
        else:
            pos[name] = [tuple(p) for p in value]
    return pos


# --------------------------------------------------------------------------
# the description
# --------------------------------------------------------------------------
def network_to_dict(net):
    """A network as plain JSON data (dicts, lists, str, int, float, bool, None).

    Parameters
    ----------
    net : Network
        The network to describe. Simulation outputs (the drives' event
        times, ``cell_response``) are left out.

    Returns
    -------
    dict
        ``"format"`` (:data:`FORMAT_NAME`), ``"format_version"``
        (:data:`FORMAT_VERSION`), ``"params"`` (the parameter set),
        ``"mesh_shape"`` (``[n_x, n_y]``), ``"legacy_mode"``,
        ``"threshold"`` (mV), ``"delay"`` (ms), ``"inplane_distance"`` and
        ``"layer_separation"`` (um), ``"gid_ranges"`` (``[name, start,
        stop]`` in gid order), ``"external_drives"`` (in the order added),
        ``"connectivity"`` (each rule with its connected pairs as
        ``[src_gid, [[first_target, count], ...]]``), and, only when they
        differ from what the grid and the parameter set give,
        ``"pos_dict"`` and ``"cell_types"``.

    Raises
    ------
    TypeError, ValueError
        ``net`` holds something that is not plain data (an attribute,
        connection key or drive key the description does not know, an
        object where a number is expected, a NaN), named in the message.
    """
    check_type(net, Network, "net")
    extra = set(vars(net)) - _NETWORK_ATTRS
    if extra:
        raise ValueError(f"net has attributes a network description does not store: "
                         f"{sorted(extra)}")
    grid_pos, param_templates = _grid_pos_dict(net)

    gid_ranges = []
    for name, gids in net.gid_ranges.items():
        if gids.step != 1:
            raise ValueError(f"gid_ranges[{name!r}] must be a range with step 1, got {gids!r}")
        gid_ranges.append([name, gids.start, gids.stop])

    desc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "params": _plain(dict(net._params), "params"),
        "mesh_shape": [int(net._n_pyr_x), int(net._n_pyr_y)],
        "legacy_mode": bool(net._legacy_mode),
        "threshold": _plain(net.threshold, "threshold"),
        "delay": _plain(net.delay, "delay"),
        "inplane_distance": _plain(net._inplane_distance, "inplane_distance"),
        "layer_separation": _plain(net._layer_separation, "layer_separation"),
        "gid_ranges": gid_ranges,
        "external_drives": [[name, _drive_to_dict(drive, name)]
                            for name, drive in net.external_drives.items()],
        "connectivity": [_connection_to_dict(conn, idx)
                         for idx, conn in enumerate(net.connectivity)],
    }
    expected_pos = dict(grid_pos)
    for name, drive in net.external_drives.items():
        expected_pos[name] = [grid_pos["origin"]] * drive["n_drive_cells"]
    if net.pos_dict != expected_pos or list(net.pos_dict) != list(expected_pos):
        desc["pos_dict"] = _pos_dict_to_list(net.pos_dict)
    if (net.cell_types != param_templates
            or list(net.cell_types) != list(param_templates)):
        desc["cell_types"] = [[ct, _template_to_dict(template, ct)]
                              for ct, template in net.cell_types.items()]
    return desc


def _check_keys(d, required, where):
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(d).__name__}")
    missing = sorted(set(required) - set(d))
    if missing:
        raise ValueError(f"{where} must hold the keys {missing}, got {sorted(d)}")


def _check_format(d):
    if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"a network description must have 'format' {FORMAT_NAME!r}, "
                         f"got {got!r}: this is not a network description")
    version = d.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"'format_version' must be a positive int, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"this network description has format version {version}, newer than the "
            f"{FORMAT_VERSION} this hnnfit reads; upgrade hnnfit to read it")


_TOP_KEYS = ("params", "mesh_shape", "legacy_mode", "threshold", "delay",
             "inplane_distance", "layer_separation", "gid_ranges", "external_drives",
             "connectivity")


def network_from_dict(d):
    """Rebuild the network a :func:`network_to_dict` description describes.

    Parameters
    ----------
    d : dict
        A description (as :func:`network_to_dict` returns it, or as read
        from its JSON text).

    Returns
    -------
    Network
        Equal (``==``) to the described network's ``copy()``.

    Raises
    ------
    ValueError
        ``d`` is not a network description (no ``"format"`` of
        :data:`FORMAT_NAME`), was written by a newer hnnfit (a
        ``"format_version"`` above :data:`FORMAT_VERSION`), or misses keys.
    """
    _check_format(d)
    _check_keys(d, _TOP_KEYS, "network description")
    d = copy.deepcopy(d)  # the network must not share mutable values with ``d``
    net = Network(Params(d["params"]), legacy_mode=d["legacy_mode"],
                  mesh_shape=tuple(d["mesh_shape"]), add_connections=False)
    net.threshold = d["threshold"]
    net.delay = d["delay"]
    net.set_cell_positions(inplane_distance=d["inplane_distance"],
                           layer_separation=d["layer_separation"])
    if "cell_types" in d:
        net.cell_types = {ct: _template_from_dict(t) for ct, t in d["cell_types"]}

    net.gid_ranges = {name: range(start, stop) for name, start, stop in d["gid_ranges"]}
    net._n_gids = max((r.stop for r in net.gid_ranges.values()), default=0)
    net._n_cells = sum(len(net.gid_ranges[ct]) for ct in net.cell_types
                       if ct in net.gid_ranges)
    net.external_drives = {name: _drive_from_dict(drive, name)
                           for name, drive in d["external_drives"]}
    if "pos_dict" in d:
        net.pos_dict = _pos_dict_from_list(d["pos_dict"])
    else:
        origin = net.pos_dict["origin"]
        for name, drive in net.external_drives.items():
            net.pos_dict[name] = [origin] * drive["n_drive_cells"]
    net.connectivity = [_connection_from_dict(conn, idx)
                        for idx, conn in enumerate(d["connectivity"])]
    return net


def network_json(net):
    """The canonical JSON text of a network's description.

    Sorted keys, no whitespace, floats in their shortest exact form: the
    same network always gives the same text, on every machine.

    Parameters
    ----------
    net : Network | dict
        A network, or a description from :func:`network_to_dict`.

    Returns
    -------
    str
    """
    desc = net if isinstance(net, dict) else network_to_dict(net)
    return json.dumps(desc, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=True)


def network_hash(net):
    """The sha256 of a network's canonical description (:func:`network_json`).

    Two networks get the same hash exactly when their descriptions are the
    same text; any change of a weight, delay, seed, position or parameter
    changes it.

    Parameters
    ----------
    net : Network | dict
        A network, or a description from :func:`network_to_dict`.

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    return hashlib.sha256(network_json(net).encode("ascii")).hexdigest()


def write_network(net, fname):
    """Write a network's description to a JSON file.

    Parameters
    ----------
    net : Network
        The network (simulation outputs are not written).
    fname : str | pathlib.Path
        Output path; an existing file is replaced.

    Returns
    -------
    path : pathlib.Path
        The file written; its text is :func:`network_json` of ``net`` and a
        newline.
    """
    check_type(fname, (str, Path), "fname", "str or pathlib.Path")
    text = network_json(net)
    path = Path(fname).expanduser()
    path.write_text(text + "\n", encoding="ascii")
    return path


def read_network(fname):
    """Read a network written by :func:`write_network`.

    Parameters
    ----------
    fname : str | pathlib.Path
        Path of the file.

    Returns
    -------
    Network

    Raises
    ------
    ValueError
        The file is not JSON, not a network description, or of a newer
        format version than this hnnfit reads; the message names the file.
    """
    check_type(fname, (str, Path), "fname", "str or pathlib.Path")
    path = Path(fname).expanduser()
    text = path.read_text(encoding="utf-8")
    try:
        desc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a network description: not valid JSON "
                         f"({err})") from None
    try:
        return network_from_dict(desc)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
