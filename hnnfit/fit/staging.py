"""Stages of an evoked-response fit: which drives, which window, which weights.

An evoked response is shaped in time order: the first proximal drive makes
the early deflection, the distal drive the middle one, the second proximal
drive the late one. Fitting every parameter at once asks a solver to untangle
all of them from one number; fitting them in order lets each stage look at
the part of the waveform its drives shape, with the earlier drives already
fitted. :func:`plan_evoked_stages` turns a network's evoked drives into such
stages:

* drives are ordered by their mean time ``mu``; drives whose spike-time
  ranges ``mu +- 3 sigma`` overlap are fitted together (one group);
* a group's weight on the waveform rises as its first events arrive and
  falls as the next group's arrive. With ``Phi`` the normal CDF, a group
  whose earliest drive has mean ``mu`` and spread ``s = max(sigma, 1 ms)``
  followed by a group with ``mu'`` and ``s'``::

      w(t) = Phi((t - (mu - s)) / s) * (1 - Phi((t - mu') / s'))

  so the weight is 1/2 one ``s`` before the group's mean (the first events
  have arrived), and 1/2 at the next group's mean (half of its events have
  arrived). The last group's weight does not fall;
* a stage is scored on the target times where its weight is at least
  :data:`WEIGHT_FLOOR`, and its simulations stop at the end of that window
  (plus half a smoothing window, so smoothing inside the window sees the
  same samples as a full-length run);
* a final stage fits every parameter on the whole waveform, unweighted.

Parameters of the space that belong to no evoked drive (Poisson or bursty
drives, ``set_params`` hooks) are fitted in the final stage only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from ..validation import check_number, check_type

# Times whose weight is below this are outside a stage's window.
WEIGHT_FLOOR = 0.01
# Drives' spike-time ranges: mean +- SPREAD_SIGMAS sigma.
SPREAD_SIGMAS = 3.0
# Smallest time scale of a weight edge (ms): drives with sigma = 0 still get
# a smooth edge.
MIN_EDGE = 1.0
FINAL = "final"


@dataclass(frozen=True)
class Stage:
    """One stage of a staged fit.

    Attributes
    ----------
    name : str
        The stage's label in the study (its drives joined by ``'+'``, or
        ``'final'``).
    drives : tuple of str
        The evoked drives fitted (empty for the final stage).
    params : tuple of str
        Names of the parameters fitted in this stage.
    rise : tuple of float | None
        ``(centre, scale)`` (ms) of the weight's rising edge; None: no edge.
    fall : tuple of float | None
        ``(centre, scale)`` (ms) of the falling edge; None: no edge.
    t_start, t_end : float
        The scored window (ms): where the weight is at least
        :data:`WEIGHT_FLOOR`, within the target's times.
    """

    name: str
    drives: tuple = ()
    params: tuple = ()
    rise: tuple | None = None
    fall: tuple | None = None
    t_start: float = 0.0
    t_end: float = math.inf

    @property
    def is_final(self):
        return self.name == FINAL

    def weights(self, times):
        """Weight (0..1) of each time point (ms) for this stage's score."""
        t = np.asarray(times, dtype=float)
        w = np.ones_like(t)
        if self.rise is not None:
            w = w * ndtr((t - self.rise[0]) / self.rise[1])
        if self.fall is not None:
            w = w * ndtr((self.fall[0] - t) / self.fall[1])   # 1 - Phi, without cancellation
        return w

    def to_dict(self):
        return {"name": self.name, "drives": list(self.drives), "params": list(self.params),
                "rise": None if self.rise is None else list(self.rise),
                "fall": None if self.fall is None else list(self.fall),
                "t_start": self.t_start, "t_end": self.t_end}

    @classmethod
    def from_dict(cls, d):
        return cls(name=d["name"], drives=tuple(d["drives"]), params=tuple(d["params"]),
                   rise=None if d["rise"] is None else tuple(d["rise"]),
                   fall=None if d["fall"] is None else tuple(d["fall"]),
                   t_start=float(d["t_start"]), t_end=float(d["t_end"]))


@dataclass
class _Group:
    drives: list = field(default_factory=list)
    first_mu: float = math.inf
    first_sigma: float = 0.0
    end: float = -math.inf       # latest mu + 3 sigma of its drives


def _drive_of(name, drive_names):
    # longest drive name that prefixes the parameter (drive names may hold dots)
    best = None
    for d in drive_names:
        if name.startswith(d + ".") and (best is None or len(d) > len(best)):
            best = d
    return best


def group_evoked_drives(net):
    """Evoked drives in time order, overlapping ones grouped.

    Parameters
    ----------
    net : Network

    Returns
    -------
    groups : list of list of str
        Drive names; each inner list is one group, groups in time order.
    """
    evoked = [(float(d["dynamics"]["mu"]), float(d["dynamics"]["sigma"]), n)
              for n, d in net.external_drives.items() if d["type"] == "evoked"]
    groups = []
    for mu, sigma, name in sorted(evoked):
        lo, hi = mu - SPREAD_SIGMAS * sigma, mu + SPREAD_SIGMAS * sigma
        if groups and lo <= groups[-1].end:
            g = groups[-1]
        else:
            g = _Group(first_mu=mu, first_sigma=sigma)
            groups.append(g)
        g.drives.append(name)
        g.end = max(g.end, hi)
    return groups


def plan_evoked_stages(net, space, times, smooth_window=0.0):
    """The stages of a staged evoked fit.

    Parameters
    ----------
    net : Network
        The network at its start values (drive means and spreads set the
        windows).
    space : ParameterSpace
        All fitted parameters; each stage takes those of its drives.
    times : array of float
        The target's time points (ms).
    smooth_window : float
        The objective's smoothing window (ms); a stage's simulation runs
        half of it past the window's end.

    Returns
    -------
    stages : list of Stage
        One stage per group of evoked drives that has fitted parameters, in
        time order, then the final stage (all parameters, no weighting).
        With a single group, only the final stage.

    Raises
    ------
    ValueError
        If the network has no evoked drive.
    """
    from .space import ParameterSpace

    check_type(space, ParameterSpace, "space")
    smooth_window = check_number(smooth_window, "smooth_window", low=0.0)
    times = np.asarray(times, dtype=float)
    groups = group_evoked_drives(net)
    if not groups:
        raise ValueError("net must have at least one evoked drive for a staged evoked "
                         "fit, got none")
    drive_names = list(net.external_drives)
    owner = {p: _drive_of(p, drive_names) for p in space.names}
    t_last = float(times[-1])
    stages = []
    edges = [(g.first_mu - max(g.first_sigma, MIN_EDGE), max(g.first_sigma, MIN_EDGE))
             for g in groups]
    for k, g in enumerate(groups):
        params = tuple(p for p in space.names if owner[p] in g.drives)
        if not params:
            continue
        rise = (edges[k][0], edges[k][1])
        fall = None
        if k + 1 < len(groups):
            nxt = groups[k + 1]
            fall = (nxt.first_mu, max(nxt.first_sigma, MIN_EDGE))
        stage = Stage(name="+".join(g.drives), drives=tuple(g.drives), params=params,
                      rise=rise, fall=fall)
        w = stage.weights(times)
        inside = np.flatnonzero(w >= WEIGHT_FLOOR)
        if not len(inside):
            raise ValueError(
                f"drive(s) {', '.join(g.drives)} act outside the target's times "
                f"({times[0]:g}-{t_last:g} ms); their stage would score nothing")
        stages.append(Stage(name=stage.name, drives=stage.drives, params=params,
                            rise=rise, fall=fall, t_start=float(times[inside[0]]),
                            t_end=float(times[inside[-1]])))
    final = Stage(name=FINAL, params=tuple(space.names), t_start=float(times[0]),
                  t_end=t_last)
    if len(stages) <= 1:
        return [final]
    return stages + [final]


def stage_sim_end(stage, times, smooth_window):
    """Last target time (ms) a stage simulates and compares up to."""
    times = np.asarray(times, dtype=float)
    end = stage.t_end + 0.5 * float(smooth_window)
    return float(times[times <= end][-1]) if (times <= end).any() else float(times[-1])


def split_budget(n_evals, stages, frozen=None):
    """Evaluations per stage for a total budget.

    The final stage gets 40% of the budget; the drive stages share the rest
    in proportion to their number of parameters (each at least 1). Stages in
    ``frozen`` keep the count they have (they are finished: a later stage
    has started from their best point); the rest of the budget is split
    among the others.

    Parameters
    ----------
    n_evals : int
        Total budget.
    stages : list of Stage
    frozen : dict | None
        ``{stage name: evaluations}`` of finished stages.

    Returns
    -------
    budgets : dict
        ``{stage name: evaluations}``.
    """
    frozen = dict(frozen or {})
    budgets = {s.name: frozen[s.name] for s in stages if s.name in frozen}
    free = [s for s in stages if s.name not in frozen]
    left = max(0, n_evals - sum(budgets.values()))
    if not free:
        return budgets
    final = [s for s in free if s.is_final]
    drive = [s for s in free if not s.is_final]
    if not drive:
        budgets[FINAL] = left
        return budgets
    if not final:
        drive_total = left
    else:
        drive_total = left - max(1, round(0.4 * left)) if len(stages) > 1 else 0
    sizes = np.array([len(s.params) for s in drive], dtype=float)
    shares = np.floor(drive_total * sizes / sizes.sum()).astype(int)
    shares = np.maximum(shares, 1)
    for s, n in zip(drive, shares):
        budgets[s.name] = int(n)
    if final:
        budgets[FINAL] = max(1, left - int(shares.sum()))
    return budgets


class StageObjective:
    """Evaluate a stage's parameters with every other parameter held fixed.

    Parameters
    ----------
    objective : DipoleObjective
        The stage's objective over the whole space (its target cut to the
        stage's window, its weights the stage's).
    fixed : dict
        Values of the parameters the stage does not fit (the best point
        found by the earlier stages).
    """

    def __init__(self, objective, fixed):
        self.objective = objective
        self.fixed = dict(fixed)

    @property
    def seeds(self):
        return self.objective.seeds

    def __call__(self, params, seeds=None):
        return self.objective({**self.fixed, **dict(params)}, seeds)
