"""Worker processes (hnnfit.parallel): they do not outlive a killed driver."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

DRIVER = """
    import os
    from hnnfit import JoblibBackend, jones_2009_model, simulate_dipole

    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=10.0, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa={"L2_pyramidal": 0.02, "L5_pyramidal": 0.04})
    with JoblibBackend(n_jobs=2):
        simulate_dipole(net, tstop=20.0, n_trials=2, verbose=False)
        print("ready", flush=True)
        while True:      # keep the workers busy until killed
            simulate_dipole(net, tstop=20.0, n_trials=2, verbose=False)
"""


def _children():
    """pid -> parent pid of every live (non-zombie) process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (in parentheses) may contain spaces
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            out[int(entry.name)] = int(ppid)
    return out


def _descendants(pid):
    table = _children()
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids):
    table = _children()
    return {pid for pid in pids if pid in table}


def test_workers_exit_after_driver_is_killed():
    workers = set()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        workers = _descendants(proc.pid)
        assert len(workers) >= 2, workers    # two loky workers (and loky's helpers)
        time.sleep(1.0)                      # the workers are mid-simulation
        os.kill(proc.pid, signal.SIGKILL)    # the driver alone, as the OOM killer does
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10.0
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _alive(workers)
        assert not left, f"processes still running 10 s after the driver died: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _alive(workers):     # leave nothing behind if the test failed
            os.kill(pid, signal.SIGKILL)
