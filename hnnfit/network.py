"""The network description: cells, positions, connection rules and drives.

A :class:`Network` is plain, picklable data. It says which cells exist
(one :class:`~hnnfit.cells.CellTemplate` per cell type, a position per
cell), how they are wired (a list of :class:`Connection` rules, each a set
of source -> target gid pairs with one synaptic weight, delay and space
constant) and which external drives feed them (``external_drives``). The
NEURON side (:mod:`hnnfit.simulator`) only reads it.

Conventions follow the HNN model as implemented in hnn-core 0.6.1, whose
outputs serve as the reference:

* gids are assigned in the order L2_basket, L2_pyramidal, L5_basket,
  L5_pyramidal, then one block per drive in the order the drives were added;
* pyramidal cells sit on an ``n_x`` by ``n_y`` grid (spacing
  ``inplane_distance``, 1 um by default) in two layers 1307.4 um apart, and
  basket cells on a sparser sub-grid (35 of them for the 10 x 10 grid);
* every drive cell sits at the column ``'origin'``;
* synaptic weights fall off, and delays grow, with the in-plane distance
  ``d`` between the connected somata as ``w = w0 * exp(-(d / (lamtha *
  inplane_distance)) ** 2)`` and ``delay = delay0 / exp(-(d / (lamtha *
  inplane_distance)) ** 2)`` (see :meth:`Network.synaptic_netcons`).
"""
from __future__ import annotations

import copy as _copy
import numbers
from pathlib import Path

import numpy as np

from .cells import CELL_TYPES, PARAM_PREFIX, RECEPTORS, cell_template
from .validation import (
    check_bool,
    check_int,
    check_nonnegative,
    check_number,
    check_option,
    check_positive,
    check_type,
)

__all__ = [
    "Connection",
    "Drive",
    "LOCATIONS",
    "Network",
    "add_evoked_drives",
    "jones_2009_model",
    "pick_connection",
]

#: Synapse locations understood everywhere (individual section names are
#: accepted as well where a cell type has that section).
LOCATIONS = ("proximal", "distal", "soma")

DEFAULT_INPLANE_DISTANCE = 1.0  # um, grid spacing of pyramidal somata
DEFAULT_LAYER_SEPARATION = 1307.4  # um, L5 to L2/3 pyramidal somata

# Basket cells are placed between the pyramidal layers, at these fractions
# of the layer separation above the L5 pyramidal layer.
_BASKET_DEPTH_FRACTION = {"L5_basket": 0.2, "L2_basket": 0.8}

_DRIVE_TYPES = ("evoked", "poisson", "bursty")

# The 16 cell-to-cell rules of the Jones et al. (2009) column, in the order
# the reference builds them: (source, target, location, receptor,
# parameter key of the weight, space constant lamtha, autapses allowed).
_JONES_2009_RULES = (
    ("L2_pyramidal", "L2_pyramidal", "proximal", "nmda", "gbar_L2Pyr_L2Pyr_nmda", 3.0, False),
    ("L2_pyramidal", "L2_pyramidal", "proximal", "ampa", "gbar_L2Pyr_L2Pyr_ampa", 3.0, False),
    ("L5_pyramidal", "L5_pyramidal", "proximal", "nmda", "gbar_L5Pyr_L5Pyr_nmda", 3.0, False),
    ("L5_pyramidal", "L5_pyramidal", "proximal", "ampa", "gbar_L5Pyr_L5Pyr_ampa", 3.0, False),
    ("L2_basket", "L2_pyramidal", "soma", "gabaa", "gbar_L2Basket_L2Pyr_gabaa", 50.0, True),
    ("L2_basket", "L2_pyramidal", "soma", "gabab", "gbar_L2Basket_L2Pyr_gabab", 50.0, True),
    ("L5_basket", "L5_pyramidal", "soma", "gabaa", "gbar_L5Basket_L5Pyr_gabaa", 70.0, True),
    ("L5_basket", "L5_pyramidal", "soma", "gabab", "gbar_L5Basket_L5Pyr_gabab", 70.0, True),
    ("L2_pyramidal", "L5_pyramidal", "proximal", "ampa", "gbar_L2Pyr_L5Pyr", 3.0, True),
    ("L2_pyramidal", "L5_pyramidal", "distal", "ampa", "gbar_L2Pyr_L5Pyr", 3.0, True),
    ("L2_basket", "L5_pyramidal", "distal", "gabaa", "gbar_L2Basket_L5Pyr", 50.0, True),
    ("L2_pyramidal", "L2_basket", "soma", "ampa", "gbar_L2Pyr_L2Basket", 3.0, True),
    ("L2_basket", "L2_basket", "soma", "gabaa", "gbar_L2Basket_L2Basket", 20.0, True),
    ("L5_basket", "L5_basket", "soma", "gabaa", "gbar_L5Basket_L5Basket", 20.0, False),
    ("L5_pyramidal", "L5_basket", "soma", "ampa", "gbar_L5Pyr_L5Basket", 3.0, True),
    ("L2_pyramidal", "L5_basket", "soma", "ampa", "gbar_L2Pyr_L5Basket", 3.0, True),
)

_LONG_NAME = {short: long for long, short in PARAM_PREFIX.items()}


# --------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------
class _AttrDict(dict):
    """A dict whose keys can also be read and written as attributes."""

    __slots__ = ()

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {key!r}"
            ) from None

    def __setattr__(self, key, value):
        self[key] = value

    def __delattr__(self, key):
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None


class Connection(_AttrDict):
    """One connection rule: a set of source -> target pairs sharing synapse parameters.

    Items (also readable as attributes):

    src_type, target_type : str
        Cell type (or drive name) of the sources, cell type of the targets.
    src_gids, target_gids : set of int
        All source / target gids the rule was made from (not reduced by
        probabilistic pruning).
    num_srcs, num_targets : int
        Their counts before pruning.
    gid_pairs : dict of int to list of int
        ``{src_gid: [target_gid, ...]}``, the pairs actually connected.
    loc : str
        ``'proximal'``, ``'distal'``, ``'soma'`` or a section name.
    receptor : str
        ``'ampa'``, ``'nmda'``, ``'gabaa'`` or ``'gabab'``.
    nc_dict : dict
        ``A_weight`` (uS, at zero distance), ``A_delay`` (ms, at zero
        distance), ``lamtha`` (space constant, in units of the in-plane
        grid spacing), ``threshold`` (mV) and ``gain`` (weight factor).
    probability : float
        Probability with which each pair was kept.
    allow_autapses : bool
        Whether a cell may connect to itself.
    """

    __slots__ = ()

    @property
    def n_pairs(self):
        """Number of connected (source, target) pairs."""
        return sum(len(targets) for targets in self["gid_pairs"].values())

    def __repr__(self):
        nc = self["nc_dict"]
        return (
            f"{self['src_type']} -> {self['target_type']}\n"
            f"cell counts: {self['num_srcs']} srcs, {self['num_targets']} targets\n"
            f"connection probability: {self['probability']}\n"
            f"loc: '{self['loc']}'; receptor: '{self['receptor']}'\n"
            f"weight: {nc['A_weight']}; delay: {nc['A_delay']}; "
            f"lamtha: {nc['lamtha']}"
        )


class Drive(_AttrDict):
    """Parameters of one external drive (a dict; see ``Network.external_drives``)."""

    __slots__ = ()

    def __repr__(self):
        lines = [f"<External drive '{self.get('name')}'"]
        if "type" in self:
            lines += [
                f"drive class: {self['type']}",
                f"target location: {self['location']}",
                f"target cell types: {self.get('target_types')}",
                f"number of drive cells: {self['n_drive_cells']}",
                f"cell-specific: {self['cell_specific']}",
                "dynamic parameters:",
            ]
            lines += [f"\t{key}: {val}" for key, val in self["dynamics"].items()]
        n_trials = len(self.get("events", []))
        if n_trials:
            lines.append(
                f"event times instantiated for {n_trials} trial"
                f"{'s' if n_trials > 1 else ''}"
            )
        return "\n".join(lines) + ">"


# --------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------
def _grid_positions(n_x, n_y, layer_separation, inplane_distance):
    """Soma positions (um) of every cell type and the column origin.

    Pyramidal cells fill the grid x-major (all y for the first x, then the
    next x). Basket cells take every third column, on even rows for columns
    0, 3, 6, ... and on odd rows for columns 1, 4, 7, ...; they are listed
    row by row (stable in the column order within a row), as the reference
    numbers them.
    """
    xs = [i * inplane_distance for i in range(n_x)]
    ys = [j * inplane_distance for j in range(n_y)]

    def pyramidal_layer(z):
        return [(x, y, z) for x in xs for y in ys]

    basket_xy = [
        (i * inplane_distance, j * inplane_distance)
        for i in range(0, n_x, 3)
        for j in range(0, n_y, 2)
    ] + [
        (i * inplane_distance, j * inplane_distance)
        for i in range(1, n_x, 3)
        for j in range(1, n_y, 2)
    ]
    basket_xy.sort(key=lambda xy: xy[1])  # list.sort is stable

    def basket_layer(cell_type):
        z = _BASKET_DEPTH_FRACTION[cell_type] * layer_separation
        return [(x, y, z) for x, y in basket_xy]

    # The origin (centre of the grid, half way between the layers) is where
    # all drive cells are placed; only its x and y matter for distances.
    origin = (
        xs[(n_x - 1) // 2],
        ys[(n_y - 1) // 2],
        float(np.floor(layer_separation / 2)),
    )
    return {
        "L2_basket": basket_layer("L2_basket"),
        "L2_pyramidal": pyramidal_layer(float(layer_separation)),
        "L5_basket": basket_layer("L5_basket"),
        "L5_pyramidal": pyramidal_layer(0.0),
        "origin": origin,
    }


def _distance_factor(src_xy, target_xy, space_constant):
    """Gaussian fall-off ``exp(-d**2 / space_constant**2)`` of in-plane distance d."""
    dx = target_xy[:, 0] - src_xy[:, 0]
    dy = target_xy[:, 1] - src_xy[:, 1]
    dist = np.sqrt(dx ** 2 + dy ** 2)
    return np.exp(-(dist ** 2) / (space_constant ** 2))


# --------------------------------------------------------------------------
# connection probability
# --------------------------------------------------------------------------
def _prune_pairs(gid_pairs, probability, conn_seed):
    """Keep a random ``round(n * probability)`` of the n pairs of a rule.

    Pairs are numbered source by source (in insertion order), targets in
    order; the kept numbers are drawn without replacement from
    ``numpy.random.default_rng(conn_seed)``, which reproduces the
    reference's choice of pairs for the same seed. Sources left without
    targets are dropped.
    """
    n_total = sum(len(targets) for targets in gid_pairs.values())
    n_keep = int(np.round(n_total * probability))
    rng = np.random.default_rng(conn_seed)
    keep = set(rng.choice(n_total, n_keep, replace=False).tolist()) if n_total else set()
    pruned = {}
    idx = 0
    for src_gid, targets in gid_pairs.items():
        kept = []
        for target_gid in targets:
            if idx in keep:
                kept.append(target_gid)
            idx += 1
        if kept:
            pruned[src_gid] = kept
    return pruned


# --------------------------------------------------------------------------
# gid helpers
# --------------------------------------------------------------------------
def _gid_type(gid, gid_ranges):
    for name, gids in gid_ranges.items():
        if gid in gids:
            return name
    return None


def _is_int(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool)


def _resolve_gids(gids, gid_ranges, valid_names, name):
    """Turn a gid specification into a list of int gids.

    ``gids`` may be a name in ``valid_names``, an int, a range, or a
    list/tuple/set of ints or of names. Every gid must belong to one of
    ``valid_names``.
    """
    if isinstance(gids, str):
        check_option(gids, list(valid_names), name)
        return list(gid_ranges[gids])
    if _is_int(gids):
        gids = [int(gids)]
    elif isinstance(gids, (range, list, tuple, set, frozenset, np.ndarray)):
        gids = list(gids)
    else:
        raise TypeError(
            f"{name} must be a str, int, range or list of int, got "
            f"{type(gids).__name__} {gids!r}"
        )
    if gids and all(isinstance(g, str) for g in gids):
        resolved = []
        for cell_name in gids:
            check_option(cell_name, list(valid_names), name)
            resolved.extend(gid_ranges[cell_name])
        return resolved
    out = []
    for gid in gids:
        if not _is_int(gid):
            raise TypeError(
                f"{name} must contain only int gids, got {type(gid).__name__} {gid!r}"
            )
        gid = int(gid)
        gid_type = _gid_type(gid, gid_ranges)
        if gid_type is None or gid_type not in valid_names:
            raise ValueError(
                f"{name} must contain gids of {', '.join(valid_names)}, got {gid}"
            )
        out.append(gid)
    return out


# --------------------------------------------------------------------------
# pick_connection
# --------------------------------------------------------------------------
def _as_option_list(value, options, name):
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be a str, list of str or None, got {type(value).__name__} {value!r}"
        )
    for item in value:
        check_option(item, list(options), name)
    return list(value)


def pick_connection(net, src_gids=None, target_gids=None, loc=None, receptor=None):
    """Indices of the connection rules of ``net`` that match all given criteria.

    Parameters
    ----------
    net : Network
        The network whose ``connectivity`` is searched.
    src_gids : str | int | range | list of int | list of str | None
        Sources: a cell type or drive name, gids, or a list of names. A rule
        matches if any of its source gids is among them.
    target_gids : str | int | range | list of int | list of str | None
        Targets (cell types or gids of cells), matched the same way.
    loc : str | list of str | None
        Synapse location(s): ``'proximal'``, ``'distal'``, ``'soma'`` (or a
        section name).
    receptor : str | list of str | None
        Receptor(s): ``'ampa'``, ``'nmda'``, ``'gabaa'``, ``'gabab'``.

    Returns
    -------
    list of int
        Sorted indices into ``net.connectivity``. A list given for one
        criterion means "any of these"; several criteria must all hold.
        ``None`` (or an empty list) leaves a criterion out; with no
        criterion at all nothing is picked.
    """
    check_type(net, Network, "net")
    srcs = [] if src_gids is None else _resolve_gids(
        src_gids, net.gid_ranges, list(net.gid_ranges), "src_gids")
    targets = [] if target_gids is None else _resolve_gids(
        target_gids, net.gid_ranges, list(net.cell_types), "target_gids")
    locs = _as_option_list(loc, net._valid_location_names(), "loc")
    receptors = _as_option_list(receptor, RECEPTORS, "receptor")

    criteria = []
    if srcs:
        wanted = set(srcs)
        criteria.append(lambda conn: not wanted.isdisjoint(conn["src_gids"]))
    if targets:
        wanted_t = set(targets)
        criteria.append(lambda conn: not wanted_t.isdisjoint(conn["target_gids"]))
    if locs:
        criteria.append(lambda conn: conn["loc"] in locs)
    if receptors:
        criteria.append(lambda conn: conn["receptor"] in receptors)
    if not criteria:
        return []
    return [idx for idx, conn in enumerate(net.connectivity)
            if all(test(conn) for test in criteria)]


# --------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------
def _load_params(params):
    from . import params as _params_mod

    if params is None:
        return _params_mod.default_params()
    if isinstance(params, (str, Path)):
        return _params_mod.read_params(params)
    if isinstance(params, dict):
        return params
    raise TypeError(
        f"params must be a dict, a file name or None, got {type(params).__name__} {params!r}"
    )


#: Side of the pyramidal grid when neither ``mesh_shape`` nor the parameter
#: set's ``N_pyr_x``/``N_pyr_y`` give one (the published model's 10 x 10).
DEFAULT_MESH_SIDE = 10


def _mesh_shape_from_params(params):
    """``(N_pyr_x, N_pyr_y)`` of a parameter set, 10 for a missing key."""
    shape = []
    for key in ("N_pyr_x", "N_pyr_y"):
        value = params.get(key, DEFAULT_MESH_SIDE)
        shape.append(check_int(value, f"params[{key!r}]", low=1))
    return tuple(shape)


def _check_mesh_shape(mesh_shape):
    if not isinstance(mesh_shape, (tuple, list)) or len(mesh_shape) != 2:
        raise TypeError(f"mesh_shape must be a tuple of two int, got {mesh_shape!r}")
    n_x = check_int(mesh_shape[0], "mesh_shape[0]", low=1)
    n_y = check_int(mesh_shape[1], "mesh_shape[1]", low=1)
    return n_x, n_y


# --------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------
class Network:
    """The HNN neocortical column: cells, their positions, wiring and drives.

    ``Network(params)`` is the Jones et al. (2009) model: the four cell
    types, their positions and the model's 16 cell-to-cell connection rules
    weighted by ``params`` (the same as :func:`jones_2009_model`); pass
    ``add_connections=False`` for the cells alone.

    Parameters
    ----------
    params : dict | str | pathlib.Path
        HNN parameter set (or a file :func:`hnnfit.params.read_params`
        reads). Cell properties, the spike ``threshold`` (mV) and, with
        ``add_drives_from_params``, the drives are taken from it.
    add_drives_from_params : bool
        Add the evoked/Poisson/bursty drives the parameter set defines (in
        alphabetical order of their names, as the reference does).
    legacy_mode : bool
        Connect every drive to all four cell types (with zero weights where
        the parameters give none), as the HNN GUI did; changes gid numbering.
    mesh_shape : tuple of int | None
        ``(n_x, n_y)``: the pyramidal grid of each layer. None: the
        parameter set's ``N_pyr_x`` and ``N_pyr_y`` (10 for a missing key;
        every bundled parameter file gives 10 x 10), so a parameter file
        exported from a smaller network rebuilds that network. hnn-core
        (>= 0.4) ignores these keys and defaults to 10 x 10; the two agree
        whenever the keys say 10 x 10.
    add_connections : bool
        Add the model's default cell-to-cell connection rules (after any
        drives from the parameters, as in the reference).

    Attributes
    ----------
    cell_types : dict of str to CellTemplate
        The template of each cell type, in gid order.
    gid_ranges : dict of str to range
        Gids of each cell type, then of each drive (in the order added).
    pos_dict : dict
        Soma positions (x, y, z) in um of each cell type and drive cell (one
        tuple per gid), plus ``'origin'``, the column centre where drive
        cells sit.
    connectivity : list of Connection
        The connection rules.
    external_drives : dict of str to Drive
        The drives by name (see the ``add_*_drive`` methods).
    threshold : float
        Spike threshold (mV) given to new connections.
    delay : float
        Default synaptic delay (ms) of the model's connections.
    cell_response : CellResponse | None
        Spikes (and somatic voltages) of the last simulation.
    """

    def __init__(self, params, add_drives_from_params=False, legacy_mode=False,
                 mesh_shape=None, add_connections=True):
        params = _load_params(params)
        add_drives_from_params = check_bool(add_drives_from_params, "add_drives_from_params")
        self._legacy_mode = check_bool(legacy_mode, "legacy_mode")
        if mesh_shape is None:
            mesh_shape = _mesh_shape_from_params(params)
        self._n_pyr_x, self._n_pyr_y = _check_mesh_shape(mesh_shape)
        self._params = params

        self.cell_types = {}
        self.gid_ranges = {}
        self.pos_dict = {}
        self.connectivity = []
        self.external_drives = {}
        self.cell_response = None
        self.threshold = check_number(params.get("threshold", 0.0), "params['threshold']")
        self.delay = 1.0
        self._n_gids = 0
        self._n_cells = 0
        self._inplane_distance = DEFAULT_INPLANE_DISTANCE
        self._layer_separation = DEFAULT_LAYER_SEPARATION

        self.set_cell_positions(inplane_distance=DEFAULT_INPLANE_DISTANCE,
                                layer_separation=DEFAULT_LAYER_SEPARATION)
        for cell_type in CELL_TYPES:
            self.cell_types[cell_type] = cell_template(cell_type, params)
            self._add_gid_range(cell_type, len(self.pos_dict[cell_type]))
            self._n_cells += len(self.pos_dict[cell_type])

        if add_drives_from_params:
            self._add_drives_from_params()
        if check_bool(add_connections, "add_connections"):
            self._add_default_connections()

    def _add_default_connections(self):
        """Append the Jones et al. (2009) cell-to-cell connection rules."""
        for src, target, loc, receptor, key, lamtha, autapses in _JONES_2009_RULES:
            if key not in self._params:
                raise ValueError(
                    f"params must contain the connection weight {key!r}, got none")
            self.add_connection(src, target, loc, receptor, self._params[key], self.delay,
                                lamtha, allow_autapses=autapses)

    # -- dunder -----------------------------------------------------------
    def __repr__(self):
        counts = ", ".join(
            f"{len(self.gid_ranges[ct])} {ct}" for ct in self.cell_types
        )
        drives = len(self.external_drives)
        return (
            f"<Network | {counts} cells; {len(self.connectivity)} connection rules; "
            f"{drives} drive{'s' if drives != 1 else ''}>"
        )

    def __eq__(self, other):
        if not isinstance(other, Network):
            return NotImplemented
        if len(self.connectivity) != len(other.connectivity):
            return False
        # rules may be equal in a different order
        remaining = list(other.connectivity)
        for conn in self.connectivity:
            for idx, candidate in enumerate(remaining):
                if candidate == conn:
                    del remaining[idx]
                    break
            else:
                return False
        # _params counts: the simulator reads temperature, spike threshold and
        # dipole scaling from it
        for attr in ("cell_types", "gid_ranges", "pos_dict", "external_drives",
                     "threshold", "delay", "_inplane_distance", "_layer_separation",
                     "_n_pyr_x", "_n_pyr_y", "_legacy_mode", "_params"):
            if getattr(self, attr) != getattr(other, attr):
                return False
        if self.cell_response is None or other.cell_response is None:
            return self.cell_response is other.cell_response
        return self.cell_response == other.cell_response

    __hash__ = None

    # -- geometry ---------------------------------------------------------
    def set_cell_positions(self, *, inplane_distance=None, layer_separation=None):
        """Place the cells on the grid.

        Parameters
        ----------
        inplane_distance : float | None
            Spacing (um) of the pyramidal grid; None keeps the current value.
            Distance-dependent weights and delays scale with it, so changing
            it alone does not change the network's behaviour.
        layer_separation : float | None
            Distance (um) between the L5 and L2/3 pyramidal soma layers;
            None keeps the current value. It does not enter weights, delays
            or the dipole.
        """
        if inplane_distance is None:
            inplane_distance = self._inplane_distance
        if layer_separation is None:
            layer_separation = self._layer_separation
        inplane_distance = check_positive(inplane_distance, "inplane_distance")
        layer_separation = check_positive(layer_separation, "layer_separation")
        layers = _grid_positions(self._n_pyr_x, self._n_pyr_y, layer_separation,
                                 inplane_distance)
        pos_dict = {ct: layers[ct] for ct in CELL_TYPES}
        pos_dict["origin"] = layers["origin"]
        for name, drive in self.external_drives.items():
            pos_dict[name] = [layers["origin"]] * drive["n_drive_cells"]
        self.pos_dict = pos_dict
        self._inplane_distance = inplane_distance
        self._layer_separation = layer_separation

    def gid_to_type(self, gid):
        """Cell type or drive name of ``gid`` (None if no such gid)."""
        return _gid_type(gid, self.gid_ranges)

    def _add_gid_range(self, name, n_gids):
        start = self._n_gids
        self._n_gids += n_gids
        self.gid_ranges[name] = range(start, self._n_gids)

    def _position(self, gid, gid_type=None):
        if gid_type is None:
            gid_type = self.gid_to_type(gid)
        return self.pos_dict[gid_type][gid - self.gid_ranges[gid_type][0]]

    # -- copying ------------------------------------------------------------
    def copy(self):
        """A deep copy without simulation outputs.

        Connectivity, drives (with their dynamics) and positions are kept;
        the drives' instantiated ``events`` and ``cell_response`` are
        cleared, so the copy can be changed and simulated on its own.

        Returns
        -------
        Network
        """
        net = _copy.deepcopy(self)
        net.cell_response = None
        for drive in net.external_drives.values():
            drive["events"] = []
        return net

    # -- connections ----------------------------------------------------------
    def _valid_location_names(self):
        names = list(LOCATIONS)
        for template in self.cell_types.values():
            for sec_name in template.sections:
                if sec_name not in names:
                    names.append(sec_name)
        return names

    def _reachable_locations(self, cell_type):
        """Locations ``cell_type`` has synapses at: non-empty section groups and sections."""
        template = self.cell_types[cell_type]
        locs = [loc for loc, secs in template.sect_loc.items() if secs]
        locs += [sec for sec in template.sections if sec not in locs]
        return locs

    def _location_sections(self, cell_type, loc):
        template = self.cell_types[cell_type]
        if loc in template.sect_loc:
            return list(template.sect_loc[loc])
        return [loc] if loc in template.sections else []

    def _check_location(self, cell_type, loc, name):
        reachable = self._reachable_locations(cell_type)
        if loc not in reachable:
            opts = ", ".join(repr(r) for r in reachable)
            raise ValueError(
                f"{name} must be one of {opts} for {cell_type} targets, got {loc!r}"
            )

    def _check_receptor(self, cell_type, loc, receptor):
        check_option(receptor, RECEPTORS, "receptor")
        template = self.cell_types[cell_type]
        for sec in self._location_sections(cell_type, loc):
            syns = template.sections[sec].syns
            if receptor not in syns:
                opts = ", ".join(repr(s) for s in syns)
                raise ValueError(
                    f"receptor must be one of {opts} at loc {loc!r} ({sec}) of "
                    f"{cell_type} cells, got {receptor!r}"
                )

    def _target_lists(self, target_gids, n_srcs):
        """One list of target gids per source (all-to-all unless given nested)."""
        if isinstance(target_gids, str):
            check_option(target_gids, list(self.cell_types), "target_gids")
            flat = list(self.gid_ranges[target_gids])
            return [list(flat) for _ in range(n_srcs)]
        if _is_int(target_gids):
            return [[int(target_gids)] for _ in range(n_srcs)]
        if isinstance(target_gids, (range, tuple, np.ndarray)):
            target_gids = list(target_gids)
        if not isinstance(target_gids, list):
            raise TypeError(
                "target_gids must be a str, int, range, list of int or list of lists "
                f"of int, got {type(target_gids).__name__} {target_gids!r}"
            )
        if not target_gids:
            raise ValueError("target_gids must not be empty, got []")
        if all(isinstance(t, (list, tuple, range, np.ndarray)) for t in target_gids):
            if len(target_gids) != n_srcs:
                raise ValueError(
                    f"target_gids must have one list per source ({n_srcs}), got "
                    f"{len(target_gids)} lists"
                )
            return [list(t) for t in target_gids]
        if all(isinstance(t, str) for t in target_gids):
            flat = _resolve_gids(target_gids, self.gid_ranges, list(self.cell_types),
                                 "target_gids")
            return [list(flat) for _ in range(n_srcs)]
        return [list(target_gids) for _ in range(n_srcs)]

    def add_connection(self, src_gids, target_gids, loc, receptor, weight, delay,
                       lamtha, allow_autapses=True, probability=1.0, conn_seed=None,
                       *, threshold=None, gain=1.0):
        """Append a connection rule to ``connectivity``.

        Parameters
        ----------
        src_gids : str | int | range | list of int
            Sources: a cell type or drive name, or gids of one type.
        target_gids : str | int | range | list of int | list of list of int
            Targets (cells of one type). A name, an int or a flat list
            connects every source to all of them; a list of lists gives each
            source its own targets.
        loc : str
            ``'proximal'``, ``'distal'``, ``'soma'`` or a section name of the
            target cell type; the target must have synapses there.
        receptor : str
            ``'ampa'``, ``'nmda'``, ``'gabaa'`` or ``'gabab'``; it must exist
            on every section ``loc`` stands for.
        weight : float
            Synaptic weight (uS) between cells at zero in-plane distance.
        delay : float
            Synaptic delay (ms) at zero in-plane distance.
        lamtha : float
            Space constant of the Gaussian fall-off, in units of the in-plane
            grid spacing.
        allow_autapses : bool
            Whether a cell may connect to itself.
        probability : float
            Keep each pair with this probability (exactly
            ``round(n_pairs * probability)`` pairs are kept), in (0, 1].
        conn_seed : int | None
            Seed of the pruning's random generator.
        threshold : float | None
            Spike threshold (mV) of the sources for this rule; defaults to
            ``net.threshold``.
        gain : float
            Factor applied to ``weight`` when the network is built.
        """
        srcs = _resolve_gids(src_gids, self.gid_ranges, list(self.gid_ranges), "src_gids")
        if not srcs:
            raise ValueError("src_gids must name at least one source, got []")
        src_type = self.gid_to_type(srcs[0])
        for gid in srcs:
            if self.gid_to_type(gid) != src_type:
                raise ValueError(
                    f"src_gids must all be of one type, got {src_type} and "
                    f"{self.gid_to_type(gid)}"
                )
        target_lists = self._target_lists(target_gids, len(srcs))
        target_set = set()
        for targets in target_lists:
            for gid in targets:
                if not _is_int(gid):
                    raise TypeError(
                        f"target_gids must contain only int gids, got "
                        f"{type(gid).__name__} {gid!r}"
                    )
                target_set.add(int(gid))
        if not target_set:
            raise ValueError("target_gids must name at least one target, got none")
        target_type = None
        for gid in sorted(target_set):
            gid_type = self.gid_to_type(gid)
            if gid_type not in self.cell_types:
                raise ValueError(
                    f"target_gids must be gids of {', '.join(self.cell_types)} cells, "
                    f"got {gid}"
                )
            if target_type is None:
                target_type = gid_type
            elif gid_type != target_type:
                raise ValueError(
                    f"target_gids must all be of one cell type, got {target_type} "
                    f"and {gid_type}"
                )
        check_type(loc, str, "loc")
        self._check_location(target_type, loc, "loc")
        check_type(receptor, str, "receptor")
        self._check_receptor(target_type, loc, receptor)
        self._append_connection(
            srcs, src_type, target_lists, target_set, target_type, loc, receptor,
            weight, delay, lamtha, allow_autapses, probability, conn_seed,
            threshold, gain)

    def _append_connection(self, srcs, src_type, target_lists, target_set,
                           target_type, loc, receptor, weight, delay, lamtha,
                           allow_autapses, probability, conn_seed, threshold, gain):
        weight = check_nonnegative(weight, "weight")
        delay = check_nonnegative(delay, "delay")
        lamtha = check_positive(lamtha, "lamtha")
        allow_autapses = check_bool(allow_autapses, "allow_autapses")
        probability = check_number(probability, "probability", low=0.0,
                                   low_inclusive=False, high=1.0)
        conn_seed = check_int(conn_seed, "conn_seed", allow_none=True)
        threshold = check_number(self.threshold if threshold is None else threshold,
                                 "threshold")
        gain = check_nonnegative(gain, "gain")

        gid_pairs = {}
        for src_gid, targets in zip(srcs, target_lists):
            targets = [int(t) for t in targets]
            if not allow_autapses:
                targets = [t for t in targets if t != src_gid]
            gid_pairs[src_gid] = targets
        if probability != 1.0:
            gid_pairs = _prune_pairs(gid_pairs, probability, conn_seed)

        conn = Connection()
        conn["src_type"] = src_type
        conn["target_type"] = target_type
        conn["num_srcs"] = len(srcs)
        conn["num_targets"] = len(target_set)
        conn["src_gids"] = set(srcs)
        conn["target_gids"] = set(target_set)
        conn["gid_pairs"] = gid_pairs
        conn["loc"] = loc
        conn["receptor"] = receptor
        conn["nc_dict"] = {
            "A_weight": weight,
            "A_delay": delay,
            "lamtha": lamtha,
            "threshold": threshold,
            "gain": gain,
        }
        conn["probability"] = probability
        conn["allow_autapses"] = allow_autapses
        self.connectivity.append(conn)

    def clear_connectivity(self):
        """Remove all cell-to-cell connection rules (drive connections stay)."""
        self.connectivity = [conn for conn in self.connectivity
                             if conn["src_type"] in self.external_drives]

    def clear_drives(self):
        """Remove all drives, their connection rules, gids and positions."""
        self.connectivity = [conn for conn in self.connectivity
                             if conn["src_type"] not in self.external_drives]
        for name in self.external_drives:
            self._n_gids -= len(self.gid_ranges.pop(name))
            self.pos_dict.pop(name, None)
        self.external_drives = {}

    def synaptic_netcons(self, conn_idx):
        """The NetCons of one connection rule with distance-scaled weight and delay.

        For a pair at in-plane (x, y) distance ``d`` (um) between the somata
        (a drive cell sits at ``pos_dict['origin']``), with
        ``s = lamtha * inplane_distance`` and ``f = exp(-d**2 / s**2)``::

            weight = A_weight * gain * f      (uS)
            delay  = A_delay / f              (ms)

        Parameters
        ----------
        conn_idx : int
            Index into ``connectivity``.

        Returns
        -------
        list of (int, int, float, float)
            ``(src_gid, target_gid, weight_uS, delay_ms)`` for every pair,
            sources in the rule's order, each source's targets in order.
        """
        conn_idx = check_int(conn_idx, "conn_idx", low=-len(self.connectivity),
                             high=len(self.connectivity) - 1)
        conn = self.connectivity[conn_idx]
        nc = conn["nc_dict"]
        pairs = [(s, t) for s, targets in conn["gid_pairs"].items() for t in targets]
        if not pairs:
            return []
        src_type = conn["src_type"]
        target_type = conn["target_type"]
        src_xy = np.array([self._position(s, src_type)[:2] for s, _ in pairs], dtype=float)
        target_xy = np.array([self._position(t, target_type)[:2] for _, t in pairs],
                             dtype=float)
        factor = _distance_factor(src_xy, target_xy, nc["lamtha"] * self._inplane_distance)
        weights = (nc["A_weight"] * nc["gain"]) * factor
        delays = nc["A_delay"] / factor
        return [(int(s), int(t), float(w), float(d))
                for (s, t), w, d in zip(pairs, weights, delays)]

    # -- drives -------------------------------------------------------------
    def _check_drive_name(self, name):
        check_type(name, str, "name")
        if not name:
            raise ValueError("name must be a non-empty str, got ''")
        if name in self.external_drives or name in self.gid_ranges or name == "origin":
            raise ValueError(f"name must be a new drive name, got {name!r} (already in use)")

    def _drive_targets(self, weights_ampa, weights_nmda, synaptic_delays, location,
                       probability):
        """Target cell types and per-type weights, delays and probabilities."""
        weights = {}
        for arg_name, receptor, given in (("weights_ampa", "ampa", weights_ampa),
                                          ("weights_nmda", "nmda", weights_nmda)):
            if given is None:
                continue
            check_type(given, dict, arg_name)
            for cell_type, value in given.items():
                check_option(cell_type, list(self.cell_types), f"{arg_name} key")
                value = check_nonnegative(value, f"{arg_name}[{cell_type!r}]")
                weights.setdefault(cell_type, {})[receptor] = value
        targets = [ct for ct in self.cell_types if ct in weights]
        if not targets:
            raise ValueError(
                "weights_ampa and weights_nmda must give a weight for at least one "
                "cell type, got none"
            )
        # ampa before nmda for every target, as rules are added in that order
        weights = {ct: {rec: weights[ct][rec] for rec in ("ampa", "nmda")
                        if rec in weights[ct]} for ct in targets}

        check_type(location, str, "location")
        if not any(location in self._reachable_locations(ct) for ct in targets):
            groups = sorted({loc for ct in targets
                             for loc, secs in self.cell_types[ct].sect_loc.items() if secs})
            raise ValueError(
                f"location must be one of {', '.join(repr(g) for g in groups)} or a "
                f"section name of the targeted cell types, got {location!r}")
        for cell_type in targets:
            if location not in self._reachable_locations(cell_type):
                raise ValueError(
                    f"location must be reachable on every targeted cell type, got "
                    f"{location!r}, which {cell_type} cells have no synapses at; "
                    f"remove {cell_type} from weights_ampa/weights_nmda"
                )

        def per_type(value, arg_name, check):
            if isinstance(value, dict):
                if set(value) != set(targets):
                    raise ValueError(
                        f"{arg_name} must be one number or a dict with the targeted "
                        f"cell types {targets} as keys, got keys {sorted(value)}"
                    )
                return {ct: check(value[ct], f"{arg_name}[{ct!r}]") for ct in targets}
            value = check(value, arg_name)
            return {ct: value for ct in targets}

        delays = per_type(synaptic_delays, "synaptic_delays", check_nonnegative)

        def check_prob(value, arg_name):
            return check_number(value, arg_name, low=0.0, low_inclusive=False, high=1.0)

        probabilities = per_type(probability, "probability", check_prob)
        return targets, weights, delays, probabilities

    def _attach_drive(self, name, drive, *, weights_ampa, weights_nmda, location,
                      space_constant, synaptic_delays, n_drive_cells, cell_specific,
                      probability, targets_info=None):
        """Give a drive its gids, positions and connection rules."""
        if targets_info is None:
            targets_info = self._drive_targets(weights_ampa, weights_nmda,
                                               synaptic_delays, location, probability)
        targets, weights, delays, probabilities = targets_info
        space_constant = check_positive(space_constant, "space_constant")
        cell_specific = check_bool(cell_specific, "cell_specific")
        if cell_specific:
            if n_drive_cells != "n_cells":
                raise ValueError(
                    "n_drive_cells must be 'n_cells' when cell_specific is True, got "
                    f"{n_drive_cells!r}"
                )
        else:
            if isinstance(n_drive_cells, str):
                raise ValueError(
                    "n_drive_cells must be a positive int when cell_specific is False, "
                    f"got {n_drive_cells!r}"
                )
            n_drive_cells = check_int(n_drive_cells, "n_drive_cells", low=1)

        if self._legacy_mode:
            # The HNN GUI connected every drive to every cell type, with zero
            # weights where none was given; this shifts all later gids.
            for cell_type in self.cell_types:
                weights.setdefault(cell_type, {"ampa": 0.0})
                delays.setdefault(cell_type, 0.1)
                probabilities.setdefault(cell_type, 1.0)
            targets = list(self.cell_types)

        for cell_type in targets:
            if location in self._reachable_locations(cell_type):
                for receptor in weights[cell_type]:
                    self._check_receptor(cell_type, location, receptor)

        if n_drive_cells == "n_cells":
            n_drive_cells = sum(len(self.gid_ranges[ct]) for ct in targets)

        drive["name"] = name
        drive["target_types"] = list(targets)
        drive["cell_specific"] = cell_specific
        drive["n_drive_cells"] = n_drive_cells
        drive["space_constant"] = space_constant
        self.external_drives[name] = drive
        self._add_gid_range(name, n_drive_cells)
        self.pos_dict[name] = [self.pos_dict["origin"]] * n_drive_cells

        drive_gids = list(self.gid_ranges[name])
        first = 0
        # Each target type gets its own pruning seed so that sparse drives to
        # different cell types are drawn independently.
        for seed_offset, cell_type in enumerate(targets):
            cell_gids = list(self.gid_ranges[cell_type])
            if cell_specific:
                srcs = drive_gids[first:first + len(cell_gids)]
                first += len(cell_gids)
                target_lists = [[gid] for gid in cell_gids]
            else:
                srcs = drive_gids
                target_lists = [list(cell_gids) for _ in srcs]
            for receptor, weight in weights[cell_type].items():
                self._append_connection(
                    srcs, name, target_lists, set(cell_gids), cell_type, location,
                    receptor, weight, delays[cell_type], space_constant, True,
                    probabilities[cell_type], drive["conn_seed"] + seed_offset,
                    None, 1.0)

    def _new_drive(self, drive_type, location, n_drive_cells, event_seed, conn_seed,
                   dynamics, weights_ampa, weights_nmda, synaptic_delays, probability):
        drive = Drive()
        drive["type"] = drive_type
        drive["location"] = location
        drive["n_drive_cells"] = n_drive_cells
        drive["cell_specific"] = None
        drive["event_seed"] = check_int(event_seed, "event_seed")
        drive["conn_seed"] = check_int(conn_seed, "conn_seed")
        drive["dynamics"] = dynamics
        drive["weights_ampa"] = None if weights_ampa is None else dict(weights_ampa)
        drive["weights_nmda"] = None if weights_nmda is None else dict(weights_nmda)
        drive["synaptic_delays"] = (dict(synaptic_delays)
                                    if isinstance(synaptic_delays, dict)
                                    else synaptic_delays)
        drive["probability"] = (dict(probability) if isinstance(probability, dict)
                                else probability)
        drive["space_constant"] = None
        drive["events"] = []
        return drive

    def add_evoked_drive(self, name, *, mu, sigma, numspikes, location,
                         n_drive_cells="n_cells", cell_specific=True, weights_ampa=None,
                         weights_nmda=None, space_constant=3.0, synaptic_delays=0.1,
                         probability=1.0, event_seed=2, conn_seed=3, seedcore=None):
        """Add an evoked drive: Gaussian-distributed event times around ``mu``.

        Parameters
        ----------
        name : str
            Unique name of the drive (its gids get this name).
        mu : float
            Mean event time (ms).
        sigma : float
            Standard deviation of the event times (ms), >= 0.
        numspikes : int
            Events per drive cell and trial, >= 1.
        location : str
            ``'proximal'``, ``'distal'`` or a section/``'soma'``; every
            targeted cell type must have synapses there (L5 basket cells
            receive no distal input).
        n_drive_cells : int | 'n_cells'
            ``'n_cells'`` (with ``cell_specific=True``): one drive cell per
            targeted cell. An int (with ``cell_specific=False``): that many
            drive cells, each connected to all targeted cells.
        cell_specific : bool
            One-to-one (True) or all-to-all (False) drive cells.
        weights_ampa, weights_nmda : dict of str to float | None
            Synaptic weights (uS) per targeted cell type; the union of their
            keys are the targets.
        space_constant : float
            Space constant of the weight/delay fall-off with distance from
            the column origin, in units of the in-plane grid spacing.
        synaptic_delays : float | dict of str to float
            Delay (ms) at the origin, one for all targets or one per target.
        probability : float | dict of str to float
            Connection probability in (0, 1], one or per target.
        event_seed : int
            Seed of the event times (varied per drive cell and trial).
        conn_seed : int
            Seed of the pruning when ``probability < 1``.
        seedcore : int | None
            Old name of ``event_seed``; used instead of it when given.
        """
        self._check_drive_name(name)
        if seedcore is not None:
            event_seed = seedcore
        mu = check_number(mu, "mu")
        sigma = check_nonnegative(sigma, "sigma")
        numspikes = check_int(numspikes, "numspikes", low=1)
        drive = self._new_drive(
            "evoked", location, n_drive_cells, event_seed, conn_seed,
            {"mu": mu, "sigma": sigma, "numspikes": numspikes},
            weights_ampa, weights_nmda, synaptic_delays, probability)
        self._attach_drive(
            name, drive, weights_ampa=weights_ampa, weights_nmda=weights_nmda,
            location=location, space_constant=space_constant,
            synaptic_delays=synaptic_delays, n_drive_cells=n_drive_cells,
            cell_specific=cell_specific, probability=probability)

    def add_poisson_drive(self, name, *, tstart=0, tstop=None, rate_constant, location,
                          n_drive_cells="n_cells", cell_specific=True, weights_ampa=None,
                          weights_nmda=None, space_constant=100.0, synaptic_delays=0.1,
                          probability=1.0, event_seed=2, conn_seed=3):
        """Add a Poisson drive: events at a constant rate between ``tstart`` and ``tstop``.

        Parameters
        ----------
        name : str
            Unique name of the drive.
        tstart : float
            Start of the event trains (ms), >= 0.
        tstop : float | None
            End of the event trains (ms), > ``tstart``; None: the end of the
            simulation.
        rate_constant : float | dict of str to float
            Event rate (Hz), > 0: one for all targets, or one per targeted
            cell type (needs ``cell_specific=True``).
        location, n_drive_cells, cell_specific, weights_ampa, weights_nmda, \
space_constant, synaptic_delays, probability, event_seed, conn_seed
            As for :meth:`add_evoked_drive` (``space_constant`` defaults to
            100).
        """
        self._check_drive_name(name)
        tstart = check_nonnegative(tstart, "tstart")
        if tstop is not None:
            # the GUI's legacy files may hold trains that end before they start
            tstop = check_number(tstop, "tstop", low=None if self._legacy_mode else tstart,
                                 low_inclusive=False)
        targets_info = self._drive_targets(weights_ampa, weights_nmda, synaptic_delays,
                                           location, probability)
        targets = targets_info[0]
        if isinstance(rate_constant, dict):
            for cell_type, rate in rate_constant.items():
                check_option(cell_type, list(self.cell_types), "rate_constant key")
                check_positive(rate, f"rate_constant[{cell_type!r}]")
            missing = [ct for ct in targets if ct not in rate_constant]
            if missing:
                raise ValueError(
                    f"rate_constant must have a rate for every targeted cell type, got "
                    f"none for {missing}"
                )
            if not check_bool(cell_specific, "cell_specific"):
                raise ValueError(
                    "rate_constant must be one number when cell_specific is False, got "
                    f"{rate_constant!r}"
                )
            rate_constant = {ct: float(rate) for ct, rate in rate_constant.items()}
        else:
            rate_constant = check_positive(rate_constant, "rate_constant")
            if cell_specific is True:
                rate_constant = {ct: rate_constant for ct in targets}
        drive = self._new_drive(
            "poisson", location, n_drive_cells, event_seed, conn_seed,
            {"tstart": tstart, "tstop": tstop, "rate_constant": rate_constant},
            weights_ampa, weights_nmda, synaptic_delays, probability)
        self._attach_drive(
            name, drive, weights_ampa=weights_ampa, weights_nmda=weights_nmda,
            location=location, space_constant=space_constant,
            synaptic_delays=synaptic_delays, n_drive_cells=n_drive_cells,
            cell_specific=cell_specific, probability=probability,
            targets_info=targets_info)

    def add_bursty_drive(self, name, *, tstart=0, tstart_std=0, tstop=None, location,
                         burst_rate, burst_std=0, numspikes=2, spike_isi=10,
                         n_drive_cells=1, cell_specific=False, weights_ampa=None,
                         weights_nmda=None, synaptic_delays=0.1, space_constant=100.0,
                         probability=1.0, event_seed=2, conn_seed=3):
        """Add a bursty drive: rhythmic bursts of ``numspikes`` events.

        Parameters
        ----------
        name : str
            Unique name of the drive.
        tstart : float
            Time (ms) of the first burst, >= 0.
        tstart_std : float
            Standard deviation (ms) of a per-trial jitter of ``tstart``, >= 0.
        tstop : float | None
            End of the bursts (ms), > ``tstart``; None: end of the simulation.
        location : str
            As for :meth:`add_evoked_drive`.
        burst_rate : float
            Bursts per second (Hz), > 0.
        burst_std : float
            Standard deviation (ms) of each burst's time, >= 0.
        numspikes : int
            Events per burst, >= 1.
        spike_isi : float
            Interval (ms) between the events of a burst, >= 0; a burst must
            fit in one period ``1000 / burst_rate``.
        n_drive_cells, cell_specific, weights_ampa, weights_nmda, synaptic_delays, \
space_constant, probability, event_seed, conn_seed
            As for :meth:`add_evoked_drive` (defaults: one drive cell,
            all-to-all, ``space_constant`` 100).
        """
        self._check_drive_name(name)
        tstart = check_nonnegative(tstart, "tstart")
        tstart_std = check_nonnegative(tstart_std, "tstart_std")
        if tstop is not None:
            # the GUI's legacy files may hold trains that end before they start
            tstop = check_number(tstop, "tstop", low=None if self._legacy_mode else tstart,
                                 low_inclusive=False)
        burst_rate = check_positive(burst_rate, "burst_rate")
        burst_std = check_nonnegative(burst_std, "burst_std")
        numspikes = check_int(numspikes, "numspikes", low=1)
        spike_isi = check_nonnegative(spike_isi, "spike_isi")
        period = 1000.0 / burst_rate
        if (numspikes - 1) * spike_isi > period:
            raise ValueError(
                f"spike_isi must let a burst of {numspikes} events fit in one burst "
                f"period ({period} ms), got {spike_isi} (burst of "
                f"{(numspikes - 1) * spike_isi} ms)"
            )
        drive = self._new_drive(
            "bursty", location, n_drive_cells, event_seed, conn_seed,
            {"tstart": tstart, "tstart_std": tstart_std, "tstop": tstop,
             "burst_rate": burst_rate, "burst_std": burst_std,
             "numspikes": numspikes, "spike_isi": spike_isi},
            weights_ampa, weights_nmda, synaptic_delays, probability)
        self._attach_drive(
            name, drive, weights_ampa=weights_ampa, weights_nmda=weights_nmda,
            location=location, space_constant=space_constant,
            synaptic_delays=synaptic_delays, n_drive_cells=n_drive_cells,
            cell_specific=cell_specific, probability=probability)

    def _add_drives_from_params(self):
        from .params import extract_drive_specs

        specs = extract_drive_specs(self._params, legacy_mode=self._legacy_mode)
        adders = {"evoked": self.add_evoked_drive, "gaussian": self.add_evoked_drive,
                  "poisson": self.add_poisson_drive, "bursty": self.add_bursty_drive}
        added = []
        # alphabetical order fixes the gids (evdist1, evprox1, evprox2, ...)
        for name in sorted(specs):
            kwargs = dict(specs[name])
            drive_type = kwargs.pop("type", None)
            if drive_type is None:
                drive_type = ("evoked" if "mu" in kwargs else
                              "poisson" if "rate_constant" in kwargs else "bursty")
            check_option(drive_type, list(adders), f"type of drive {name!r}")
            adders[drive_type](name, **kwargs)
            added.append(name)
        # The HNN GUI seeded a parameter-file drive by absolute gid, not by the
        # drive cell's index: shift the seed by the drive's first gid.
        for name in added:
            self.external_drives[name]["event_seed"] += self.gid_ranges[name][0]

    def _drive_cell_target_types(self, name):
        """Cell type fed by each cell of drive ``name``, in gid order (None: no target)."""
        first_target = {}
        for conn in self.connectivity:
            if conn["src_type"] != name:
                continue
            for gid in conn["src_gids"]:
                first_target.setdefault(gid, conn["target_type"])
        return [first_target.get(gid) for gid in self.gid_ranges[name]]

    def _instantiate_drives(self, tstop, n_trials=1, trial_seeds=None):
        """Draw every drive cell's event times for ``n_trials`` trials.

        Fills ``external_drives[name]['events'][trial][i]``, the sorted event
        times (ms, in (0, tstop]) of drive cell ``i``, with
        :func:`hnnfit.drives.drive_event_times`. Seeds advance by the
        network's total gid count per trial, as in the reference.

        Parameters
        ----------
        tstop : float
            End of the simulation (ms).
        n_trials : int
            Number of trials.
        trial_seeds : sequence of int | None
            Trial indices whose random streams trial 0, 1, ... use (default
            ``range(n_trials)``); see :func:`hnnfit.drives.instantiate_drive_events`.
        """
        from .drives import instantiate_drive_events

        tstop = check_positive(tstop, "tstop")
        n_trials = check_int(n_trials, "n_trials", low=1)
        for drive in self.external_drives.values():
            drive["events"] = []
        for name, drive in self.external_drives.items():
            # a cell-specific drive cell feeds one cell type, whose Poisson
            # rate it uses; other drive cells feed every target alike
            target_types = (self._drive_cell_target_types(name)
                            if drive["cell_specific"] else None)
            drive["events"] = instantiate_drive_events(
                drive, self.gid_ranges[name], target_types, tstop, n_trials,
                n_gids=self._n_gids, trial_seeds=trial_seeds)

    # -- plotting -----------------------------------------------------------
    def plot_cells(self, ax=None, show=True):
        """Plot the cell positions (see :func:`hnnfit.viz.plot_cells`).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .viz import plot_cells

        return plot_cells(self, ax=ax, show=show)


def jones_2009_model(params=None, add_drives_from_params=False, legacy_mode=False,
                     mesh_shape=None):
    """The Jones et al. (2009) column with its 16 cell-to-cell connection rules.

    Parameters
    ----------
    params : dict | str | pathlib.Path | None
        Parameter set or file; None: hnnfit's default set
        (:func:`hnnfit.params.default_params`).
    add_drives_from_params : bool
        Also add the drives the parameter set defines (before the
        cell-to-cell rules, as in the reference).
    legacy_mode : bool
        See :class:`Network`.
    mesh_shape : tuple of int | None
        ``(n_x, n_y)`` pyramidal grid of each layer; None: the parameter
        set's ``N_pyr_x`` and ``N_pyr_y`` (see :class:`Network`).

    Returns
    -------
    Network
        Synaptic weights come from the parameter set's ``gbar_<src>_<target>``
        keys; all delays are 1 ms at zero distance.

    References
    ----------
    Jones SR et al. (2009) Quantitative analysis and biophysically realistic
    neural modeling of the MEG mu rhythm. J Neurophysiol 102:3554-3572.
    """
    return Network(params, add_drives_from_params=add_drives_from_params,
                   legacy_mode=legacy_mode, mesh_shape=mesh_shape, add_connections=True)


def neymotin_2020_model(params=None, add_drives_from_params=False, legacy_mode=False,
                        mesh_shape=None):
    """The same column under the name hnn-core >= 0.4 gives it.

    hnn-core's ``neymotin_2020_model`` is the network its
    ``jones_2009_model`` returns (the implementation described in
    Neymotin et al. 2020); scripts written for either name run unchanged.
    Parameters and return value: see :func:`jones_2009_model`.

    References
    ----------
    Neymotin SA et al. (2020) Human Neocortical Neurosolver (HNN), a new
    software tool for interpreting the cellular and network origin of human
    MEG/EEG data. eLife 9:e51214.
    """
    return jones_2009_model(params, add_drives_from_params=add_drives_from_params,
                            legacy_mode=legacy_mode, mesh_shape=mesh_shape)


def _evoked_keywords():
    import inspect

    return [p.name for p in inspect.signature(Network.add_evoked_drive).parameters.values()
            if p.kind is p.KEYWORD_ONLY]


def add_evoked_drives(net, specs, what="evoked drive"):
    """Add evoked drives described as plain data (a config file, JSON).

    Parameters
    ----------
    net : Network
        Changed in place.
    specs : list of dict
        Each dict holds :meth:`Network.add_evoked_drive`'s arguments:
        ``name``, ``mu`` and ``sigma`` (ms), ``location``, ``weights_ampa``
        and ``weights_nmda`` (uS per cell type), ``synaptic_delays`` (ms),
        ... ``numspikes`` defaults to 1, as in HNN's parameter files.
    what : str
        How an error message names one spec (e.g. ``"[[network.evoked_drives]]"``).

    Returns
    -------
    net : Network
        The same network, for chaining.

    Raises
    ------
    TypeError, ValueError
        A spec that is not a table with a string ``name``, or that
        :meth:`Network.add_evoked_drive` rejects; the message names the
        drive and the bad value.
    """
    check_type(net, Network, "net")
    if not isinstance(specs, (list, tuple)):
        raise TypeError(f"{what} must be a list of drive tables, got {specs!r}")
    known = _evoked_keywords()
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise TypeError(f"{what} #{i + 1} must be a table with a string 'name' and "
                            f"add_evoked_drive's keywords, got {spec!r}")
        kwargs = dict(spec)
        name = kwargs.pop("name")
        kwargs.setdefault("numspikes", 1)
        for key in kwargs:
            if key not in known:
                raise ValueError(f"key {key!r} of {what} {name!r} must be one of "
                                 f"{['name', *known]}, got {key!r}")
        missing = [k for k in ("mu", "sigma", "location") if k not in kwargs]
        if missing:
            raise ValueError(f"{what} {name!r} must give {missing}, got only "
                             f"{sorted(spec)}")
        try:
            net.add_evoked_drive(name, **kwargs)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{what} {name!r}: {err}") from None
    return net
