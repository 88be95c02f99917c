"""Instantiate a :class:`~hnnfit.network.Network` in NEURON and run one trial.

This module (with the rest of :mod:`hnnfit.simulator`) is the only place
that touches NEURON. A :class:`NetworkModel` owns every NEURON object of one
built model; :meth:`NetworkModel.close` releases them so that the next
model in the same process starts from a clean slate. :func:`run_trial`
either builds a model per run (cold) or keeps one per process and only
replaces what differs between runs (warm).
"""
import hashlib
import pickle
import time

import numpy as np

from ..exceptions import SimulationError
from ..params import get_param
from ._compile import coreneuron_loaded, load_mechanisms
from ._rewrite import TABLE_SWITCHES


ENGINES = ("neuron", "coreneuron")

_LAYERS = {"L2_pyramidal": "L2", "L5_pyramidal": "L5"}


def _neuron():
    from neuron import h

    h.load_file("stdrun.hoc")
    return h


def _set_coreneuron(enable):
    """Switch CoreNEURON on or off for the next ``psolve``."""
    from neuron import coreneuron

    coreneuron.enable = bool(enable)
    if enable:
        coreneuron.verbose = 0      # no banner on every run


def _check_table_switches(h):
    """Refuse a CoreNEURON run with a rate table switched off: that build's
    look-ups are rewritten without the switch (see ``_rewrite``)."""
    off = [name for name in TABLE_SWITCHES if float(getattr(h, name, 1.0)) != 1.0]
    if off:
        raise SimulationError(
            f"{', '.join(off)} must be 1 for engine='coreneuron' (its table "
            f"look-ups are always on), got 0; use engine='neuron' to run "
            f"without the tables")


def structure_key(net, record_vsoma=False, engine="neuron"):
    """Hash of everything that fixes the NEURON objects of a built model.

    Two networks with the same key build the same cells, drive cells,
    NetCons and recordings in the same order; they may differ only in what
    :meth:`NetworkModel.update` changes in place (drive event times,
    NetCon weights and delays) and in the run settings (``tstop``, ``dt``,
    ``celsius``).

    Parameters
    ----------
    net : Network
        The network.
    record_vsoma : bool
        Whether somatic voltages are recorded (extra Vectors).
    engine : str
        ``'neuron'`` or ``'coreneuron'``.

    Returns
    -------
    key : str
        64 hexadecimal digits.
    """
    threshold = float(get_param(net._params, "threshold"))
    parts = [
        ("engine", engine, "vsoma", bool(record_vsoma), "threshold", threshold),
        ("gids", [(name, r.start, r.stop) for name, r in net.gid_ranges.items()]),
        # templates fix sections, mechanisms, synapses and the dipole wiring
        ("cells", [(ct, net.cell_types[ct]) for ct in net.cell_types]),
        ("pos", [(name, [tuple(map(float, p)) for p in pts])
                 for name, pts in net.pos_dict.items() if name != "origin"]),
        ("drives", [(name, net.gid_ranges[name].start, net.gid_ranges[name].stop)
                    for name in net.external_drives]),
    ]
    conns = []
    for conn in net.connectivity:
        pairs = [(int(s), tuple(int(t) for t in targets))
                 for s, targets in conn["gid_pairs"].items()]
        conns.append((conn["src_type"], conn["target_type"], conn["loc"],
                      conn["receptor"], conn["nc_dict"].get("threshold", threshold),
                      pairs))
    parts.append(("conns", conns))
    return hashlib.sha256(pickle.dumps(parts, protocol=4)).hexdigest()


class NetworkModel:
    """One NEURON instantiation of a network.

    The model can be run several times: :meth:`update` replaces the drive
    event times (of any trial) and the NetCon weights and delays by those
    of another network with the same :func:`structure_key`, and every
    :meth:`run` starts from the state a fresh build starts from.

    Parameters
    ----------
    net : Network
        The network description; it is read, never modified.
    trial_idx : int
        Which trial's drive events to play (``net.external_drives[...]['events']``
        must have been filled by ``net._instantiate_drives``).
    record_vsoma : bool
        Record the somatic voltage (mV) of every cell.
    engine : str
        ``'neuron'`` or ``'coreneuron'`` (the latter needs the CoreNEURON
        build of the mechanisms loaded first in this process).
    """

    def __init__(self, net, trial_idx=0, record_vsoma=False, engine="neuron"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.net = net
        self.trial_idx = trial_idx
        self.record_vsoma = record_vsoma
        self.engine = engine
        self.key = None
        self._h = None
        self._pc = None
        self._cells = {}
        self._drive_cells = {}      # drive name -> [(EventReplay, NetCon) | None]
        self._netcons = []          # per connection rule: per pair, [NetCon, ...]
        self._applied = []          # per connection rule: nc_dict values last applied
        self._dipole_vecs = {}
        self._vsoma_vecs = {}
        self._v_init = []
        self._built = False

    # -- building ---------------------------------------------------------
    def build(self):
        """Create cells, drive cells, connections and recordings in NEURON."""
        from ._cell import NeuronCell

        load_mechanisms(coreneuron=self.engine == "coreneuron")
        h = self._h = _neuron()
        pc = self._pc = h.ParallelContext()
        # A previous model in this process may have left gids registered.
        pc.gid_clear()
        h.CVode().active(0)
        h.cvode.cache_efficient(1 if self.engine == "coreneuron" else 0)

        net = self.net
        self.key = structure_key(net, self.record_vsoma, self.engine)
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

        # Only drive cells that feed at least one synapse exist in NEURON, as
        # in the reference implementation: a cell-specific drive thinned by
        # ``probability`` loses the cells whose connection was dropped, and
        # their spikes are not recorded (the network sees none of them).
        connected = {int(src) for conn in net.connectivity
                     for src, targets in conn["gid_pairs"].items() if len(targets)}
        for name in net.external_drives:
            arts = []
            for gid in net.gid_ranges[name]:
                if gid not in connected:
                    arts.append(None)
                    continue
                art = h.EventReplay()
                nc = h.NetCon(art, None)
                nc.threshold = threshold
                pc.set_gid2node(gid, 0)
                pc.cell(gid, nc)
                arts.append((art, nc))
            self._drive_cells[name] = arts

        self._spike_times = h.Vector()
        self._spike_gids = h.Vector()
        self._play_vec = h.Vector()
        pc.spike_record(-1, self._spike_times, self._spike_gids)

        for conn_idx, conn in enumerate(net.connectivity):
            receptor = conn["receptor"]
            loc = conn["loc"]
            threshold_nc = conn["nc_dict"].get("threshold", threshold)
            per_pair = []
            for src_gid, target_gid, _, _ in net.synaptic_netcons(conn_idx):
                target = self._cells[target_gid]
                ncs = []
                for sec_name in target.sections_for_loc(loc):
                    nc = pc.gid_connect(src_gid, target.synapse(sec_name, receptor))
                    nc.threshold = threshold_nc
                    ncs.append(nc)
                per_pair.append(ncs)
            self._netcons.append(per_pair)
            self._applied.append(None)
        self._times = h.Vector().record(h._ref_t)

        # The potential of every node as built (each section at its
        # template's v0); every run starts from it, since finitialize()
        # without an argument keeps whatever v a previous run left.
        self._v_init = []
        for cell in self._cells.values():
            for sec in cell.sections.values():
                self._v_init.append((sec, [seg.v for seg in sec.allseg()]))
        self._built = True
        self.update(net, self.trial_idx)
        return self

    def update(self, net, trial_idx=0):
        """Take over ``net``'s drive events of ``trial_idx`` and its NetCon
        weights (uS) and delays (ms).

        Parameters
        ----------
        net : Network
            A network with this model's :func:`structure_key`.
        trial_idx : int
            Which trial's drive events to play.

        Raises
        ------
        SimulationError
            If ``net`` has a different structure or lacks events for the trial.
        """
        if not self._built:
            raise SimulationError("the model must be built before it is updated")
        key = structure_key(net, self.record_vsoma, self.engine)
        if key != self.key:
            raise SimulationError(
                "net must have the structure of the built model (cells, positions, "
                "connections, drive gids); build a new model instead")
        h = self._h
        for name, drive in net.external_drives.items():
            events = drive["events"]
            if not events or len(events) <= trial_idx:
                raise SimulationError(
                    f"drive {name!r} has no events for trial {trial_idx}; "
                    "call net._instantiate_drives(tstop, n_trials) first"
                )
            trial_events = events[trial_idx]
            vec = self._play_vec
            for idx, cell in enumerate(self._drive_cells[name]):
                if cell is None:      # a drive cell without connections
                    continue
                art = cell[0]
                times = np.sort(np.asarray(trial_events[idx], dtype=float))
                # play() copies the times into the cell's own buffer, so one
                # Vector serves every cell, filled element by element: in
                # NEURON 9.0 each new h.Vector leaks ~100 B, and from_python()
                # was seen keeping memory across trials (tracemalloc, one
                # full-size run); either adds up over a fit's trials
                vec.resize(len(times))
                for i, t in enumerate(times.tolist()):
                    vec.x[i] = t
                art.play(vec)
        for conn_idx, conn in enumerate(net.connectivity):
            nc_dict = conn["nc_dict"]
            stamp = (float(nc_dict["A_weight"]), float(nc_dict["A_delay"]),
                     float(nc_dict["gain"]), float(nc_dict["lamtha"]),
                     float(net._inplane_distance))
            if self._applied[conn_idx] == stamp:
                continue
            for ncs, (_, _, weight, delay) in zip(self._netcons[conn_idx],
                                                  net.synaptic_netcons(conn_idx)):
                for nc in ncs:
                    nc.weight[0] = weight
                    nc.delay = delay
            self._applied[conn_idx] = stamp
        self.net = net
        self.trial_idx = trial_idx
        return self

    # -- running ----------------------------------------------------------
    def run(self, tstop, dt=0.025, progress=None, n_threads=1, deadline=None):
        """Integrate from 0 to ``tstop`` (ms) with fixed step ``dt`` (ms).

        Parameters
        ----------
        deadline : float | None
            Wall-clock time (``time.time()``, s) after which the run stops
            with :class:`~hnnfit.exceptions.SimulationError`; checked every
            10 ms of simulated time (under CoreNEURON only before the run).
        n_threads : int
            Threads NEURON (or CoreNEURON) integrates the cells with.
        progress : callable | None
            Called as ``progress(t_ms)`` every 10 ms of simulated time
            (under CoreNEURON only at the end: it integrates in one go).

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
        # steps of exactly dt; psolve would otherwise allow larger ones (also
        # recomputes the minimum NetCon delay after update())
        if int(pc.nthread()) != n_threads:
            pc.nthread(n_threads)
        pc.set_maxstep(10)
        for sec, values in self._v_init:
            for seg, v in zip(sec.allseg(), values):
                seg.v = v
        self._spike_times.resize(0)
        self._spike_gids.resize(0)
        core = self.engine == "coreneuron"
        if core:
            _check_table_switches(h)
        if core or coreneuron_loaded():
            _set_coreneuron(core)
        try:
            # no argument: each node keeps the potential restored above
            h.finitialize()
            h.fcurrent()
            _check_deadline(deadline, 0.0)
            if core:
                pc.psolve(tstop)
            else:
                chunk = 10.0
                t_next = chunk
                while t_next < tstop:
                    pc.psolve(t_next)
                    if progress is not None:
                        progress(float(h.t))
                    _check_deadline(deadline, float(h.t))
                    t_next += chunk
                pc.psolve(tstop)
        finally:
            if core:
                _set_coreneuron(False)
        if progress is not None:
            progress(float(h.t))

        # np.array() copies through the buffer protocol; Vector.as_numpy()
        # leaks ~400 B per call in NEURON 9.0, which adds up in fit workers
        # that run thousands of trials
        out = {"times": np.array(self._times)}
        n = len(out["times"])
        dipole = {}
        for gid in sorted(self._dipole_vecs):
            cell_type, vec = self._dipole_vecs[gid]
            arr = np.array(vec)
            if len(arr) != n:
                raise SimulationError(
                    f"dipole of gid {gid} has {len(arr)} samples, expected {n}"
                )
            key = _LAYERS.get(cell_type, cell_type)
            if key in dipole:
                dipole[key] = dipole[key] + arr
            else:
                dipole[key] = arr
        for key in ("L2", "L5"):
            dipole.setdefault(key, np.zeros(n))
        out["dipole"] = dipole
        out["spike_times"] = np.array(self._spike_times)
        out["spike_gids"] = np.array(self._spike_gids).astype(int)
        out["vsoma"] = {gid: np.array(vec) for gid, vec in self._vsoma_vecs.items()}
        return out

    def close(self):
        """Release every NEURON object this model created."""
        if self._pc is not None:
            self._pc.gid_clear()
        self._netcons.clear()
        self._applied.clear()
        self._drive_cells.clear()
        self._dipole_vecs.clear()
        self._vsoma_vecs.clear()
        self._v_init = []
        self._cells.clear()
        self._times = None
        self._play_vec = None
        self._built = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# The warm model of this process: kept between simulations so that a fit's
# evaluations, which mostly change drive timings and synaptic weights, skip
# the build. Only one at a time (NEURON's gids are process-global).
_WARM = {"model": None}


def release_warm_model():
    """Drop the model kept by warm runs in this process (if any)."""
    model = _WARM["model"]
    _WARM["model"] = None
    if model is not None:
        model.close()


def warm_model_key():
    """:func:`structure_key` of the warm model of this process, or None."""
    model = _WARM["model"]
    return None if model is None else model.key


def _check_deadline(deadline, t_ms):
    if deadline is not None and time.time() > deadline:
        raise SimulationError(
            f"time-out: the simulation passed its time limit at t = {t_ms:.1f} ms")


def run_trial(net, trial_idx, tstop, dt=0.025, record_vsoma=False, verbose=False,
              *, warm=False, engine="neuron", n_threads=1, deadline=None):
    """Simulate one trial of ``net`` in this process.

    Cold (``warm=False``): build the model, run it, tear it down, leaving
    no NEURON object behind. Warm: reuse this process's kept model when
    ``net`` has its :func:`structure_key` (only event times, weights and
    delays are replaced), else build and keep a new one; the result is
    bit-identical to a cold run. ``n_threads`` threads integrate the
    cells (see :meth:`NetworkModel.run`). Past ``deadline`` (``time.time()``
    seconds) the run stops with a time-out :class:`SimulationError`.

    Returns
    -------
    dict
        See :meth:`NetworkModel.run`; plus ``build_s`` (0 for a reused
        model), ``run_s``, ``trial_idx`` and ``reused``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    progress = None
    if verbose:
        def progress(t_ms):
            print(f"Trial {trial_idx + 1}: {t_ms:.1f} ms...", flush=True)

    t0 = time.perf_counter()
    reused = False
    try:
        if warm:
            model = _WARM["model"]
            key = structure_key(net, record_vsoma, engine)
            if model is not None and model.key == key:
                model.update(net, trial_idx)
                reused = True
            else:
                release_warm_model()
                model = NetworkModel(net, trial_idx=trial_idx, record_vsoma=record_vsoma,
                                     engine=engine)
                try:
                    model.build()
                except BaseException:
                    model.close()
                    raise
                _WARM["model"] = model
            t1 = time.perf_counter()
            try:
                out = model.run(tstop, dt=dt, progress=progress, n_threads=n_threads,
                                deadline=deadline)
            except SimulationError:
                # a run stopped half-way leaves the kept model mid-simulation
                release_warm_model()
                raise
            t2 = time.perf_counter()
        else:
            # a kept model holds the process's gids
            release_warm_model()
            with NetworkModel(net, trial_idx=trial_idx, record_vsoma=record_vsoma,
                              engine=engine) as model:
                model.build()
                t1 = time.perf_counter()
                out = model.run(tstop, dt=dt, progress=progress, n_threads=n_threads,
                                deadline=deadline)
                t2 = time.perf_counter()
    except RuntimeError as err:
        # NEURON reports hoc-level failures as RuntimeError
        release_warm_model()
        raise SimulationError(f"NEURON failed in trial {trial_idx}: {err}") from err
    out["build_s"] = t1 - t0
    out["run_s"] = t2 - t1
    out["trial_idx"] = trial_idx
    out["reused"] = reused
    return out
