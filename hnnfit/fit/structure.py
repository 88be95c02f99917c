"""Structure search: which evoked drive a fitted model lacks, and whether adding it pays.

A fitted model can miss a feature of a recording no choice of its
parameters reaches: a hump the drives it has cannot produce. Trial noise
hides such a miss in a single score; the error budget
(:func:`hnnfit.fit.objective.error_budget`) does not, because it splits the
error of a ``k``-trial average, time point by time point, into the squared
bias of the model's mean waveform (``bias2_t``) and the trials' variance
(``var_t``). Where the bias exceeds what the variance of a ``k``-trial
average explains, the model is wrong there, not unlucky.

This module holds the analysis, on plain arrays and network descriptions:

:func:`residual_features`
    the time windows where the bias dominates, each with its peak, its sign
    and the squared error it costs beyond noise;
:func:`propose_drives`
    for each of the largest features, a proximal and a distal evoked drive
    timed before its peak, its weights scaled from the network's own drives
    of that location (HNN's convention: a proximal volley drives the
    dipole up, a distal one down, so the sign of the residual says which to
    try first);
:func:`compare_models`
    the expected scores of models judged on the same unseen trials, and the
    noise of their differences (a paired bootstrap over the trials), so that
    a model with more drives is kept only if it beats the simpler one by
    more than that noise.

Fitting the candidates is a recipe phase (:mod:`hnnfit.fit.recipe_runner`,
``add_drives``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validation import check_int, check_number
from .objective import error_budget

__all__ = ["Feature", "residual_features", "propose_drives", "compare_models",
           "gain_and_noise", "DRIVE_LATENCY"]

#: Milliseconds from an evoked drive's mean time to the dipole peak it causes
#: (the start value of a candidate's timing; its fit searches around it).
DRIVE_LATENCY = 10.0

# weights (uS) of HNN's default proximal and distal drives ('default.json'),
# the template of a location the network has no drive of
_DEFAULT_TEMPLATES = {
    "proximal": {"weights_ampa": {"L2_basket": 0.08831, "L2_pyramidal": 0.01525,
                                  "L5_basket": 0.19934, "L5_pyramidal": 0.00865},
                 "weights_nmda": {},
                 "synaptic_delays": {"L2_basket": 0.1, "L2_pyramidal": 0.1,
                                     "L5_basket": 1.0, "L5_pyramidal": 1.0}},
    "distal": {"weights_ampa": {"L2_basket": 0.006562, "L2_pyramidal": 7e-06,
                                "L5_pyramidal": 0.1423},
               "weights_nmda": {"L2_basket": 0.019482, "L2_pyramidal": 0.004317,
                                "L5_pyramidal": 0.080074},
               "synaptic_delays": {"L2_basket": 0.1, "L2_pyramidal": 0.1,
                                   "L5_pyramidal": 0.1}},
}


@dataclass(frozen=True)
class Feature:
    """A window where a model's mean waveform misses the target beyond noise.

    Attributes
    ----------
    t_start, t_end, t_peak : float
        The window and the time of its largest residual (ms).
    sign : int
        +1 if the target lies above the model's mean there, -1 below.
    residual : float
        The residual at the peak, target minus mean (nAm).
    excess : float
        Squared bias beyond the variance of a ``k``-trial average, summed
        over the window's time points (nAm^2 x points): how much of the
        expected squared error the feature costs.
    """

    t_start: float
    t_end: float
    t_peak: float
    sign: int
    residual: float
    excess: float

    def describe(self):
        """One line: where, which way, how large."""
        way = "above" if self.sign > 0 else "below"
        return (f"{self.t_start:.0f}-{self.t_end:.0f} ms, target {abs(self.residual):.1f} "
                f"nAm {way} the model at {self.t_peak:.0f} ms")


def residual_features(times, target, budget, k=3, min_width=3.0, smooth=5.0):
    """The windows where a model's bias exceeds what trial noise explains.

    Parameters
    ----------
    times : array of float
        Time points of the target (ms).
    target : array of float
        The target waveform (nAm).
    budget : dict
        An error budget on these time points (``mean``, ``bias2_t``,
        ``var_t``; :func:`hnnfit.fit.objective.error_budget`).
    k : int
        Trials averaged in the scores judged (the variance of an average is
        ``var_t / k``).
    min_width : float
        Windows shorter than this (ms) are ignored.
    smooth : float
        Width (ms) of the running mean applied to the bias and variance
        before they are compared, so that a window is not cut by single
        time points.

    Returns
    -------
    list of Feature
        Largest ``excess`` first.
    """
    times = np.asarray(times, dtype=float)
    target = np.asarray(target, dtype=float)
    k = check_int(k, "k", low=1)
    min_width = check_number(min_width, "min_width", low=0.0)
    smooth = check_number(smooth, "smooth", low=0.0)
    mean = np.asarray(budget["mean"], dtype=float)
    over = np.asarray(budget["bias2_t"], dtype=float) - np.asarray(budget["var_t"]) / k
    if times.size < 2:
        return []
    dt = float(np.median(np.diff(times)))
    width = max(1, int(round(smooth / dt)))
    kernel = np.ones(width) / width
    over_s = np.convolve(over, kernel, mode="same")
    residual = target - mean
    features = []
    inside = np.flatnonzero(over_s > 0)
    if inside.size == 0:
        return []
    # contiguous runs of time points where the bias dominates, cut where the
    # residual changes sign: a hump above and a dip below are two features
    sign = np.sign(residual[inside])
    breaks = np.flatnonzero((np.diff(inside) > 1) | (sign[1:] != sign[:-1]))
    for run in np.split(inside, breaks + 1):
        t0, t1 = times[run[0]], times[run[-1]]
        if t1 - t0 < min_width:
            continue
        peak = run[int(np.argmax(np.abs(residual[run])))]
        features.append(Feature(t_start=float(t0), t_end=float(t1), t_peak=float(times[peak]),
                                sign=1 if residual[peak] > 0 else -1,
                                residual=float(residual[peak]),
                                excess=float(np.sum(over[run]))))
    return sorted(features, key=lambda f: -f.excess)


def _template(net, location):
    """Weights and delays of a new drive at ``location``, and its weights' ranges.

    From the network's drives there: each synapse onto a pyramidal cell
    (AMPA and NMDA; the cells that make the dipole) starts at the geometric
    mean of the smallest and largest weight those drives give it and is
    searched, on a log scale, from a thirtieth of the smallest to ten times
    the largest (at most ``max(1, 2 w)`` uS), so that a candidate can be
    made weaker than any drive the network has, down to nearly off, or as
    strong as its strongest. Synapses onto other cells get a thirtieth of
    their smallest weight and are not searched. Without such drives, HNN's
    default drive at ``location`` is the template.
    """
    drives = [d for d in net.external_drives.values()
              if d.get("type") == "evoked" and d.get("location") == location]
    if not drives:
        drives = [_DEFAULT_TEMPLATES[location]]
    out = {"weights_ampa": {}, "weights_nmda": {}, "synaptic_delays": {}, "ranges": {}}
    for key in ("weights_ampa", "weights_nmda", "synaptic_delays"):
        cells = sorted({c for d in drives for c, w in (d.get(key) or {}).items() if w > 0})
        for cell in cells:
            values = [d[key][cell] for d in drives if (d.get(key) or {}).get(cell, 0) > 0]
            if key == "synaptic_delays":
                out[key][cell] = float(np.median(values))
                continue
            lo, hi = min(values), max(values)
            if not cell.endswith("_pyramidal"):
                # not fitted: nearly silent, so that it cannot keep the
                # candidate from being switched off
                out[key][cell] = lo / 30.0
                continue
            out[key][cell] = float(np.sqrt(lo * hi))
            out["ranges"][f"{key[len('weights_'):]}.{cell}"] = (
                lo / 30.0, min(10.0 * hi, max(1.0, 2.0 * hi)))
    return out


def _new_name(net, location):
    stem = "evprox" if location == "proximal" else "evdist"
    n = 1
    while f"{stem}{n}" in net.external_drives:
        n += 1
    return f"{stem}{n}"


def propose_drives(net, features, tstop, max_features=2, weight_scale=1.0,
                   latency=DRIVE_LATENCY):
    """Candidate evoked drives for the largest residual features.

    Parameters
    ----------
    net : Network
        The fitted network (only read).
    features : list of Feature
        From :func:`residual_features`, largest first.
    tstop : float
        End of the fitted window (ms): a drive's time stays within it.
    max_features : int
        Features given candidates.
    weight_scale : float
        A candidate's weights, and their ranges, are this fraction of its
        template's (see below).
    latency : float
        Milliseconds before the feature's peak the candidate's mean starts.

    Returns
    -------
    list of dict
        Each: ``spec`` (the arguments of
        :meth:`hnnfit.Network.add_evoked_drive`, with ``name``), ``mu_range``
        (ms, the timing searched), ``weight_ranges`` (``{'ampa.<cell>':
        (low, high)}``, uS, the weights searched), ``feature`` and
        ``reason`` (one line). For each feature the location whose sign
        matches the residual's comes first.

    Notes
    -----
    A candidate's weights come from the network's drives at its location:
    each synapse onto a pyramidal cell starts at the geometric mean of the
    smallest and largest weight they give it and is searched on a log scale
    from a thirtieth of the smallest to ten times the largest, so that the
    fit can make the candidate nearly silent as well as strong; synapses
    onto basket cells get a thirtieth of their smallest weight. Without a
    drive there, HNN's default drive at that location is the template.
    """
    max_features = check_int(max_features, "max_features", low=1)
    seed = 1 + max([d.get("event_seed", 0) or 0 for d in net.external_drives.values()]
                   + [0])
    out = []
    taken = set(net.external_drives)
    for feature in features[:max_features]:
        order = ("proximal", "distal") if feature.sign > 0 else ("distal", "proximal")
        for location in order:
            tpl = _template(net, location)
            name = _new_name(net, location)
            while name in taken:
                stem, n = name[:6], int(name[6:])
                name = f"{stem}{n + 1}"
            taken.add(name)
            mu = float(np.clip(feature.t_peak - latency, 0.0, tstop))
            lo = float(max(0.0, feature.t_peak - latency - 15.0))
            hi = float(min(tstop, feature.t_peak + 5.0))
            spec = {"name": name, "mu": mu, "sigma": 3.0, "numspikes": 1,
                    "location": location,
                    "weights_ampa": {c: weight_scale * w
                                     for c, w in tpl["weights_ampa"].items()},
                    "weights_nmda": {c: weight_scale * w
                                     for c, w in tpl["weights_nmda"].items()},
                    "synaptic_delays": dict(tpl["synaptic_delays"]), "event_seed": seed}
            seed += 1
            why = ("the residual's sign" if location == order[0] else "the other location")
            out.append({"spec": spec, "mu_range": (lo, max(hi, lo + 1.0)), "feature": feature,
                        "weight_ranges": {k: (weight_scale * a, weight_scale * b)
                                          for k, (a, b) in tpl["ranges"].items()},
                        "reason": f"{location} drive at {mu:.0f} ms for {feature.describe()} "
                                  f"({why})"})
    return out


def compare_models(trials, target, k=3, n_boot=400, seed=0):
    """Expected scores of models on the same trials, and the noise of their differences.

    Parameters
    ----------
    trials : dict
        ``{model name: array (n_trials, n_times)}``: each model's processed
        trials on the target's time points, the same seeds in the same order
        for every model (nAm).
    target : array of float
    k : int
        Trials averaged in a score.
    n_boot : int
        Bootstrap resamples of the trials (the same resample for every
        model, so that differences are paired).
    seed : int

    Returns
    -------
    dict
        ``{model name: {'expected': nAm, 'bias2': nAm^2, 'var': nAm^2,
        'boot': array of the resampled expected scores}}``; a difference
        of two models' ``expected`` is noise unless it exceeds about twice
        the standard deviation of the difference of their ``boot`` arrays.
    """
    target = np.asarray(target, dtype=float)
    k = check_int(k, "k", low=1)
    n_boot = check_int(n_boot, "n_boot", low=2)
    names = list(trials)
    arrays = {n: np.asarray(trials[n], dtype=float) for n in names}
    n = {a.shape[0] for a in arrays.values()}
    if len(n) != 1:
        raise ValueError(f"trials must hold as many trials for every model, got {sorted(n)}")
    n = n.pop()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_boot, n))
    out = {}
    for name, a in arrays.items():
        full = error_budget(a, target, k, max_groups=1)
        boot = np.empty(n_boot)
        for b, idx in enumerate(picks):
            sample = a[idx]
            mean = sample.mean(axis=0)
            var = sample.var(axis=0, ddof=1)
            bias2 = float(np.mean((mean - target) ** 2 - var / n))
            boot[b] = np.sqrt(max(bias2 + float(var.mean()) / k, 0.0))
        out[name] = {"expected": full["expected"], "bias2": full["bias2"], "var": full["var"],
                     "boot": boot}
    return out


def gain_and_noise(scores, simpler, richer):
    """How much ``richer`` lowers the expected score of ``simpler``, and that gain's noise.

    Parameters
    ----------
    scores : dict
        From :func:`compare_models`.
    simpler, richer : str
        Model names.

    Returns
    -------
    gain, noise : float
        ``expected[simpler] - expected[richer]`` (nAm) and the standard
        deviation of that difference over the paired bootstrap (nAm).
    """
    gain = scores[simpler]["expected"] - scores[richer]["expected"]
    noise = float(np.std(scores[simpler]["boot"] - scores[richer]["boot"], ddof=1))
    return float(gain), noise
