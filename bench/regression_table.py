"""Agreement of hnnfit's simulations with the reference implementation's outputs.

Simulates the shared reference cases (see ``reference/README.md`` in the
project's shared folder) and prints, per case and trial, the relative RMS
difference of the raw ``agg``, ``L2`` and ``L5`` dipoles and the spike count
of every cell type next to the reference's, as the markdown table the
benchmarks page shows::

    python bench/regression_table.py                     # all four cases
    python bench/regression_table.py --cases seed003_sparse --n-jobs 1

The reference folder defaults to ``reference/`` of the shared folder, that
is ``$HNNFIT_SHARED`` or ``../shared`` next to the repository.
``tests/test_regression.py`` imports the network builders and the
comparison of this module, so the test and the table share one computation.

A full-size 170 ms trial takes about a minute on one core; the four cases
hold six trials.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hnnfit import JoblibBackend, jones_2009_model, simulate_dipole  # noqa: E402

#: The reference cases, in the order the table lists them.
CASES = ("erp_default", "seed000_evoked", "seed003_all_to_all", "seed003_sparse")
CELL_TYPES = ("L2_basket", "L2_pyramidal", "L5_basket", "L5_pyramidal")
LAYERS = ("agg", "L2", "L5")

# the drives of the "simulate dipole for evoked inputs" example, in the order
# the reference added them: weights (uS) and delays (ms) per target
_PROX_DELAYS = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0, "L5_pyramidal": 1.0}
_EVOKED_EXAMPLE = (
    dict(name="evdist1", mu=63.53, sigma=3.85, location="distal",
         weights_ampa={"L2_basket": 0.006562, "L2_pyramidal": 0.000007,
                       "L5_pyramidal": 0.142300},
         weights_nmda={"L2_basket": 0.019482, "L2_pyramidal": 0.004317,
                       "L5_pyramidal": 0.080074},
         synaptic_delays={"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_pyramidal": 0.1}),
    dict(name="evprox1", mu=26.61, sigma=2.47, location="proximal",
         weights_ampa={"L2_basket": 0.08831, "L2_pyramidal": 0.01525,
                       "L5_basket": 0.19934, "L5_pyramidal": 0.00865},
         synaptic_delays=_PROX_DELAYS),
    dict(name="evprox2", mu=137.12, sigma=8.33, location="proximal",
         weights_ampa={"L2_basket": 0.000003, "L2_pyramidal": 1.438840,
                       "L5_basket": 0.008958, "L5_pyramidal": 0.684013},
         synaptic_delays=_PROX_DELAYS),
)


def default_reference_dir():
    """``reference/`` of the shared folder: ``$HNNFIT_SHARED`` or ``../shared``."""
    env = os.environ.get("HNNFIT_SHARED")
    return (Path(env) if env else REPO.parent / "shared") / "reference"


def build_network(case):
    """The network of one reference case (drives and connections, not simulated).

    Parameters
    ----------
    case : str
        One of :data:`CASES`.

    Returns
    -------
    hnnfit.Network
    """
    if case == "erp_default":
        return jones_2009_model(add_drives_from_params=True)
    if case == "seed000_evoked":
        net = jones_2009_model()
        for spec in _EVOKED_EXAMPLE:
            spec = dict(spec)
            net.add_evoked_drive(spec.pop("name"), numspikes=1, event_seed=4, **spec)
        return net
    if case in ("seed003_all_to_all", "seed003_sparse"):
        probability = 1.0 if case == "seed003_all_to_all" else 0.1
        net = jones_2009_model(add_drives_from_params=True)
        net.clear_connectivity()
        for target in ("L5_pyramidal", "L2_basket"):
            net.add_connection("L5_pyramidal", target, loc="distal", receptor="ampa",
                               weight=1.0, delay=1.0, lamtha=70.0,
                               probability=probability, conn_seed=3)
        for target in ("L5_pyramidal", "L2_basket"):
            net.add_connection("L2_basket", target, loc="soma", receptor="gabaa",
                               weight=1.0, delay=1.0, lamtha=70.0,
                               probability=probability, conn_seed=3)
        return net
    raise ValueError(f"case must be one of {list(CASES)}, got {case!r}")


@dataclass
class Reference:
    """The reference implementation's outputs for one case."""

    case: str
    meta: dict
    dipoles: list          # one DataFrame (time_ms, agg, L2, L5) per trial
    spikes: pd.DataFrame   # trial, time_ms, gid, type (times rounded to 1e-6 ms)
    events: dict           # drive -> gid_range, cell_specific, trials[k][i] (ms)

    def drive_spikes(self, trial):
        """``(gids, times)`` of the drive events of one trial within ``tstop``, at
        full precision, sorted by gid then time."""
        pairs = sorted((drive["gid_range"][0] + i, t)
                       for drive in self.events.values()
                       for i, times in enumerate(drive["trials"][trial])
                       for t in times if t <= self.meta["tstop"])
        return (np.array([g for g, _ in pairs], dtype=int),
                np.array([t for _, t in pairs], dtype=float))


def load_reference(case, reference_dir=None):
    """Read one case's folder of reference outputs.

    Parameters
    ----------
    case : str
        One of :data:`CASES`.
    reference_dir : path-like | None
        Folder holding one sub-folder per case (default:
        :func:`default_reference_dir`).

    Returns
    -------
    Reference
    """
    if case not in CASES:
        raise ValueError(f"case must be one of {list(CASES)}, got {case!r}")
    folder = Path(reference_dir or default_reference_dir()) / case
    if not folder.is_dir():
        raise FileNotFoundError(f"no reference folder for case {case!r} at {folder}")
    meta = json.loads((folder / "network.json").read_text())
    dipoles = [pd.read_csv(folder / f"dipole_trial{k}.csv") for k in range(meta["n_trials"])]
    events = json.loads((folder / "drive_events.json").read_text())
    return Reference(case, meta, dipoles, pd.read_csv(folder / "spikes.csv"), events)


def simulate_case(case, reference, n_jobs=2):
    """Build and simulate one case at the reference's duration, step and trials.

    Returns
    -------
    net : hnnfit.Network
        Holding the simulated spikes in ``net.cell_response``.
    dpls : list of hnnfit.Dipole
        Raw dipoles (nAm), one per trial.
    """
    meta = reference.meta
    net = build_network(case)
    with JoblibBackend(n_jobs=max(1, min(n_jobs, meta["n_trials"]))):
        dpls = simulate_dipole(net, tstop=meta["tstop"], dt=meta["dt"],
                               n_trials=meta["n_trials"], verbose=False)
    return net, dpls


def rel_rms(ours, ref):
    """Root-mean-square of ``ours - ref`` divided by the RMS of ``ref``."""
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    return float(np.sqrt(np.mean((ours - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


@dataclass
class TrialAgreement:
    """How one simulated trial compares with the reference's."""

    case: str
    trial: int
    time_max_diff: float                         # ms, largest time-axis difference
    dipole: dict = field(default_factory=dict)   # layer -> relative RMS difference
    spikes: dict = field(default_factory=dict)   # cell type -> (ours, reference)
    drive_event_max_diff: float = 0.0            # ms, drive spikes vs reference's events

    @property
    def counts_equal(self):
        return all(ours == ref for ours, ref in self.spikes.values())


def compare(case, cell_response, dpls, reference):
    """Per-trial agreement of a simulated case with its reference.

    Parameters
    ----------
    case : str
        Name the rows carry.
    cell_response : hnnfit.CellResponse
        The simulated spikes (``net.cell_response`` after the simulation).
    dpls : list of hnnfit.Dipole
        Raw dipoles (nAm), one per trial.
    reference : Reference

    Returns
    -------
    list of TrialAgreement
    """
    if len(dpls) != len(reference.dipoles):
        raise ValueError(f"{case}: {len(dpls)} simulated trials, the reference has "
                         f"{len(reference.dipoles)}")
    cr = cell_response
    if len(cr.spike_times) != len(dpls):
        raise ValueError(f"{case}: spikes of {len(cr.spike_times)} trials for "
                         f"{len(dpls)} dipoles")
    ranges = reference.meta["gid_ranges"]
    first_drive_gid = sum(ranges[t][1] - ranges[t][0] for t in CELL_TYPES)
    out = []
    for trial, (dpl, ref) in enumerate(zip(dpls, reference.dipoles)):
        t_ref = ref["time_ms"].to_numpy()
        if len(dpl.times) != len(t_ref):
            raise ValueError(f"{case} trial {trial}: {len(dpl.times)} time points, the "
                             f"reference has {len(t_ref)}")
        row = TrialAgreement(case, trial, float(np.abs(dpl.times - t_ref).max()))
        for layer in LAYERS:
            row.dipole[layer] = rel_rms(dpl.data[layer], ref[layer].to_numpy())
        types = pd.Series(cr.spike_types[trial], dtype=object)
        ref_spikes = reference.spikes[reference.spikes["trial"] == trial]
        for cell_type in CELL_TYPES:
            row.spikes[cell_type] = (int((types == cell_type).sum()),
                                     int((ref_spikes["type"] == cell_type).sum()))
        # drive cells' spikes against the events they were given (full precision)
        gids = np.asarray(cr.spike_gids[trial], dtype=int)
        times = np.asarray(cr.spike_times[trial], dtype=float)
        drive = gids >= first_drive_gid
        order = np.lexsort((times[drive], gids[drive]))
        ours_gids, ours = gids[drive][order], times[drive][order]
        ref_gids, theirs = reference.drive_spikes(trial)
        if not np.array_equal(ours_gids, ref_gids):
            row.drive_event_max_diff = float("inf")
        elif len(ours):
            row.drive_event_max_diff = float(np.abs(ours - theirs).max())
        out.append(row)
    return out


def format_table(rows):
    """The markdown table of a list of :class:`TrialAgreement`."""
    lines = ["| case | trial | agg | L2 | L5 | spikes (hnnfit / reference) "
             "| drive events max diff (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        counts = ", ".join(f"{t} {o}/{r}" for t, (o, r) in row.spikes.items())
        verdict = "identical" if row.counts_equal else "DIFFERENT"
        lines.append(f"| {row.case} | {row.trial} | {row.dipole['agg']:.2g} "
                     f"| {row.dipole['L2']:.2g} | {row.dipole['L5']:.2g} "
                     f"| {verdict}: {counts} | {row.drive_event_max_diff:.1g} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES,
                        metavar="CASE", help=f"cases to simulate (default: all of {CASES})")
    parser.add_argument("--reference-dir", type=Path, default=None,
                        help="folder of the reference outputs (default: "
                             "$HNNFIT_SHARED/reference or ../shared/reference)")
    parser.add_argument("--n-jobs", type=int, default=2,
                        help="worker processes for the trials of a case (default 2)")
    args = parser.parse_args(argv)
    if args.n_jobs < 1:
        parser.error(f"--n-jobs must be >= 1, got {args.n_jobs}")
    return run(args.cases, args.reference_dir, args.n_jobs)


def run(cases=CASES, reference_dir=None, n_jobs=2):
    """Simulate ``cases``, print their table and return its rows.

    Parameters
    ----------
    cases : sequence of str
        Names from :data:`CASES`.
    reference_dir : path-like | None
        See :func:`load_reference`.
    n_jobs : int
        Worker processes for the trials of a case.

    Returns
    -------
    list of TrialAgreement
    """
    rows = []
    for case in cases:
        reference = load_reference(case, reference_dir)
        start = time.perf_counter()
        net, dpls = simulate_case(case, reference, n_jobs=n_jobs)
        print(f"{case}: {len(dpls)} trial(s) simulated in "
              f"{time.perf_counter() - start:.1f} s")
        rows.extend(compare(case, net.cell_response, dpls, reference))
    print("\nRelative RMS difference of the raw dipole from the reference, and spikes "
          "per cell type:\n")
    print(format_table(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()
