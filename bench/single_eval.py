"""Time one evaluation of the default ERP model: cold, warm, and the reference.

One evaluation is one trial of ``jones_2009_model(add_drives_from_params=True)``
(the three evoked drives of ``default.json``), 170 ms at dt = 0.025 ms.

* **cold**: a fresh Python process builds the model and runs it
  (``simulate_dipole(..., warm=False)``); only that call is timed.
* **warm**: this process keeps the built model; each evaluation applies
  new drive timings and synaptic weights (as a fit does) and runs it
  (``simulate_trials(..., warm=True)``, the objective's call). The first warm
  evaluation builds the model and is reported on its own row.
* **warm CoreNEURON**: the same with ``engine='coreneuron'`` (a kept worker
  process with the CoreNEURON build), unless ``--no-coreneuron``.
* **reference**: with ``--baseline-python PATH``, hnn-core's
  ``simulate_dipole`` in a fresh process of that interpreter (an
  environment with ``pip install hnn-core==0.6.1 'neuron==8.2.7'``); that
  process imports hnn-core only.

Every mode evaluates the same parameter points: round ``r`` sets the five
quantities of ``_WARM_CHANGES`` to the default values times their factor
``r + 1`` (the first warm build uses factor 0, the defaults) in every mode,
the reference included, so their dipoles can be compared point by point.

Each evaluation's time is split in the same way for every mode: **build**,
the creation of the NEURON model (hnnfit's own build timer; hnn-core's
``NetworkBuilder``), and **run**, the rest of the call (drive events,
integration, the dipole). A warm evaluation that reuses its model has a
build of about zero.

The modes are interleaved round by round (reference, cold, warm, warm
CoreNEURON) so that load from other processes hits them alike; each is
reported as the median of ``--rounds`` (at least 3) runs.

Usage::

    python bench/single_eval.py --baseline-python ~/refvenv/bin/python
    python bench/single_eval.py --mesh 3 --tstop 20 --rounds 1 --no-coreneuron  # smoke

Prints a JSON line per measurement, then the ratios, a markdown table of
times and a table of the largest dipole differences between the modes
(absolute, nAm, and relative RMS) over the rounds.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

TSTOP = 170.0
DT = 0.025

# Fitted quantities varied between evaluations: (name, factor per point)
_WARM_CHANGES = [
    ("evprox1.mu", [1.0, 0.95, 1.04, 1.1, 0.9]),
    ("evdist1.mu", [1.0, 1.05, 0.97, 0.92, 1.08]),
    ("evprox1.ampa.L5_pyramidal", [1.0, 1.3, 0.8, 1.15, 0.7]),
    ("evdist1.ampa.L2_pyramidal", [1.0, 0.85, 1.2, 1.1, 0.9]),
    ("evprox2.delay.L5_pyramidal", [1.0, 1.5, 2.0, 0.8, 1.2]),
]
REF_MODE = "reference (hnn-core 0.6.1, NEURON 8.2.7)"


def make_points(start, n):
    """The first ``n`` parameter points from the default values ``start``."""
    return [{name: start[name] * factors[k % len(factors)] for name, factors in _WARM_CHANGES}
            for k in range(n)]


def _record(wall, build, agg):
    # build and run split alike for every mode: run is the rest of the call
    return {"wall_s": wall, "build_s": build, "run_s": wall - build,
            "peak_nAm": float(max(abs(v) for v in agg)), "agg": [float(v) for v in agg]}


# -- child processes -----------------------------------------------------------
def _child_cold(mesh, tstop, point):
    from hnnfit import jones_2009_model, simulate_dipole
    from hnnfit.fit.space import Parameter, ParameterSpace
    from hnnfit.simulator import load_mechanisms

    load_mechanisms()
    net = jones_2009_model(add_drives_from_params=True, mesh_shape=(mesh, mesh))
    space = ParameterSpace([Parameter(n, 0.0, 1e6) for n in point])
    net = space.apply(net, point)
    t0 = time.perf_counter()
    dpls = simulate_dipole(net, tstop=tstop, dt=DT, n_trials=1, verbose=False)
    wall = time.perf_counter() - t0
    return _record(wall, net._sim_timing[0]["build_s"], dpls[0].data["agg"])


def apply_to_hnn_core(net, point):
    """Set hnnfit's dotted parameter names on an hnn-core network, in place.

    ``drive.key`` is a drive's dynamics entry; ``drive.ampa.cell`` /
    ``drive.nmda.cell`` the weight (uS) and ``drive.delay.cell`` the delay
    (ms) of its connections onto that cell type.
    """
    for name, value in point.items():
        drive, *rest = name.split(".")
        spec = net.external_drives[drive]
        if len(rest) == 1:
            spec["dynamics"][rest[0]] = value
            continue
        kind, cell = rest
        field = "A_delay" if kind == "delay" else "A_weight"
        hits = 0
        for conn in net.connectivity:
            if conn["src_type"] != drive or conn["target_type"] != cell:
                continue
            if kind != "delay" and conn["receptor"] != kind:
                continue
            conn["nc_dict"][field] = value
            hits += 1
        if not hits:
            raise ValueError(f"parameter {name!r}: no {kind} connection of {drive!r} "
                             f"onto {cell!r} in the reference network")


def _child_reference(mesh, tstop, point):
    # runs under the baseline interpreter: hnn-core only, no hnnfit
    import contextlib
    import io

    from hnn_core import jones_2009_model, network_builder, simulate_dipole
    from hnn_core.network_builder import load_custom_mechanisms

    load_custom_mechanisms()
    net = jones_2009_model(add_drives_from_params=True, mesh_shape=(mesh, mesh))
    apply_to_hnn_core(net, point)
    builds = []
    init = network_builder.NetworkBuilder.__init__

    def timed_init(self, *args, **kwargs):
        t = time.perf_counter()
        init(self, *args, **kwargs)
        builds.append(time.perf_counter() - t)

    network_builder.NetworkBuilder.__init__ = timed_init
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        dpls = simulate_dipole(net, tstop=tstop, dt=DT, n_trials=1)
        wall = time.perf_counter() - t0
    network_builder.NetworkBuilder.__init__ = init
    return _record(wall, sum(builds), dpls[0].data["agg"])


def _run_child(python, mode, mesh, tstop, point):
    from child_process import run_json_child

    return run_json_child([python, os.path.abspath(__file__), "--child", mode, "--mesh",
                           mesh, "--tstop", tstop, "--point", json.dumps(point)],
                          what=f"{mode} run")


# -- warm evaluations in this process --------------------------------------------
class _Warm:
    def __init__(self, mesh, tstop, engine, n_threads=1):
        from hnnfit import jones_2009_model
        from hnnfit.fit.space import Parameter, ParameterSpace

        self.tstop = tstop
        self.engine = engine
        self.n_threads = n_threads
        self.base = jones_2009_model(add_drives_from_params=True, mesh_shape=(mesh, mesh))
        self.space = ParameterSpace([Parameter(n, 0.0, 1e6) for n, _ in _WARM_CHANGES])
        self.start = self.space.current_values(self.base)

    def evaluate(self, point):
        from hnnfit.simulation import simulate_trials

        net = self.space.apply(self.base, point)
        t0 = time.perf_counter()
        dpls = simulate_trials(net, self.tstop, DT, [0], warm=True, engine=self.engine,
                               n_threads=self.n_threads)
        wall = time.perf_counter() - t0
        timing = net._sim_timing[0]
        return {**_record(wall, timing["build_s"], dpls[0].data["agg"]),
                "reused": timing["reused"]}


def dipole_difference(a, b):
    """Max absolute difference (nAm) and RMS difference relative to ``b``'s RMS."""
    if len(a) != len(b):
        raise ValueError(f"dipoles of {len(a)} and {len(b)} samples cannot be compared")
    diff = [x - y for x, y in zip(a, b)]
    rms_b = math.sqrt(sum(y * y for y in b) / len(b))
    rms_d = math.sqrt(sum(d * d for d in diff) / len(diff))
    return max(abs(d) for d in diff), (rms_d / rms_b if rms_b > 0 else math.inf)


def _coreneuron_available():
    from hnnfit.exceptions import CompilationError
    from hnnfit.simulator import ensure_mechanisms

    try:
        ensure_mechanisms(coreneuron=True)
    except CompilationError as err:
        return str(err).strip().splitlines()[0]
    return None


def _median(records, key):
    return statistics.median(r[key] for r in records)


def time_table(results, firsts):
    """Markdown table of build / run / total medians per mode.

    ``results`` maps a mode to its timed records, ``firsts`` a warm mode to
    its first (building) evaluation.
    """
    ref = results.get(REF_MODE)
    ref_wall = _median(ref, "wall_s") if ref else None
    ref_run = _median(ref, "run_s") if ref else None
    lines = ["| mode | build s | run s | total s (median) | min s | max s | n | "
             "speed-up vs reference: total / run |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode, recs in results.items():
        if not recs:
            continue
        walls = [r["wall_s"] for r in recs]
        med = _median(recs, "wall_s")
        ratio = (f"{ref_wall / med:.2f}x / {ref_run / _median(recs, 'run_s'):.2f}x"
                 if ref else "n/a")
        lines.append(f"| {mode} | {_median(recs, 'build_s'):.3f} | "
                     f"{_median(recs, 'run_s'):.3f} | {med:.3f} | {min(walls):.3f} | "
                     f"{max(walls):.3f} | {len(walls)} | {ratio} |")
        if mode in firsts:
            f = firsts[mode]
            lines.append(f"| {mode}, first evaluation (builds) | {f['build_s']:.3f} | "
                         f"{f['run_s']:.3f} | {f['wall_s']:.3f} | | | 1 | |")
    return "\n".join(lines)


def dipole_table(results):
    """Markdown table: each mode's dipoles against the first mode's, same points.

    The first mode is the reference when it ran, else hnnfit cold; the
    largest difference over the rounds is shown.
    """
    modes = [m for m, recs in results.items() if recs]
    base = modes[0]
    lines = [f"| mode vs {base} | max abs difference (nAm) | relative RMS difference | "
             "rounds |", "| --- | ---: | ---: | ---: |"]
    diffs = {}
    for mode in modes[1:]:
        pairs = [dipole_difference(a["agg"], b["agg"])
                 for a, b in zip(results[mode], results[base])]
        diffs[mode] = (max(p[0] for p in pairs), max(p[1] for p in pairs))
        lines.append(f"| {mode} | {diffs[mode][0]:.3g} | {diffs[mode][1]:.3g} | "
                     f"{len(pairs)} |")
    return "\n".join(lines), diffs


def _emit(record):
    print(json.dumps({k: v for k, v in record.items() if k != "agg"}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python", help="interpreter with hnn-core 0.6.1 installed")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode (>= 3)")
    parser.add_argument("--no-coreneuron", action="store_true")
    parser.add_argument("--mesh", type=int, default=10,
                        help="pyramidal grid side (10 = the default model; smaller only "
                             "for smoke tests)")
    parser.add_argument("--tstop", type=float, default=TSTOP,
                        help="simulated time, ms (170 = the default model)")
    parser.add_argument("--threads", type=int, nargs="*", default=[],
                        help="also time warm CoreNEURON runs with these thread counts")
    parser.add_argument("--child", choices=["cold", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--point", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "cold":
        print(json.dumps(_child_cold(args.mesh, args.tstop, args.point)), flush=True)
        return
    if args.child == "reference":
        print(json.dumps(_child_reference(args.mesh, args.tstop, args.point)), flush=True)
        return
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.rounds < 3 and args.mesh == 10:
        parser.error("--rounds must be at least 3 for a full-size measurement")
    if args.baseline_python and not os.path.isfile(args.baseline_python):
        parser.error(f"--baseline-python must be an interpreter, got "
                     f"{args.baseline_python!r} (no such file)")

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
    # the same points for every mode, from hnnfit's defaults (the reference's)
    points = make_points(warm["neuron"].start, args.rounds + 1)
    results = {}
    if args.baseline_python:
        results[REF_MODE] = []
    results["hnnfit cold"] = []
    for e in engines:
        results[names[e]] = []

    # the first warm evaluation builds the model: reported on its own row
    firsts = {}
    for e in engines:
        firsts[names[e]] = warm[e].evaluate(points[0])
        _emit({"mode": names[e] + " (first: build)", "point": 0, **firsts[names[e]]})

    for r in range(args.rounds):
        point = points[r + 1]
        if args.baseline_python:
            res = _run_child(args.baseline_python, "reference", args.mesh, args.tstop, point)
            results[REF_MODE].append(res)
            _emit({"round": r, "point": r + 1, "mode": "reference", **res})
        res = _run_child(sys.executable, "cold", args.mesh, args.tstop, point)
        results["hnnfit cold"].append(res)
        _emit({"round": r, "point": r + 1, "mode": "cold", **res})
        for e in engines:
            res = warm[e].evaluate(point)
            if not res["reused"]:
                raise RuntimeError("the warm model was rebuilt; the structure key changed")
            results[names[e]].append(res)
            _emit({"round": r, "point": r + 1, "mode": names[e], **res})

    print()
    if args.baseline_python:
        ref = _median(results[REF_MODE], "wall_s")
        for mode, recs in results.items():
            if mode != REF_MODE:
                print(f"ratio reference / {mode}: {ref / _median(recs, 'wall_s'):.2f}")
        print()
    print(time_table(results, firsts))
    print()
    table, _ = dipole_table(results)
    print(table)


if __name__ == "__main__":
    main()
