"""Build one cell of a :class:`~hnnfit.cells.CellTemplate` in NEURON.

:class:`NeuronCell` owns every NEURON object of one cell (sections,
synapses, dipole mechanisms, recordings). Nothing is kept at module level:
dropping the last reference to a ``NeuronCell`` (and to the NetCons or
vectors handed out by it) removes the cell from NEURON.

The current dipole follows the HNN model (Jones et al. 2009): the axial
current between neighbouring nodes of a section, ``(v_prev - v) / ri``
(nA), times the projection of their spacing onto the cell's dipole axis
(um) gives each node's contribution in fA m; a cell's contributions are
summed each time step into one ``DipoleSum`` point process.
"""
from neuron import h

from ..cells import CellTemplate
from ..validation import (
    check_finite_array,
    check_int,
    check_number,
    check_option,
    check_type,
)
from ._compile import load_mechanisms

__all__ = ["NeuronCell"]


class NeuronCell:
    """One cell instantiated in NEURON.

    Parameters
    ----------
    template : CellTemplate
        What to build.
    gid : int | None
        Global id (only used to name the sections).
    pos : tuple of 3 floats
        Position (um) of the soma's 0 end; the template's 3-D points are
        translated by it.

    Attributes
    ----------
    sections : dict of str to nrn.Section
        The sections, in the template's order.
    synapses : dict of str to Exp2Syn
        Keyed ``f"{section}_{receptor}"``; each sits at its section's middle.
    dipole_sum : DipoleSum | None
        Pyramidal cells: accumulates the cell's dipole (fA m) every step.
    """

    def __init__(self, template, gid=None, pos=(0.0, 0.0, 0.0)):
        check_type(template, CellTemplate, "template")
        if gid is not None:
            gid = check_int(gid, "gid", low=0)
        pos = tuple(float(c) for c in check_finite_array(pos, "pos", ndim=1))
        if len(pos) != 3:
            raise ValueError(f"pos must have 3 coordinates, got {len(pos)}")
        load_mechanisms()
        self.template = template
        self.gid = gid
        self.pos = pos
        self.sections = {}
        self.synapses = {}
        self.dipole_sum = None
        self._dipole_tips = []
        self._stims = []
        self._dipole_vec = None
        self._create_sections()
        self._connect_sections()
        self._insert_mechanisms()
        self._create_synapses()
        if template.is_pyramidal:
            self._insert_dipole()

    def __repr__(self):
        return f"<NeuronCell {self.template.cell_type} gid={self.gid}>"

    @property
    def soma(self):
        """The somatic section."""
        return self.sections["soma"]

    # -- construction -----------------------------------------------------
    def _create_sections(self):
        t = self.template
        label = t.cell_type if self.gid is None else f"{t.cell_type}_{self.gid}"
        for name, spec in t.sections.items():
            sec = h.Section(name=f"{label}_{name}")
            # 3-D points place the cell in space (dipole, plots); L and diam
            # as read back from NEURON follow from them
            sec.pt3dclear()
            for pt in spec.end_pts:
                sec.pt3dadd(pt[0] + self.pos[0], pt[1] + self.pos[1],
                            pt[2] + self.pos[2], spec.diam)
            # The points already span L; assigning it pins the exact value
            # (the 3-D points are single precision).
            sec.L = spec.L
            sec.diam = spec.diam
            sec.Ra = spec.Ra
            sec.cm = spec.cm
            sec.nseg = spec.nseg
            self.sections[name] = sec

    def _connect_sections(self):
        for child, child_end, parent, parent_loc in self.template.topology:
            self.sections[child].connect(self.sections[parent](parent_loc), child_end)

    def _insert_mechanisms(self):
        t = self.template
        for name, spec in t.sections.items():
            sec = self.sections[name]
            for mech, values in spec.mechs.items():
                sec.insert(mech)
                for pname, value in values.items():
                    attr = f"{pname}_{mech}"
                    if hasattr(value, "value"):
                        for seg in sec:
                            setattr(seg, attr, value.value(t.path_distance(name, seg.x)))
                    else:
                        setattr(sec, attr, value)
            # Starting potential for runs initialised without an explicit
            # voltage (finitialize() keeps what is set here).
            sec.v = spec.v0

    def _create_synapses(self):
        t = self.template
        for name, spec in t.sections.items():
            for receptor in spec.syns:
                syn = h.Exp2Syn(self.sections[name](0.5))
                props = t.synapses[receptor]
                syn.e = props["e"]
                syn.tau1 = props["tau1"]
                syn.tau2 = props["tau2"]
                self.synapses[f"{name}_{receptor}"] = syn

    def _insert_dipole(self):
        t = self.template
        self.dipole_sum = h.DipoleSum(self.soma(0.5))
        qsum = self.dipole_sum._ref_q
        for name, spec in t.sections.items():
            sec = self.sections[name]
            sec.insert("dipole")
            # projection of a unit length of this section on the dipole axis
            proj = spec.L * t.cos_to_axis(name)
            # nodes: the 0 end, the segment centres, the 1 end
            nodes = [0.0] + [seg.x for seg in sec] + [1.0]
            for prev, x in zip(nodes[:-2], nodes[1:-1]):
                seg = sec(x)
                seg.dipole.ri = seg.ri()
                seg.dipole.ztan = (x - prev) * proj
                h.setpointer(sec(prev)._ref_v, "pv", seg.dipole)
                h.setpointer(qsum, "qsum", seg.dipole)
            # the 1-end node is not a segment centre: a point process there
            # carries the last half segment
            tip = h.DipoleTip(sec(1.0))
            tip.ri = sec(1.0).ri()
            tip.ztan = (1.0 - nodes[-2]) * proj
            h.setpointer(sec(nodes[-2])._ref_v, "pv", tip)
            h.setpointer(qsum, "qsum", tip)
            self._dipole_tips.append(tip)

    # -- used by the network builder --------------------------------------
    def synapse(self, section, receptor):
        """The Exp2Syn of ``receptor`` on ``section``.

        Raises
        ------
        ValueError
            If that section has no such receptor.
        """
        key = f"{section}_{receptor}"
        if key not in self.synapses:
            raise ValueError(
                f"synapse must be one of {sorted(self.synapses)}, got {key!r} "
                f"(cell type {self.template.cell_type!r})"
            )
        return self.synapses[key]

    def sections_for_loc(self, loc):
        """Names of the sections an input at ``loc`` lands on.

        ``'proximal'``/``'distal'`` map to the template's ``sect_loc``
        (possibly an empty list); a section name maps to itself.
        """
        if loc in self.template.sect_loc:
            return list(self.template.sect_loc[loc])
        options = list(self.template.sect_loc) + list(self.sections)
        check_option(loc, options, "loc")
        return [loc]

    def spike_detector_netcon(self, target=None, threshold=None):
        """A NetCon watching the somatic voltage (soma middle).

        Parameters
        ----------
        target : point process | None
            Where events go; None for a pure spike source (e.g. to hand
            to ``ParallelContext.cell``).
        threshold : float | None
            mV; default the template's ``spike_threshold``.
        """
        if threshold is None:
            threshold = self.template.spike_threshold
        threshold = check_number(threshold, "threshold")
        nc = h.NetCon(self.soma(0.5)._ref_v, target, sec=self.soma)
        nc.threshold = threshold
        return nc

    def spike_source(self, threshold=None):
        """Spike-source NetCon (no target) for ``ParallelContext.cell``."""
        return self.spike_detector_netcon(None, threshold)

    def record_vsoma(self):
        """A Vector recording the voltage (mV) at the soma's middle."""
        return h.Vector().record(self.soma(0.5)._ref_v)

    def record_dipole(self):
        """A Vector recording the cell's dipole (fA m) every time step.

        Raises
        ------
        ValueError
            For cells without a dipole (basket cells).
        """
        if self.dipole_sum is None:
            raise ValueError(
                f"cell type must be pyramidal to record a dipole, got "
                f"{self.template.cell_type!r}"
            )
        if self._dipole_vec is None:
            self._dipole_vec = h.Vector().record(self.dipole_sum._ref_q)
        return self._dipole_vec

    dipole_vector = record_dipole

    def add_iclamp(self, amp, delay, dur, section="soma", loc=0.5):
        """Inject a current step.

        Parameters
        ----------
        amp : float
            nA, positive depolarises.
        delay, dur : float
            Start and duration, ms.
        section : str
            Section name.
        loc : float
            Position along the section (0-1).

        Returns
        -------
        IClamp
            Kept alive by the cell as well.
        """
        check_option(section, list(self.sections), "section")
        loc = check_number(loc, "loc", low=0.0, high=1.0)
        stim = h.IClamp(self.sections[section](loc))
        stim.amp = check_number(amp, "amp")
        stim.delay = check_number(delay, "delay", low=0.0)
        stim.dur = check_number(dur, "dur", low=0.0)
        self._stims.append(stim)
        return stim
