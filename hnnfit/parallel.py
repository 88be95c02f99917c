"""Where simulations run: in this process or in joblib worker processes.

Each trial is built, run and torn down by
:func:`hnnfit.simulator._builder.run_trial`, whether here or in a worker, so
no NEURON state survives from one simulation to the next. Workers are
separate processes (joblib's ``loky``), never threads: NEURON state is
process-global.
"""
from .validation import check_int

_ACTIVE = []


class JoblibBackend:
    """Run trials in parallel worker processes.

    Use as a context manager around :func:`~hnnfit.simulate_dipole`::

        with JoblibBackend(n_jobs=2):
            dpls = simulate_dipole(net, tstop=170., n_trials=2)

    Parameters
    ----------
    n_jobs : int
        Number of worker processes (at most the number of trials is used).
    """

    def __init__(self, n_jobs=1):
        self.n_jobs = check_int(n_jobs, "n_jobs", low=1)

    def __enter__(self):
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        return False

    def run_trials(self, net, trials, tstop, dt, record_vsoma=False, verbose=False):
        """Simulate ``trials`` (indices) of ``net``; return results in order."""
        from joblib import Parallel, delayed

        from .simulator._builder import run_trial

        n_jobs = min(self.n_jobs, len(trials))
        if n_jobs == 1:
            return [run_trial(net, k, tstop, dt, record_vsoma, verbose) for k in trials]
        return Parallel(n_jobs=n_jobs, backend="loky")(
            delayed(_run_trial_in_worker)(net, k, tstop, dt, record_vsoma, verbose)
            for k in trials
        )


def _run_trial_in_worker(net, trial_idx, tstop, dt, record_vsoma, verbose):
    from .simulator._builder import run_trial

    return run_trial(net, trial_idx, tstop, dt, record_vsoma, verbose)


def current_backend():
    """The innermost active backend, or a sequential in-process one."""
    return _ACTIVE[-1] if _ACTIVE else JoblibBackend(n_jobs=1)
