"""The four cell types of the HNN neocortical column, described as plain data.

A :class:`CellTemplate` says everything the simulator needs to build one
cell: the sections with their geometry and membrane properties, how they
are joined, which channels they carry (with distance-dependent densities
as :class:`DistanceRule` objects), which synaptic receptors sit on which
section and where proximal and distal inputs land. Nothing here imports
NEURON, so templates can be pickled and sent to worker processes.

Values come from the cell keys of an HNN parameter set (``L2Pyr_soma_L``,
``L5Pyr_dend_gbar_ca``, ...). The basket cells have no parameter keys:
their fixed values are those of the published model (Jones et al. 2009).

Units: lengths and diameters in um, ``cm`` in uF/cm2, ``Ra`` in ohm cm,
conductance densities in S/cm2 (``km`` and ``ca`` in pS/um2, as their
mechanisms expect), reversal potentials in mV, time constants in ms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .params import CELL_TYPES, SHORT_NAMES
from .validation import check_number, check_option, check_type

__all__ = [
    "CELL_TYPES",
    "PARAM_PREFIX",
    "RECEPTORS",
    "CellTemplate",
    "DistanceRule",
    "SectionSpec",
    "cell_template",
    "nseg_for_length",
]

#: Prefix of each cell type's keys in HNN parameter files.
PARAM_PREFIX = SHORT_NAMES

RECEPTORS = ("ampa", "nmda", "gabaa", "gabab")

#: Somatic voltage (mV) whose upward crossing counts as a spike when the
#: parameter set has no ``threshold`` key.
DEFAULT_SPIKE_THRESHOLD = 0.0


@dataclass(frozen=True)
class DistanceRule:
    """A channel density that depends on path distance from the soma.

    The distance ``d`` (um) is measured along the dendritic tree from the
    soma's 0 end (the end the basal dendrites leave from) to the centre of
    the segment being set.

    Two shapes are supported:

    ``'exponential'``
        ``at_zero * (slope * exp(rate * d) + offset)``
    ``'linear'``
        rises linearly from ``at_zero`` at ``d = 0`` to ``far_value`` at
        ``d = kink`` and stays at ``far_value`` beyond.

    Parameters
    ----------
    kind : {'exponential', 'linear'}
        Shape of the profile.
    at_zero : float
        Scale (exponential) or value at the soma (linear), in the units of
        the parameter it sets.
    rate : float
        Exponential rate, 1/um.
    offset : float
        Constant added inside the exponential form (dimensionless).
    slope : float
        Factor of the exponential term (dimensionless).
    far_value : float | None
        Linear form: value reached at ``kink``.
    kink : float | None
        Linear form: distance (um) where the value stops changing.
    """

    kind: str
    at_zero: float
    rate: float = 0.0
    offset: float = 0.0
    slope: float = 1.0
    far_value: float | None = None
    kink: float | None = None

    def __post_init__(self):
        check_option(self.kind, ("exponential", "linear"), "kind")
        check_number(self.at_zero, "at_zero")
        check_number(self.rate, "rate")
        check_number(self.offset, "offset")
        check_number(self.slope, "slope")
        if self.kind == "linear":
            check_number(self.far_value, "far_value")
            check_number(self.kink, "kink", low=0.0, low_inclusive=False)

    def value(self, distance_um):
        """Density at ``distance_um`` (um) from the soma's 0 end."""
        d = check_number(distance_um, "distance_um", low=0.0)
        if self.kind == "exponential":
            return self.at_zero * (self.slope * math.exp(self.rate * d) + self.offset)
        frac = min(d, self.kink) / self.kink
        return self.at_zero + frac * (self.far_value - self.at_zero)


@dataclass
class SectionSpec:
    """One unbranched cable of a cell.

    Parameters
    ----------
    L : float
        Length, um.
    diam : float
        Diameter, um.
    Ra : float
        Axial resistivity, ohm cm.
    cm : float
        Specific membrane capacitance, uF/cm2.
    nseg : int
        Number of segments.
    end_pts : list of [x, y, z]
        3-D points of the 0 end and the 1 end (um) for a cell whose soma
        starts at the origin; the simulator translates them to the cell's
        position.
    mechs : dict
        ``{mechanism: {parameter: value}}``, parameter names without the
        mechanism suffix (``{'hh2': {'gkbar': 0.01}}``); a value may be a
        :class:`DistanceRule`.
    syns : list of str
        Receptors present on this section (synapse at its middle).
    v0 : float
        Membrane potential the section starts from, mV, when the
        simulation is initialised without an explicit voltage.
    """

    L: float
    diam: float
    Ra: float
    cm: float
    nseg: int
    end_pts: list
    mechs: dict = field(default_factory=dict)
    syns: list = field(default_factory=list)
    v0: float = -65.0


@dataclass
class CellTemplate:
    """Everything needed to build one cell of a given type.

    Attributes
    ----------
    cell_type : str
        One of :data:`CELL_TYPES`.
    sections : dict of str to SectionSpec
        Ordered, ``'soma'`` first.
    topology : list of (child, child_end, parent, parent_loc)
        How sections are joined: the ``child_end`` (0 or 1) of ``child``
        attaches at ``parent_loc`` (0 to 1) along ``parent``; parents are
        listed before their children.
    synapses : dict
        receptor -> ``{'e': mV, 'tau1': ms, 'tau2': ms}`` (double
        exponential synapses).
    sect_loc : dict
        ``'proximal'``/``'distal'`` -> names of the sections such inputs
        land on (empty if the cell type cannot receive them).
    is_pyramidal : bool
        Pyramidal cells carry the current dipole.
    dipole_axis : str | None
        Section whose direction defines the dipole axis.
    spike_threshold : float
        Somatic voltage (mV, soma middle) whose upward crossing is a spike.
    """

    cell_type: str
    sections: dict
    topology: list
    synapses: dict
    sect_loc: dict
    is_pyramidal: bool
    dipole_axis: str | None
    spike_threshold: float = DEFAULT_SPIKE_THRESHOLD

    @property
    def synapse_names(self):
        """Names ``f"{section}_{receptor}"`` of all synapses, in build order."""
        return [f"{name}_{rec}" for name, sec in self.sections.items() for rec in sec.syns]

    def parent_of(self, section):
        """``(parent, parent_loc, child_end)`` of ``section``; None for the root."""
        check_option(section, list(self.sections), "section")
        for child, child_end, parent, parent_loc in self.topology:
            if child == section:
                return parent, parent_loc, child_end
        return None

    def path_distance(self, section, x):
        """Path distance (um) from the soma's 0 end to ``x`` along ``section``.

        This is the distance used by :class:`DistanceRule`; sections are
        assumed to hang from their parent by one end, as all sections of
        the HNN cells do.
        """
        x = check_number(x, "x", low=0.0, high=1.0)
        parent = self.parent_of(section)
        length = self.sections[section].L
        if parent is None:
            return x * length
        pname, ploc, child_end = parent
        start = self.path_distance(pname, ploc)
        along = x if child_end == 0 else 1.0 - x
        return start + along * length

    def segment_centers(self, section):
        """Relative positions (0-1) of the centres of ``section``'s segments."""
        nseg = self.sections[section].nseg
        return [(2 * i + 1) / (2.0 * nseg) for i in range(nseg)]

    def cos_to_axis(self, section):
        """Cosine of the angle between ``section`` and the dipole axis section."""
        if self.dipole_axis is None:
            raise ValueError(f"cell type {self.cell_type!r} has no dipole axis")
        a = _direction(self.sections[self.dipole_axis].end_pts)
        b = _direction(self.sections[section].end_pts)
        na = math.sqrt(sum(c * c for c in a))
        nb = math.sqrt(sum(c * c for c in b))
        return sum(p * q for p, q in zip(a, b)) / (na * nb)


def _direction(end_pts):
    return [end_pts[1][i] - end_pts[0][i] for i in range(3)]


def nseg_for_length(L):
    """Number of segments for a section of length ``L`` (um).

    One segment up to 100 um; beyond, about one per 50 um, rounded to the
    next odd number so that the section's middle is a segment centre.
    """
    L = check_number(L, "L", low=0.0, low_inclusive=False)
    if L <= 100.0:
        return 1
    nseg = int(L / 50.0)
    return nseg if nseg % 2 else nseg + 1


# ---------------------------------------------------------------------------
# Shape of the pyramidal cells (soma 0 end at the origin, apical dendrite
# along +z). Only the directions of these reference points matter: each
# section is laid out from its parent's attachment point with its own
# length (see _layout).

_PYR_DIRECTIONS = {
    "L2_pyramidal": {
        "soma": (0.0, 0.0, 1.0),
        "apical_trunk": (0.0, 0.0, 1.0),
        "apical_oblique": (-1.0, 0.0, 0.0),
        "apical_1": (0.0, 0.0, 1.0),
        "apical_tuft": (0.0, 0.0, 1.0),
        "basal_1": (0.0, 0.0, -1.0),
        "basal_2": (-106.0, 0.0, -106.0),
        "basal_3": (106.0, 0.0, -106.0),
    },
    "L5_pyramidal": {
        "soma": (0.0, 0.0, 1.0),
        "apical_trunk": (0.0, 0.0, 1.0),
        "apical_oblique": (-1.0, 0.0, 0.0),
        "apical_1": (0.0, 0.0, 1.0),
        "apical_2": (0.0, 0.0, 1.0),
        "apical_tuft": (0.0, 0.0, 1.0),
        "basal_1": (0.0, 0.0, -1.0),
        "basal_2": (-106.0, 0.0, -106.0),
        "basal_3": (106.0, 0.0, -106.0),
    },
}

# (child, child_end, parent, parent_loc); parents before children
_PYR_TOPOLOGY = {
    "L2_pyramidal": [
        ("apical_trunk", 0, "soma", 1.0),
        ("basal_1", 0, "soma", 0.0),
        ("apical_1", 0, "apical_trunk", 1.0),
        ("apical_oblique", 0, "apical_trunk", 1.0),
        ("apical_tuft", 0, "apical_1", 1.0),
        ("basal_2", 0, "basal_1", 1.0),
        ("basal_3", 0, "basal_1", 1.0),
    ],
    "L5_pyramidal": [
        ("apical_trunk", 0, "soma", 1.0),
        ("basal_1", 0, "soma", 0.0),
        ("apical_1", 0, "apical_trunk", 1.0),
        ("apical_oblique", 0, "apical_trunk", 1.0),
        ("apical_2", 0, "apical_1", 1.0),
        ("apical_tuft", 0, "apical_2", 1.0),
        ("basal_2", 0, "basal_1", 1.0),
        ("basal_3", 0, "basal_1", 1.0),
    ],
}

# Section order used when building (and naming synapses): soma first.
_PYR_SECTIONS = {
    "L2_pyramidal": ["soma", "apical_trunk", "apical_1", "apical_tuft",
                     "apical_oblique", "basal_1", "basal_2", "basal_3"],
    "L5_pyramidal": ["soma", "apical_trunk", "apical_1", "apical_2",
                     "apical_tuft", "apical_oblique", "basal_1", "basal_2",
                     "basal_3"],
}

# Starting potentials (mV) of the published model.
_PYR_V0 = {
    "L2_pyramidal": {name: -71.46 for name in _PYR_SECTIONS["L2_pyramidal"]},
    "L5_pyramidal": {
        "soma": -72.0, "apical_trunk": -72.0, "apical_oblique": -72.0,
        "apical_1": -71.32, "apical_2": -69.08, "apical_tuft": -67.30,
        "basal_1": -72.0, "basal_2": -72.0, "basal_3": -72.0,
    },
}

# mechanism -> parameters read from '<prefix>_<soma|dend>_<param>_<mech>'
_PYR_MECHS = {
    "L2_pyramidal": {
        "hh2": ("gkbar", "gnabar", "gl", "el"),
        "km": ("gbar",),
    },
    "L5_pyramidal": {
        "hh2": ("gkbar", "gnabar", "gl", "el"),
        "ca": ("gbar",),
        "cad": ("taur",),
        "kca": ("gbar",),
        "km": ("gbar",),
        "cat": ("gbar",),
        "ar": ("gbar",),
    },
}

# Growth rate (1/um) of the L5 dendritic h-current density with distance
# from the soma (Jones et al. 2009).
_L5_AR_RATE = 3e-3

_PYR_SECT_LOC = {
    "proximal": ["apical_oblique", "basal_2", "basal_3"],
    "distal": ["apical_tuft"],
}

# Basket cells: one somatic compartment with fixed properties.
_BASKET_SOMA = dict(L=39.0, diam=20.0, Ra=200.0, cm=0.85, v0=-64.9737)
# hh2 at its textbook squid-axon values (the mechanism's defaults)
_BASKET_HH2 = {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.0003, "el": -54.3}
_BASKET_SYNAPSES = {
    "ampa": {"e": 0.0, "tau1": 0.5, "tau2": 5.0},
    "nmda": {"e": 0.0, "tau1": 1.0, "tau2": 20.0},
    "gabaa": {"e": -80.0, "tau1": 0.5, "tau2": 5.0},
}
_BASKET_SECT_LOC = {
    "L2_basket": {"proximal": ["soma"], "distal": ["soma"]},
    # no distal input reaches layer-5 interneurons
    "L5_basket": {"proximal": ["soma"], "distal": []},
}


def _get(params, key):
    try:
        value = params[key]
    except KeyError:
        raise ValueError(f"params must contain the key {key!r}, got no such key") from None
    return check_number(value, key)


def _layout(names, topology, lengths, directions):
    """3-D end points of every section, soma 0 end at the origin.

    Each section starts where it attaches to its parent and runs for its
    own length along its direction, so changing a length moves the whole
    subtree beyond it.
    """
    pts = {}
    for name in names:
        d = directions[name]
        norm = math.sqrt(sum(c * c for c in d))
        unit = [c / norm for c in d]
        if name == names[0]:
            start = [0.0, 0.0, 0.0]
        else:
            (_, child_end, parent, ploc), = [t for t in topology if t[0] == name]
            p0, p1 = pts[parent]
            start = [p0[i] + ploc * (p1[i] - p0[i]) for i in range(3)]
        end = [start[i] + lengths[name] * unit[i] for i in range(3)]
        pts[name] = [start, end]
    return pts


def _pyramidal_template(cell_type, params):
    prefix = PARAM_PREFIX[cell_type]
    names = _PYR_SECTIONS[cell_type]
    geometry = {}
    for name in names:
        # keys spell section names without underscores: 'apical_1' -> 'apical1'
        key = name.replace("_", "")
        L = _get(params, f"{prefix}_{key}_L")
        diam = _get(params, f"{prefix}_{key}_diam")
        where = "soma" if name == "soma" else "dend"
        Ra = _get(params, f"{prefix}_{where}_Ra")
        cm = _get(params, f"{prefix}_{where}_cm")
        geometry[name] = (L, diam, Ra, cm)

    topology = _PYR_TOPOLOGY[cell_type]
    end_pts = _layout(names, topology, {n: g[0] for n, g in geometry.items()},
                      _PYR_DIRECTIONS[cell_type])

    sections = {}
    for name in names:
        where = "soma" if name == "soma" else "dend"
        mechs = {}
        for mech, pnames in _PYR_MECHS[cell_type].items():
            mechs[mech] = {p: _get(params, f"{prefix}_{where}_{p}_{mech}") for p in pnames}
        if cell_type == "L5_pyramidal" and name != "soma":
            # dendritic h-current grows exponentially away from the soma;
            # the parameter gives its density at the soma
            mechs["ar"]["gbar"] = DistanceRule(
                "exponential", at_zero=mechs["ar"]["gbar"], rate=_L5_AR_RATE)
        L, diam, Ra, cm = geometry[name]
        syns = ["gabaa", "gabab"] if name == "soma" else list(RECEPTORS)
        sections[name] = SectionSpec(
            L=L, diam=diam, Ra=Ra, cm=cm, nseg=nseg_for_length(L),
            end_pts=end_pts[name], mechs=mechs, syns=syns,
            v0=_PYR_V0[cell_type][name])

    synapses = {
        rec: {q: _get(params, f"{prefix}_{rec}_{q}") for q in ("e", "tau1", "tau2")}
        for rec in RECEPTORS
    }
    return CellTemplate(
        cell_type=cell_type,
        sections=sections,
        topology=list(topology),
        synapses=synapses,
        sect_loc={k: list(v) for k, v in _PYR_SECT_LOC.items()},
        is_pyramidal=True,
        dipole_axis="apical_trunk",
        spike_threshold=_threshold(params),
    )


def _basket_template(cell_type, params):
    s = _BASKET_SOMA
    soma = SectionSpec(
        L=s["L"], diam=s["diam"], Ra=s["Ra"], cm=s["cm"],
        nseg=nseg_for_length(s["L"]),
        end_pts=[[0.0, 0.0, 0.0], [0.0, 0.0, s["L"]]],
        mechs={"hh2": dict(_BASKET_HH2)},
        syns=list(_BASKET_SYNAPSES), v0=s["v0"])
    return CellTemplate(
        cell_type=cell_type,
        sections={"soma": soma},
        topology=[],
        synapses={k: dict(v) for k, v in _BASKET_SYNAPSES.items()},
        sect_loc={k: list(v) for k, v in _BASKET_SECT_LOC[cell_type].items()},
        is_pyramidal=False,
        dipole_axis=None,
        spike_threshold=_threshold(params),
    )


def _threshold(params):
    if "threshold" in params:
        return check_number(params["threshold"], "threshold")
    return DEFAULT_SPIKE_THRESHOLD


def cell_template(cell_type, params):
    """Describe one cell type with the values of a parameter set.

    Parameters
    ----------
    cell_type : {'L2_basket', 'L2_pyramidal', 'L5_basket', 'L5_pyramidal'}
        Which cell.
    params : dict
        HNN parameters; pyramidal cells need their ``L2Pyr_*``/``L5Pyr_*``
        geometry, membrane, channel and synapse keys. The optional
        ``threshold`` key (mV) sets the spike threshold.

    Returns
    -------
    CellTemplate
        A fresh template (no state shared with other calls).

    Raises
    ------
    ValueError
        If ``cell_type`` is unknown or a required key is missing.
    """
    check_option(cell_type, CELL_TYPES, "cell_type")
    check_type(params, dict, "params")
    if cell_type.endswith("pyramidal"):
        return _pyramidal_template(cell_type, params)
    return _basket_template(cell_type, params)
