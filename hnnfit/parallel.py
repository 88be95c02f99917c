"""Where simulations run: in this process or in worker processes.

Each trial is simulated by :func:`hnnfit.simulator.run_trial`,
here or in a worker. Cold runs build and tear down a model per trial, so
no NEURON state survives from one simulation to the next; warm runs keep
one model per process and replace only drive event times and NetCon
weights and delays (bit-identical to a cold run). Workers are separate
processes (joblib's ``loky``), never threads: NEURON state is
process-global.

CoreNEURON needs the CoreNEURON build of the mechanisms to be the first
one loaded in a process, so its trials run in dedicated worker processes
(fresh interpreters started by loky, kept for later runs so their warm models last)
unless this process already loaded that build.

A worker process exits on its own soon after the process that started it
dies (it starts watching with its first trial), so a driver killed without
a chance to clean up does not leave simulations running.
"""
import atexit
import multiprocessing
import os
import threading
import time

from . import simulator
from .exceptions import SimulationError
from .validation import check_int

_ACTIVE = []

# seconds between two checks of a worker's parent (see _exit_with_parent)
_PARENT_POLL_S = 0.5
_PARENT_WATCH = []

# n_workers -> executor whose processes load the CoreNEURON build
_CORE_POOLS = {}


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

    def run_trials(self, net, trials, tstop, dt, record_vsoma=False, verbose=False,
                   *, warm=False, engine="neuron", n_threads=1, deadline=None):
        """Simulate ``trials`` (indices) of ``net``; return results in order.

        Parameters
        ----------
        warm : bool
            Reuse each process's kept model (see
            :func:`hnnfit.simulator.run_trial`).
        engine : str
            ``'neuron'`` or ``'coreneuron'``.
        n_threads : int
            Threads per trial (worker).
        deadline : float | None
            Wall-clock time (``time.time()``, s) by which every trial must
            have finished (a time-out raises SimulationError).
        """
        from joblib import Parallel, delayed

        n_jobs = min(self.n_jobs, len(trials))
        args = (tstop, dt, record_vsoma, verbose, warm, engine, n_threads, deadline)
        if engine == "coreneuron" and not simulator.coreneuron_loaded():
            return _run_in_coreneuron_pool(net, trials, n_jobs, args)
        if n_jobs == 1:
            return [_run_trial_in_worker(net, k, *args) for k in trials]
        return Parallel(n_jobs=n_jobs, backend="loky")(
            delayed(_run_trial_in_worker)(net, k, *args) for k in trials
        )


def _exit_with_parent():
    """In a worker process, exit soon after the process that started it dies.

    A driver killed with SIGKILL (the kernel's out-of-memory killer does
    that) cannot stop its loky workers, and they would otherwise stay alive
    until their idle time-out (minutes), holding memory and cores. Each
    worker therefore polls its parent process id from a daemon thread and
    exits when it changes (the orphan was adopted by init or a subreaper).
    Polling works wherever the worker was started from (the driver's main
    thread or loky's manager thread), unlike ``PR_SET_PDEATHSIG``, which
    fires when the creating *thread* exits. A process started by
    neither multiprocessing nor loky (a driver itself) is left alone.
    """
    if _PARENT_WATCH and _PARENT_WATCH[-1] == os.getpid():
        return      # already watching (a forked child has no watch thread)
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    first_ppid = os.getppid()
    if first_ppid != parent.pid and not _pid_exists(parent.pid):
        os._exit(1)      # the parent died before the watch started
    _watch_parent(first_ppid)


def exit_with_driver(driver_pid):
    """Worker initializer: end the worker soon after its driver ``driver_pid`` dies.

    For process pools a driver starts itself (the fit's evaluations): a
    worker waiting for its next task may block on a lock the dead driver
    held, so the watch starts with the worker, not with its first trial
    as in :func:`_exit_with_parent`.

    Parameters
    ----------
    driver_pid : int
        The process id of the driver, which started the worker.
    """
    if os.getppid() != driver_pid:
        os._exit(1)      # orphaned before it started
    _watch_parent(driver_pid)


def _watch_parent(ppid):
    """Exit this process from a daemon thread once its parent is not ``ppid``."""
    _PARENT_WATCH.append(os.getpid())

    def watch():
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != ppid:
                # os._exit: no clean-up that could wait for the dead parent
                os._exit(1)

    threading.Thread(target=watch, name="hnnfit-parent-watch", daemon=True).start()


def _pid_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_trial_in_worker(net, trial_idx, tstop, dt, record_vsoma, verbose,
                         warm=False, engine="neuron", n_threads=1, deadline=None):
    _exit_with_parent()
    return simulator.run_trial(net, trial_idx, tstop, dt, record_vsoma, verbose,
                               warm=warm, engine=engine, n_threads=n_threads, deadline=deadline)


def _run_coreneuron_trial(net, trial_idx, tstop, dt, record_vsoma, verbose, warm,
                          engine, n_threads, deadline=None):
    """Task of a CoreNEURON worker: load that build first, then simulate."""
    simulator.load_mechanisms(coreneuron=True)
    return _run_trial_in_worker(net, trial_idx, tstop, dt, record_vsoma, verbose,
                                warm, engine, n_threads, deadline)


def _coreneuron_pool(n_workers):
    from joblib.externals.loky import ProcessPoolExecutor

    pool = _CORE_POOLS.get(n_workers)
    if pool is None:
        # loky starts fresh interpreters (a forked child would inherit this
        # process's NEURON, which may hold the plain build already) and,
        # unlike multiprocessing's spawn, does not re-run the caller's
        # __main__ module; this pool is separate from joblib's reusable one
        pool = ProcessPoolExecutor(max_workers=n_workers)
        _CORE_POOLS[n_workers] = pool
    return pool


def _run_in_coreneuron_pool(net, trials, n_jobs, args):
    from joblib.externals.loky.process_executor import BrokenProcessPool

    pool = _coreneuron_pool(n_jobs)
    futures = [pool.submit(_run_coreneuron_trial, net, k, *args) for k in trials]
    try:
        return [f.result() for f in futures]
    except BrokenProcessPool as err:
        shutdown_coreneuron_workers()
        raise SimulationError(f"a CoreNEURON worker process died: {err}") from err


@atexit.register
def shutdown_coreneuron_workers():
    """Stop the worker processes kept for CoreNEURON runs."""
    pools = list(_CORE_POOLS.values())
    _CORE_POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True)


def current_backend():
    """The innermost active backend, or a sequential in-process one."""
    return _ACTIVE[-1] if _ACTIVE else JoblibBackend(n_jobs=1)
