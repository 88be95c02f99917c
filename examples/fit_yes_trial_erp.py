"""Fit the second proximal drive to the recorded yes-trial S1 ERP.

HNN's classic fitting target: the MEG evoked response in primary
somatosensory cortex to a threshold-level finger tap that subjects
detected (Jones et al. 2007), averaged over trials and subjects. The
network starts from HNN's hand-tuned parameter set for it,
``ERPYes100Trials``; the fit adjusts the late proximal drive (``evprox2``):
its mean time and spread and its AMPA weight onto the L5 pyramidal cells,
the latter on a log scale.

The recorded waveform is not shipped with hnnfit: :mod:`hnnfit.datasets`
reads it from a local copy (``HNNFIT_DATA``) or downloads it once from
HNN's public repository, checking its checksum.

Every evaluation is recorded in a study file; run the script again (or
``hnnfit resume STUDY --n-evals N``) to continue where it stopped. Run it
headless with::

    MPLBACKEND=Agg python examples/fit_yes_trial_erp.py --n-evals 40 --n-jobs 2

Each evaluation simulates the full 270-cell network for 170 ms (about half
a minute on one core); the default budget is a small demonstration.
"""
import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from hnnfit import Network, read_params
from hnnfit.datasets import fetch_dataset
from hnnfit.fit import Study, read_target

HERE = Path(__file__).resolve().parent


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-evals", type=int, default=6,
                        help="total evaluation budget of the study (default 6)")
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="evaluations run at once (default 1)")
    parser.add_argument("--n-trials", type=int, default=1,
                        help="trials averaged per evaluation (default 1)")
    parser.add_argument("--study", type=Path, default=Path("studies/yes_trial_erp.sqlite"),
                        help="study file, continued if it exists "
                             "(default studies/yes_trial_erp.sqlite)")
    parser.add_argument("--out", type=Path, default=HERE / "figures",
                        help="folder for the PNG figures (created if missing)")
    return parser.parse_args()


args = _parse_args()
args.out.mkdir(parents=True, exist_ok=True)
args.study.parent.mkdir(parents=True, exist_ok=True)

###############################################################################
# The target: the recorded dipole (nAm) from 0 to 170 ms. The simulation of
# each evaluation runs exactly to the end of this window.
target = read_target(fetch_dataset("yes_trial_S1_ERP_all_avg"))
print(target)

###############################################################################
# The network and its drives, from HNN's hand-tuned parameter set for this
# ERP (two proximal drives, one distal drive).
net = Network(read_params("ERPYes100Trials.json"), add_drives_from_params=True)
print("drives:", ", ".join(net.external_drives))

###############################################################################
# What is fitted: the timing of evprox2 (mean and standard deviation, ms) and
# its AMPA weight (uS) onto L5 pyramidal cells, searched on a log scale since
# plausible weights span two decades. The hand-tuned values are the start.
space = [
    ("evprox2.mu", 100.0, 150.0),
    ("evprox2.sigma", 1.0, 20.0),
    ("evprox2.ampa.L5_pyramidal", 0.01, 1.0, {"log": True}),
]

###############################################################################
# The objective as HNN users know it: smooth the simulated dipole with a
# 30 ms Hamming window, scale it by 3000, and take the RMSE against the
# recording on the recording's own time points. Bayesian optimisation
# proposes the points; the study file keeps every evaluation.
study = Study.create(
    args.study, net, target, space,
    objective={"n_trials": args.n_trials, "smooth_window": 30.0, "scale": 3000.0,
               "metric": "rmse"},
    solver="bayesian", solver_options={"n_initial_points": 5}, seed=0,
    description="yes-trial S1 ERP, evprox2 timing and L5 AMPA weight",
    exist_ok=True)
summary = study.optimize(args.n_evals, n_jobs=args.n_jobs)
print(f"{summary.n_evaluated} evaluated now, {summary.n_replayed} replayed from the "
      f"study; {study.n_complete} complete, {study.n_failed} failed")

print(f"start:  {study.x0}")
print(f"best:   {study.best_params}")
print(f"RMSE:   {study.best_value:.3f} nAm")

for name, fig in (("convergence", study.plot_convergence(show=False)),
                  ("fit", study.plot_fit(show=False))):
    path = args.out / f"yes_trial_erp_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")
study.close()
