"""What a result depends on besides its inputs: the machine and the software.

A fit is deterministic on one machine: the same study file, resumed or run
again, proposes and scores the same points. Across machines it need not be.
The CoreNEURON build is compiled for the host CPU (``-march=native``), the
BLAS library picks kernels by CPU, and scikit-optimize's proposals depend on
the scikit-learn and scipy versions; in a spiking network a last-bit
difference can change a spike, and a long fit's path then drifts apart.
:func:`sys_info` records these facts, ``hnnfit info`` prints them, and every
study stores them when it is created (``Study.machine``), so that two
results can be compared knowing where each came from.

Nothing here imports NEURON.
"""
import os
import platform
from importlib import metadata
from pathlib import Path

from . import __version__
from .simulator import coreneuron_flags

#: Distributions whose versions can change a fit's values or its path.
PACKAGES = ("neuron", "numpy", "scipy", "scikit-optimize", "scikit-learn", "joblib",
            "pandas", "matplotlib", "cma", "dask", "distributed")

#: Environment variables that change how simulations are built or run.
ENV_VARS = ("HNNFIT_CORENEURON_FLAGS", "HNNFIT_CACHE", "OPENBLAS_CORETYPE",
            "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def package_version(dist):
    """Installed version of distribution ``dist`` (str), or None if absent."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_features():
    # the vector extensions -march=native compiles for
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            wanted = ("avx512f", "avx2", "fma", "sse4_2", "asimd", "sve")
            return " ".join(f for f in wanted if f in have) or "none of avx2/avx512f/fma"
    return None


def _memory_gib():
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _blas():
    # threadpoolctl comes with scikit-learn (a scikit-optimize dependency);
    # it reports the BLAS the loaded numpy uses and the kernels it chose
    try:
        import numpy  # noqa: F401  (loads the BLAS library to be described)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    parts = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        arch = lib.get("architecture")
        parts.append(f"{lib.get('internal_api')} {lib.get('version')}"
                     + (f" ({arch})" if arch else "")
                     + f", {lib.get('num_threads')} thread(s)")
    return "; ".join(parts) or None


def sys_info():
    """The machine and software a simulation or fit runs on.

    Returns
    -------
    info : dict
        JSON-able: ``hnnfit``, ``python``, ``platform``, ``cpu`` (model),
        ``cpu_features`` (vector extensions), ``cpus`` (usable / logical),
        ``memory_gib``, ``blas``, ``coreneuron_flags`` (compiler flags of
        the CoreNEURON build), ``packages`` (distribution -> version, None
        if not installed) and ``env`` (the environment variables of
        :data:`ENV_VARS` that are set).

    Examples
    --------
    >>> import hnnfit
    >>> info = hnnfit.sys_info()
    >>> sorted(info)[:3]
    ['blas', 'coreneuron_flags', 'cpu']
    """
    return {
        "hnnfit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_features": _cpu_features(),
        "cpus": f"{_usable_cpus()} usable / {os.cpu_count()} logical",
        "memory_gib": _memory_gib(),
        "blas": _blas(),
        "coreneuron_flags": coreneuron_flags(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "env": {name: os.environ[name] for name in ENV_VARS if name in os.environ},
    }


def format_sys_info(info):
    """:func:`sys_info`'s dict as aligned ``key: value`` lines (str)."""
    rows = [(k, v) for k, v in info.items() if k not in ("packages", "env")]
    rows += [(name, version if version is not None else "not installed")
             for name, version in info.get("packages", {}).items()]
    rows += [(f"${name}", value) for name, value in info.get("env", {}).items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{width + 1}} {'-' if v is None else v}" for k, v in rows)


def machine_summary(info):
    """One line naming what most often explains a difference between two runs."""
    pk = info.get("packages", {})
    return (f"{info.get('cpu')} ({info.get('cpu_features')}), {info.get('cpus')}; "
            f"hnnfit {info.get('hnnfit')}, NEURON {pk.get('neuron')}, "
            f"numpy {pk.get('numpy')}, scipy {pk.get('scipy')}, "
            f"scikit-learn {pk.get('scikit-learn')}, Python {info.get('python')}")
