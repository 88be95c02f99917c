"""
Fit the timing of two evoked drives
===================================

A fit from start to end on a target whose answer is known: the waveform of
the Jones et al. (2009) network with its first proximal drive (``evprox1``)
and its distal drive (``evdist1``) moved to 31 and 57 ms, plus noise.
The fit starts from the published times and searches both means with
Bayesian optimisation, recording every evaluation in a study file. Then
the best point is scored again on trials the fit never ran, and its
held-out error is split into the part a better fit could remove (bias)
and the part that comes from trial-to-trial variability.

``hnnfit fit`` runs the same fit, on the full-size network, from a config
file. This page uses a 3 x 3 grid of pyramidal cells per layer and 12
evaluations so that it builds in about a minute.
"""
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from hnnfit import Study, jones_2009_model, read_target, simulate_dipole

MESH_SHAPE = (3, 3)   # pyramidal cells per layer; the published model uses (10, 10)
TRUTH = {"evprox1.mu": 31.0, "evdist1.mu": 57.0}   # ms

# %%
# The network: the published parameter set with its three evoked drives.
net = jones_2009_model(add_drives_from_params=True, mesh_shape=MESH_SHAPE)
for name in ("evprox1", "evdist1"):
    print(name, "starts at", net.external_drives[name]["dynamics"]["mu"], "ms")

# %%
# The target: one trial of a copy whose two drives fire at the true
# times, smoothed and scaled as the fit will score it, plus Gaussian
# noise. :func:`~hnnfit.read_target` takes an array whose first column is
# time (ms) and whose other columns are dipoles (nAm).
truth_net = net.copy()
for key, value in TRUTH.items():
    drive = key.split(".")[0]
    truth_net.external_drives[drive]["dynamics"]["mu"] = value
dipole = simulate_dipole(truth_net, tstop=100.0, n_trials=1, verbose=False)[0]
dipole.smooth(30.0).scale(3000.0)
waveform = dipole.data["agg"]
rng = np.random.default_rng(0)
noisy = waveform + 0.05 * np.abs(waveform).max() * rng.standard_normal(waveform.size)
target = read_target(np.column_stack([dipole.times, noisy]))
print(target)

# %%
# The study: the parameter space (both means, in ms), the objective (RMSE
# of the 30 ms-smoothed dipole scaled by 3000 against the target, on trial
# seed 0) and the solver. Every evaluation goes to the study file; calling
# ``optimize`` again on the same file resumes instead of starting over. On
# a one-trial target the objective is rugged: twelve evaluations find the
# true basin on some solver streams, not all, so the example names the one
# it was written with (seed 0, six random initial points; the default
# initial design is a Latin hypercube, see the benchmarks page).
workdir = Path(tempfile.mkdtemp())
study = Study.create(
    workdir / "two_drives.sqlite", net, target,
    space=[("evprox1.mu", 20.0, 36.0), ("evdist1.mu", 50.0, 72.0)],
    objective={"n_trials": 1, "seeds": [0], "smooth_window": 30.0,
               "scale": 3000.0},
    solver="bayesian", solver_options={"n_initial_points": 6, "initial_design": "random"},
    seed=0)
study.optimize(n_evals=12, n_jobs=1, progress=False)
print(f"start: {study.x0}")
print(f"best:  {study.best_params} (RMSE {study.best_value:.2f} nAm)")
print(f"truth: {TRUTH}")

# %%
# The table of evaluations, one row per simulated point.
print(study.evaluations[["id", "evprox1.mu", "evdist1.mu", "value"]].round(2).to_string())

# %%
# How the best value fell, and the best point's waveform against the target.
study.plot_convergence(show=False)
study.plot_fit(show=False)

# %%
# The best value was found on the fit's own trial, so it is biased low.
# Score the point on trials the fit never saw (seeds 100-107), as
# averages of ``k = 2`` trials, and split the expected error into the
# squared error of the mean waveform (``bias2``) and the trials' variance
# (``var``). More trials per average shrink only the second part.
budget = study.error_budget(seeds=range(100, 108), k=2)
print(f"expected RMSE of a 2-trial average: {budget['expected']:.2f} nAm "
      f"(bias^2 {budget['bias2']:.1f}, trial variance {budget['var']:.1f} nAm^2)")

study.close()
plt.show()
