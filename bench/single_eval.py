"""Time one evaluation of the default ERP model: cold, warm, and the reference.

One evaluation is one trial of ``jones_2009_model(add_drives_from_params=True)``
(the three evoked drives of ``default.json``), 170 ms at dt = 0.025 ms.

* **cold**: a fresh Python process builds the model and runs it
  (``simulate_dipole(..., warm=False)``); only that call is timed.
* **warm**: this process keeps the built model; each evaluation applies
  new drive timings and synaptic weights (as a fit does) and runs it
  (``simulate_trials(..., warm=True)``, the objective's call). The first warm
  evaluation builds the model and is reported separately.
* **warm CoreNEURON**: the same with ``engine='coreneuron'`` (a kept worker
  process with the CoreNEURON build), unless ``--no-coreneuron``.
* **reference**: with ``--baseline-python PATH``, hnn-core's
  ``simulate_dipole`` in a fresh process of that interpreter (an
  environment with ``pip install hnn-core==0.6.1 'neuron==8.2.7'``).

The modes are interleaved round by round (reference, cold, warm, warm
CoreNEURON) so that load from other processes hits them alike; each is
reported as the median of ``--rounds`` (at least 3) runs.

Usage::

    python bench/single_eval.py --baseline-python ~/refvenv/bin/python

Prints a JSON line per measurement, then a markdown table.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TSTOP = 170.0
DT = 0.025

# Fitted quantities varied between warm evaluations: (name, factor per round)
_WARM_CHANGES = [
    ("evprox1.mu", [1.0, 0.95, 1.04, 1.1, 0.9]),
    ("evdist1.mu", [1.0, 1.05, 0.97, 0.92, 1.08]),
    ("evprox1.ampa.L5_pyramidal", [1.0, 1.3, 0.8, 1.15, 0.7]),
    ("evdist1.ampa.L2_pyramidal", [1.0, 0.85, 1.2, 1.1, 0.9]),
    ("evprox2.delay.L5_pyramidal", [1.0, 1.5, 2.0, 0.8, 1.2]),
]


# -- child processes -----------------------------------------------------------
def _child_cold(mesh, tstop):
    from hnnfit import jones_2009_model, simulate_dipole
    from hnnfit.simulator import load_mechanisms

    load_mechanisms()
    net = jones_2009_model(add_drives_from_params=True, mesh_shape=(mesh, mesh))
    t0 = time.perf_counter()
    dpls = simulate_dipole(net, tstop=tstop, dt=DT, n_trials=1, verbose=False)
    wall = time.perf_counter() - t0
    timing = net._sim_timing[0]
    return {"wall_s": wall, "build_s": timing["build_s"], "run_s": timing["run_s"],
            "peak_nAm": float(abs(dpls[0].data["agg"]).max())}


def _child_reference(mesh, tstop):
    # runs under the baseline interpreter: hnn-core only, no hnnfit
    import contextlib
    import io

    from hnn_core import jones_2009_model, simulate_dipole
    from hnn_core.network_builder import load_custom_mechanisms

    load_custom_mechanisms()
    net = jones_2009_model(add_drives_from_params=True, mesh_shape=(mesh, mesh))
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        dpls = simulate_dipole(net, tstop=tstop, dt=DT, n_trials=1)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "peak_nAm": float(abs(dpls[0].data["agg"]).max())}


def _run_child(python, mode, mesh, tstop):
    cmd = [python, os.path.abspath(__file__), "--child", mode, "--mesh", str(mesh),
           "--tstop", str(tstop)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


# -- warm evaluations in this process --------------------------------------------
class _Warm:
    def __init__(self, mesh, tstop, engine, n_threads=1):
        from hnnfit import jones_2009_model
        from hnnfit.fit.space import Parameter, ParameterSpace

        self.tstop = tstop
        self.engine = engine
        self.n_threads = n_threads
        self.base = jones_2009_model(add_drives_from_params=True, mesh_shape=(mesh, mesh))
        probe = ParameterSpace([Parameter(n, 0.0, 1e6) for n, _ in _WARM_CHANGES])
        self.start = probe.current_values(self.base)
        self.space = probe
        self.calls = 0

    def point(self, k):
        return {name: self.start[name] * factors[k % len(factors)]
                for name, factors in _WARM_CHANGES}

    def evaluate(self, k):
        from hnnfit.simulation import simulate_trials

        net = self.space.apply(self.base, self.point(k))
        t0 = time.perf_counter()
        dpls = simulate_trials(net, self.tstop, DT, [0], warm=True, engine=self.engine,
                               n_threads=self.n_threads)
        wall = time.perf_counter() - t0
        timing = net._sim_timing[0]
        self.calls += 1
        return {"wall_s": wall, "build_s": timing["build_s"], "run_s": timing["run_s"],
                "reused": timing["reused"],
                "peak_nAm": float(abs(dpls[0].data["agg"]).max())}


def _coreneuron_available():
    from hnnfit.exceptions import CompilationError
    from hnnfit.simulator import ensure_mechanisms

    try:
        ensure_mechanisms(coreneuron=True)
    except CompilationError as err:
        return str(err).strip().splitlines()[0]
    return None


def _table(results, ref_key):
    ref = statistics.median(results[ref_key]) if results.get(ref_key) else None
    lines = ["| mode | median s | min s | max s | n | speed-up vs reference |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for mode, walls in results.items():
        if not walls:
            continue
        med = statistics.median(walls)
        ratio = f"{ref / med:.2f}x" if ref else "n/a"
        lines.append(f"| {mode} | {med:.2f} | {min(walls):.2f} | {max(walls):.2f} | "
                     f"{len(walls)} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python", help="interpreter with hnn-core 0.6.1 installed")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode (>= 3)")
    parser.add_argument("--no-coreneuron", action="store_true")
    parser.add_argument("--mesh", type=int, default=10,
                        help="pyramidal grid side (10 = the default model; smaller only "
                             "for smoke tests)")
    parser.add_argument("--tstop", type=float, default=TSTOP)
    parser.add_argument("--threads", type=int, nargs="*", default=[],
                        help="also time warm CoreNEURON runs with these thread counts")
    parser.add_argument("--child", choices=["cold", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "cold":
        print(json.dumps(_child_cold(args.mesh, args.tstop)), flush=True)
        return
    if args.child == "reference":
        print(json.dumps(_child_reference(args.mesh, args.tstop)), flush=True)
        return
    if args.rounds < 3 and args.mesh == 10:
        parser.error("--rounds must be at least 3 for a full-size measurement")

    print(f"# {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    # what a result depends on besides its arguments (hnnfit.sysinfo)
    from hnnfit.sysinfo import machine_summary, sys_info
    print(f"# machine: {machine_summary(sys_info())}")
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, model {args.mesh}x{args.mesh}, tstop {args.tstop} ms, "
          f"1 trial", flush=True)
    engines = ["neuron"]
    if not args.no_coreneuron:
        reason = _coreneuron_available()
        if reason is None:
            engines.append("coreneuron")
        else:
            print(f"# CoreNEURON not available: {reason}")
    names = {"neuron": "hnnfit warm", "coreneuron": "hnnfit warm CoreNEURON"}
    warm = {e: _Warm(args.mesh, args.tstop, e) for e in engines}
    if "coreneuron" in engines:
        for n in args.threads:
            if n > 1:
                # the same kept worker process: the thread count changes in place
                key = f"coreneuron-{n}"
                engines.append(key)
                warm[key] = _Warm(args.mesh, args.tstop, "coreneuron", n_threads=n)
                names[key] = f"hnnfit warm CoreNEURON, {n} threads"
    results = {}
    if args.baseline_python:
        results["reference (hnn-core 0.6.1, NEURON 8.2.7)"] = []
    results["hnnfit cold"] = []
    for e in engines:
        results[names[e]] = []

    # the first warm evaluation builds the model: reported, not counted
    for e in engines:
        first = warm[e].evaluate(0)
        print(json.dumps({"mode": names[e] + " (first: build)", **first}), flush=True)

    for r in range(args.rounds):
        if args.baseline_python:
            res = _run_child(args.baseline_python, "reference", args.mesh, args.tstop)
            results["reference (hnn-core 0.6.1, NEURON 8.2.7)"].append(res["wall_s"])
            print(json.dumps({"round": r, "mode": "reference", **res}), flush=True)
        res = _run_child(sys.executable, "cold", args.mesh, args.tstop)
        results["hnnfit cold"].append(res["wall_s"])
        print(json.dumps({"round": r, "mode": "cold", **res}), flush=True)
        for e in engines:
            res = warm[e].evaluate(r + 1)
            if not res["reused"]:
                raise RuntimeError("the warm model was rebuilt; the structure key changed")
            results[names[e]].append(res["wall_s"])
            print(json.dumps({"round": r, "mode": names[e], **res}), flush=True)

    ref_key = "reference (hnn-core 0.6.1, NEURON 8.2.7)"
    print()
    if args.baseline_python:
        ref = statistics.median(results[ref_key])
        for mode, walls in results.items():
            if mode != ref_key:
                print(f"ratio reference / {mode}: {ref / statistics.median(walls):.2f}")
        print()
    print(_table(results, ref_key))


if __name__ == "__main__":
    main()
