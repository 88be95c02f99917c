"""Compile and load hnnfit's NMODL mechanisms.

The ``.mod`` files in :func:`hnnfit._resources.mod_dir` are compiled with
the ``nrnivmodl`` that ships with the installed NEURON wheel, into a
per-user cache::

    $HNNFIT_CACHE/mechanisms/<key>/          (HNNFIT_CACHE set)
    ~/.cache/hnnfit/mechanisms/<key>/        (default; honours XDG_CACHE_HOME)

``<key>`` hashes the ``.mod`` sources, the NEURON version, the platform and
the CoreNEURON flag, so an edited mechanism, a NEURON upgrade or a
CoreNEURON build each get their own folder and nothing stale is reused.
Several processes may ask for the same build at once (parallel workers):
one compiles while holding a file lock, in a private temporary folder that
is renamed into place only after a successful build; the others wait for
the lock and then find the finished folder.

Nothing happens at import time: the first :func:`ensure_mechanisms` or
:func:`load_mechanisms` call compiles (if needed) and loads.
"""
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .._resources import mod_dir
from ..exceptions import CompilationError, SimulationError
from ..validation import check_bool
from ._rewrite import rewrite_build

# Bump when the layout of a build folder or the build recipe changes, so old
# cache entries are not reused.
_RECIPE_VERSION = "4"

# Compiler flags of the CoreNEURON build (NEURON's default is -O2). At -O3
# with -ffast-math GCC vectorises the state updates through glibc's vector
# exp/pow (libmvec), about 1.4x faster than -O2; dipoles stay equal to the
# plain engine's to ~1e-13 of the peak (tests/test_coreneuron.py). The plain
# NEURON build keeps NEURON's flags: it is the bit-exact reference path.
# HNNFIT_CORENEURON_FLAGS overrides them ("" = NEURON's defaults).
DEFAULT_CORENEURON_FLAGS = "-O3 -march=native -ffast-math"

# Written last inside a finished build folder.
_DONE_MARKER = "BUILD_OK"

_LOCK = threading.Lock()
_loaded = {}   # coreneuron flag -> build folder loaded into this process


def cache_root():
    """Folder under which compiled mechanisms are cached.

    Returns
    -------
    path : pathlib.Path
        ``$HNNFIT_CACHE/mechanisms`` if the ``HNNFIT_CACHE`` environment
        variable is set, otherwise ``<XDG_CACHE_HOME or ~/.cache>/hnnfit/
        mechanisms``.
    """
    env = os.environ.get("HNNFIT_CACHE")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "hnnfit"
    return base / "mechanisms"


def _neuron_version():
    # Prefer package metadata: importing neuron would start a NEURON
    # instance in the calling process just to read a version string.
    from importlib import metadata
    for dist in ("neuron", "neuron-nightly", "neuron-gpu", "neuron-gpu-nightly"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import neuron
    return neuron.__version__


def _mod_files(source):
    files = sorted(source.glob("*.mod"))
    if not files:
        raise CompilationError(f"no .mod files found in {source}")
    return files


def coreneuron_flags():
    """Extra compiler flags for the CoreNEURON build of the mechanisms.

    Returns
    -------
    flags : str
        ``$HNNFIT_CORENEURON_FLAGS`` if set (may be empty), otherwise
        :data:`DEFAULT_CORENEURON_FLAGS`.
    """
    return os.environ.get("HNNFIT_CORENEURON_FLAGS", DEFAULT_CORENEURON_FLAGS).strip()


def _cpu_fingerprint():
    # -march=native code may not run on another CPU model (clusters often
    # share a home directory, hence this cache, between node types)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [ln for ln in text.splitlines()
            if ln.startswith(("model name", "flags", "vendor_id"))]
    return "\n".join(sorted(set(keep)))


def build_key(coreneuron=False, source=None):
    """Hash identifying one build of the mechanisms.

    Parameters
    ----------
    coreneuron : bool
        Whether the build includes the CoreNEURON library.
    source : path-like or None
        Folder of ``.mod`` files; ``mod_dir()`` if None.

    Returns
    -------
    key : str
        24 hexadecimal digits.
    """
    source = Path(mod_dir() if source is None else source)
    digest = hashlib.sha256()
    for part in (_RECIPE_VERSION, _neuron_version(), sys.platform,
                 platform.machine(), f"coreneuron={bool(coreneuron)}"):
        digest.update(part.encode() + b"\0")
    if coreneuron:
        flags = coreneuron_flags()
        digest.update(f"flags={flags}".encode() + b"\0")
        if "native" in flags:
            digest.update(_cpu_fingerprint().encode() + b"\0")
    for path in _mod_files(source):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def find_nrnivmodl():
    """Path of the ``nrnivmodl`` belonging to the running Python's NEURON.

    Looks next to ``sys.executable`` first (a virtual environment's or a
    pyenv version's ``bin``), then in NEURON's package data, then on PATH.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    CompilationError
        If no ``nrnivmodl`` can be found.
    """
    candidates = [Path(sys.executable).parent / "nrnivmodl"]
    try:
        from importlib.util import find_spec
        spec = find_spec("neuron")
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / ".data" / "bin" / "nrnivmodl")
    except (ImportError, ValueError):
        pass
    on_path = shutil.which("nrnivmodl")
    if on_path:
        candidates.append(Path(on_path))
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise CompilationError(
        "cannot find NEURON's nrnivmodl (looked next to "
        f"{sys.executable}, in the neuron package and on PATH); is the "
        "NEURON wheel installed in this Python environment?"
    )


def mechanism_library(build_dir):
    """Path of the NEURON mechanism library inside a build folder.

    Parameters
    ----------
    build_dir : path-like
        A folder returned by :func:`ensure_mechanisms`.

    Returns
    -------
    path : pathlib.Path or None
        The ``libnrnmech`` shared library, or None if there is none.
    """
    build_dir = Path(build_dir)
    for pattern in ("*/libnrnmech.so", "*/.libs/libnrnmech.so",
                    "*/libnrnmech.dylib", "*/.libs/libnrnmech.dylib",
                    "*/libnrnmech.dll", "nrnmech.dll"):
        found = sorted(build_dir.glob(pattern))
        if found:
            return found[0]
    return None


def _is_complete(build_dir):
    return (build_dir / _DONE_MARKER).is_file() and mechanism_library(build_dir) is not None


def _run_nrnivmodl(source, workdir, coreneuron):
    """Compile ``source``'s .mod files inside ``workdir``; return the log.

    With ``coreneuron``, NMODL's output is then rewritten (branch-free
    table look-ups, plain dipole sums: :mod:`._rewrite`) and the changed
    files recompiled: nrnivmodl has no translate-only step, and a second
    run rebuilds just the newer sources.
    """
    src_copy = workdir / "mod"
    src_copy.mkdir()
    for path in _mod_files(source):
        shutil.copy2(path, src_copy / path.name)
    log = _nrnivmodl_once(source, workdir, coreneuron)
    if coreneuron:
        report = {}
        for generated in workdir.glob("*/corenrn/mod2c"):
            report.update(rewrite_build(generated, [p.stem for p in _mod_files(source)]))
        lines = [f"{stem}: {', '.join(names)}" for stem, names in sorted(report.items())]
        (workdir / "REWRITTEN").write_text("\n".join(lines) + "\n")
        if report:
            log += "\n[hnnfit] rewritten for CoreNEURON: " + "; ".join(lines) + "\n"
            log += _nrnivmodl_once(source, workdir, coreneuron)
        (workdir / "nrnivmodl.log").write_text(log)
    return log


def _nrnivmodl_once(source, workdir, coreneuron):
    exe = find_nrnivmodl()
    cmd = [str(exe)]
    if coreneuron:
        cmd.append("-coreneuron")
        flags = coreneuron_flags()
        if flags:
            cmd += ["-incflags", flags]
    cmd.append("mod")
    env = dict(os.environ)
    # nrnivmodl calls sibling tools (nocmodl, nrnivmodl-core, ...) by name
    env["PATH"] = os.pathsep.join([str(exe.parent), env.get("PATH", "")])
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              errors="replace")
    except OSError as err:
        raise CompilationError(f"could not run {exe}: {err}") from err
    log = proc.stdout
    (workdir / "nrnivmodl.log").write_text(log)
    if proc.returncode != 0 or mechanism_library(workdir) is None:
        raise CompilationError(
            f"nrnivmodl failed (exit status {proc.returncode}) compiling "
            f"{source}:\n{log}"
        )
    if coreneuron and not list(workdir.glob("*/libcorenrnmech*")):
        raise CompilationError(
            f"nrnivmodl -coreneuron did not produce a CoreNEURON library:\n{log}"
        )
    return log


def ensure_mechanisms(coreneuron=False):
    """Compile the mechanisms if no matching build is cached.

    Safe to call from several processes at once; only one compiles.

    Parameters
    ----------
    coreneuron : bool
        Also build the CoreNEURON mechanism library
        (``nrnivmodl -coreneuron``); slower to compile.

    Returns
    -------
    build_dir : pathlib.Path
        Folder holding the build (``<arch>/libnrnmech.so`` and, with
        ``coreneuron=True``, ``<arch>/libcorenrnmech.so``); see
        :func:`mechanism_library`.

    Raises
    ------
    CompilationError
        If compilation fails; the message contains the compiler output.
    """
    coreneuron = check_bool(coreneuron, "coreneuron")
    source = Path(mod_dir())
    key = build_key(coreneuron, source)
    root = cache_root()
    final = root / key
    if _is_complete(final):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CompilationError(f"cannot create the mechanism cache {root}: {err}") from err
    with open(root / f"{key}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            # another process may have finished the build while we waited
            if _is_complete(final):
                return final
            # Leftovers of builds that were killed midway (only the lock
            # holder builds this key, so none of them is in progress).
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            for stale in root.glob(f".{key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            workdir = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
            try:
                _run_nrnivmodl(source, workdir, coreneuron)
                (workdir / _DONE_MARKER).write_text(
                    f"neuron {_neuron_version()}\ncoreneuron {coreneuron}\n"
                    f"source {source}\n"
                )
                os.rename(workdir, final)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return final


def coreneuron_loaded():
    """Whether this process has loaded the CoreNEURON build of the mechanisms.

    Returns
    -------
    loaded : bool
        True once :func:`load_mechanisms` loaded it (with
        ``coreneuron=True``); NEURON then runs either engine here.
    """
    return True in _loaded


def _mechanisms_present(h):
    # point processes and artificial cells appear as attributes of h
    return all(hasattr(h, name) for name in ("EventReplay", "DipoleSum", "DipoleTip"))


def load_mechanisms(coreneuron=False):
    """Compile if needed and load the mechanisms into this process, once.

    Further calls return at once. A plain-NEURON request is satisfied by an
    already loaded CoreNEURON build (it contains the NEURON library too).

    Parameters
    ----------
    coreneuron : bool
        Load a build that also has the CoreNEURON library (required before
        running with ``coreneuron.enable = True``).

    Returns
    -------
    build_dir : pathlib.Path
        The build folder that is loaded (see :func:`ensure_mechanisms`).

    Raises
    ------
    CompilationError
        If compilation fails.
    SimulationError
        If NEURON refuses the library, or a different build of the same
        mechanisms is already loaded (NEURON cannot unload or replace one).
    """
    coreneuron = check_bool(coreneuron, "coreneuron")
    with _LOCK:
        if coreneuron in _loaded:
            return _loaded[coreneuron]
        if not coreneuron and True in _loaded:
            return _loaded[True]
        if _loaded:
            raise SimulationError(
                "the plain NEURON build of hnnfit's mechanisms is already "
                "loaded in this process; a CoreNEURON build cannot be loaded "
                "next to it. Call load_mechanisms(coreneuron=True) before any "
                "other simulation in a fresh process."
            )
        build_dir = ensure_mechanisms(coreneuron)
        from neuron import h
        if _mechanisms_present(h):
            # e.g. NEURON auto-loaded an x86_64/ folder from the working
            # directory; loading again would clash, so use what is there.
            if coreneuron:
                _point_coreneuron_at(build_dir)
            _loaded[coreneuron] = build_dir
            return build_dir
        lib = mechanism_library(build_dir)
        try:
            ok = h.nrn_load_dll(str(lib))
        except RuntimeError as err:
            raise SimulationError(f"NEURON could not load {lib}: {err}") from err
        if not ok or not _mechanisms_present(h):
            raise SimulationError(f"NEURON could not load the mechanisms in {lib}")
        if coreneuron:
            _point_coreneuron_at(build_dir)
        _loaded[coreneuron] = build_dir
        return build_dir


def _point_coreneuron_at(build_dir):
    # CoreNEURON looks for its mechanism library through CORENEURONLIB (or
    # in ./<arch>/ of the working directory); it must be the one matching
    # the NEURON library just loaded, so override any earlier value.
    libs = sorted(Path(build_dir).glob("*/libcorenrnmech*"))
    if not libs:
        raise SimulationError(f"no CoreNEURON mechanism library in {build_dir}")
    os.environ["CORENEURONLIB"] = str(libs[0])
