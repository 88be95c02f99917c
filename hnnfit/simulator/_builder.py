"""Instantiate a :class:`~hnnfit.network.Network` in NEURON and run one trial.

This module (with the rest of :mod:`hnnfit.simulator`) is the only place
that touches NEURON. A :class:`NetworkModel` owns every NEURON object of one
built model; :meth:`NetworkModel.close` releases them so that the next
model in the same process starts from a clean slate.
"""
import time

import numpy as np

from ..exceptions import SimulationError
from ..params import get_param
from ._compile import load_mechanisms



def _neuron():
    from neuron import h

    h.load_file("stdrun.hoc")
    return h


class NetworkModel:
    """One NEURON instantiation of a network for one trial.

    Parameters
    ----------
    net : Network
        The network description; it is read, never modified.
    trial_idx : int
        Which trial's drive events to play (``net.external_drives[...]['events']``
        must have been filled by ``net._instantiate_drives``).
    record_vsoma : bool
        Record the somatic voltage (mV) of every cell.
    """

    def __init__(self, net, trial_idx=0, record_vsoma=False):
        self.net = net
        self.trial_idx = trial_idx
        self.record_vsoma = record_vsoma
        self._h = None
        self._pc = None
        self._cells = {}
        self._drive_cells = []
        self._netcons = []
        self._dipole_vecs = {}
        self._vsoma_vecs = {}
        self._built = False

    # -- building ---------------------------------------------------------
    def build(self):
        """Create cells, drive cells, connections and recordings in NEURON."""
        from ._cell import NeuronCell

        load_mechanisms()
        h = self._h = _neuron()
        pc = self._pc = h.ParallelContext()
        # A previous model in this process may have left gids registered.
        pc.gid_clear()
        h.CVode().active(0)

        net = self.net
        threshold = float(get_param(net._params, "threshold"))
        cell_gid_types = [ct for ct in net.cell_types if ct in net.gid_ranges]

        for cell_type in cell_gid_types:
            template = net.cell_types[cell_type]
            gids = net.gid_ranges[cell_type]
            for idx, gid in enumerate(gids):
                pos = net.pos_dict[cell_type][idx]
                cell = NeuronCell(template, gid=gid, pos=pos)
                pc.set_gid2node(gid, 0)
                pc.cell(gid, cell.spike_source(threshold))
                self._cells[gid] = cell
                if template.is_pyramidal:
                    self._dipole_vecs[gid] = (cell_type, cell.record_dipole())
                if self.record_vsoma:
                    self._vsoma_vecs[gid] = cell.record_vsoma()

        for name, drive in net.external_drives.items():
            events = drive["events"]
            if not events or len(events) <= self.trial_idx:
                raise SimulationError(
                    f"drive {name!r} has no events for trial {self.trial_idx}; "
                    "call net._instantiate_drives(tstop, n_trials) first"
                )
            trial_events = events[self.trial_idx]
            for idx, gid in enumerate(net.gid_ranges[name]):
                times = np.sort(np.asarray(trial_events[idx], dtype=float))
                vec = h.Vector(times)
                art = h.EventReplay()
                art.play(vec)
                nc = h.NetCon(art, None)
                nc.threshold = threshold
                pc.set_gid2node(gid, 0)
                pc.cell(gid, nc)
                self._drive_cells.append((art, vec, nc))

        self._spike_times = h.Vector()
        self._spike_gids = h.Vector()
        pc.spike_record(-1, self._spike_times, self._spike_gids)

        for conn_idx, conn in enumerate(net.connectivity):
            receptor = conn["receptor"]
            loc = conn["loc"]
            threshold_nc = conn["nc_dict"].get("threshold", threshold)
            for src_gid, target_gid, weight, delay in net.synaptic_netcons(conn_idx):
                target = self._cells[target_gid]
                for sec_name in target.sections_for_loc(loc):
                    nc = pc.gid_connect(src_gid, target.synapse(sec_name, receptor))
                    nc.threshold = threshold_nc
                    nc.weight[0] = weight
                    nc.delay = delay
                    self._netcons.append(nc)
        self._built = True
        return self

    # -- running ----------------------------------------------------------
    def run(self, tstop, dt=0.025, progress=None):
        """Integrate from 0 to ``tstop`` (ms) with fixed step ``dt`` (ms).

        Parameters
        ----------
        progress : callable | None
            Called as ``progress(t_ms)`` every 10 ms of simulated time.

        Returns
        -------
        dict
            ``times`` (ms), ``dipole`` {'L2', 'L5'} raw sums (fA*m),
            ``spike_times``, ``spike_gids``, ``vsoma`` {gid: array} and
            ``build_s``/``run_s`` wall times.
        """
        if not self._built:
            self.build()
        h, pc = self._h, self._pc
        h.dt = dt
        h.tstop = tstop
        h.celsius = float(get_param(self.net._params, "celsius"))
        # steps of exactly dt; psolve would otherwise allow larger ones
        pc.set_maxstep(10)
        times = h.Vector().record(h._ref_t)
        # no argument: each section keeps the resting potential its cell
        # template set (v0), as the reference does
        h.finitialize()
        h.fcurrent()
        chunk = 10.0
        t_next = chunk
        while t_next < tstop:
            pc.psolve(t_next)
            if progress is not None:
                progress(float(h.t))
            t_next += chunk
        pc.psolve(tstop)
        if progress is not None:
            progress(float(h.t))

        out = {"times": times.as_numpy().copy()}
        n = len(out["times"])
        layers = {"L2_pyramidal": "L2", "L5_pyramidal": "L5"}
        dipole = {}
        for gid in sorted(self._dipole_vecs):
            cell_type, vec = self._dipole_vecs[gid]
            arr = vec.as_numpy()
            if len(arr) != n:
                raise SimulationError(
                    f"dipole of gid {gid} has {len(arr)} samples, expected {n}"
                )
            key = layers.get(cell_type, cell_type)
            if key in dipole:
                dipole[key] = dipole[key] + arr
            else:
                dipole[key] = arr.copy()
        for key in ("L2", "L5"):
            dipole.setdefault(key, np.zeros(n))
        out["dipole"] = dipole
        out["spike_times"] = self._spike_times.as_numpy().copy()
        out["spike_gids"] = self._spike_gids.as_numpy().astype(int)
        out["vsoma"] = {gid: vec.as_numpy().copy() for gid, vec in self._vsoma_vecs.items()}
        return out

    def close(self):
        """Release every NEURON object this model created."""
        if self._pc is not None:
            self._pc.gid_clear()
        self._netcons.clear()
        self._drive_cells.clear()
        self._dipole_vecs.clear()
        self._vsoma_vecs.clear()
        self._cells.clear()
        self._built = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def run_trial(net, trial_idx, tstop, dt=0.025, record_vsoma=False, verbose=False):
    """Build ``net`` in NEURON, simulate one trial and tear the model down.

    This is the unit of work of every backend: it runs in the calling
    process or in a worker and leaves no NEURON object behind.

    Returns
    -------
    dict
        See :meth:`NetworkModel.run`.
    """
    progress = None
    if verbose:
        def progress(t_ms):
            print(f"Trial {trial_idx + 1}: {t_ms:.1f} ms...", flush=True)

    t0 = time.perf_counter()
    try:
        with NetworkModel(net, trial_idx=trial_idx, record_vsoma=record_vsoma) as model:
            model.build()
            t1 = time.perf_counter()
            out = model.run(tstop, dt=dt, progress=progress)
            t2 = time.perf_counter()
    except RuntimeError as err:
        # NEURON reports hoc-level failures as RuntimeError
        raise SimulationError(f"NEURON failed in trial {trial_idx}: {err}") from err
    out["build_s"] = t1 - t0
    out["run_s"] = t2 - t1
    out["trial_idx"] = trial_idx
    return out
