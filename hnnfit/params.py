"""Parameter sets of the HNN column model: reading, writing, drive extraction.

A parameter set is a flat mapping from names such as ``'L2Pyr_soma_L'``
(um), ``'gbar_evprox_1_L2Pyr_ampa'`` (uS) or ``'t_evdist_1'`` (ms) to
numbers. Two file formats hold them:

* JSON (``.json``): one object; hnnfit writes this format.
* the legacy HNN GUI format (``.param``): one ``key: value`` pair per line.
  A value containing ``'.'`` or ``'e'`` is a float, otherwise an int; a value
  that parses as neither stays a string (e.g. ``sim_prefix: default``). This
  is the rule the reference implementation applies, so ``1000`` is an int
  and ``20.`` a float, exactly as the same entries in a JSON file.

:class:`Params` keeps what the file says and nothing else: unlike the
reference, it neither drops unknown keys nor fills in missing ones. Code
that needs a key a file may omit asks :func:`get_param`, which falls back
on the reference's default for that key.
"""
import fnmatch
import json
import numbers
import re
from collections import OrderedDict
from copy import deepcopy
from pathlib import Path

import numpy as np

from ._resources import params_dir
from .validation import check_bool, check_type

__all__ = [
    "Params",
    "read_params",
    "write_params",
    "default_params",
    "get_param",
    "extract_drive_specs",
    "CELL_TYPES",
    "SHORT_NAMES",
    "EVOKED_TARGETS",
    "EVOKED_DELAYS",
    "EVOKED_SPACE_CONSTANT",
    "POISSON_DELAYS",
    "POISSON_SPACE_CONSTANT",
]

#: Cell types in gid order.
CELL_TYPES = ("L2_basket", "L2_pyramidal", "L5_basket", "L5_pyramidal")

#: Cell type -> prefix used in parameter names.
SHORT_NAMES = {
    "L2_basket": "L2Basket",
    "L2_pyramidal": "L2Pyr",
    "L5_basket": "L5Basket",
    "L5_pyramidal": "L5Pyr",
}

# What a parameter file's drives are: the file gives their timing and
# weights, and these conventions fix the rest. Reading a file applies them
# (extract_drive_specs); writing one (hnnfit.param_export) checks a drive
# keeps them.

#: Location of an evoked drive -> the cell types it targets.
EVOKED_TARGETS = {
    "proximal": CELL_TYPES,
    "distal": ("L2_basket", "L2_pyramidal", "L5_pyramidal"),
}

#: Location of an evoked drive -> synaptic delay (ms) onto each cell type.
EVOKED_DELAYS = {
    "proximal": {"L2_basket": 0.1, "L2_pyramidal": 0.1,
                 "L5_basket": 1.0, "L5_pyramidal": 1.0},
    "distal": {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_pyramidal": 0.1},
}

#: Space constant of an evoked drive's connections (in grid spacings).
EVOKED_SPACE_CONSTANT = 3.0

#: Synaptic delay (ms) of the Poisson drive (``extpois``, proximal, onto
#: every cell type) onto each cell type.
POISSON_DELAYS = {"L2_basket": 1.0, "L2_pyramidal": 0.1,
                  "L5_basket": 1.0, "L5_pyramidal": 1.0}

#: Space constant of the Poisson drive's connections (in grid spacings).
POISSON_SPACE_CONSTANT = 100.0

_EXTENSIONS = (".json", ".param")
_PATTERN_CHARS = re.compile(r"[*?\[]")


def _is_pattern(key):
    return isinstance(key, str) and _PATTERN_CHARS.search(key) is not None


class Params(dict):
    """A parameter set: a ``dict`` that also answers shell-style patterns.

    Parameters
    ----------
    params_input : mapping | None
        Initial content (copied). ``None`` gives an empty set.

    Notes
    -----
    ``params['L2Pyr_soma*']`` returns a new :class:`Params` holding every
    entry whose name matches the pattern (``*``, ``?`` and ``[...]`` as in
    :mod:`fnmatch`, case-sensitive); a pattern that matches nothing raises
    ``KeyError``. An exact key always wins over its reading as a pattern.
    Assigning to a pattern, ``params['gbar_evprox_1_*'] = 0.0``, sets every
    matching entry.
    """

    def __init__(self, params_input=None):
        if params_input is None:
            params_input = {}
        check_type(params_input, dict, "params_input", "dict or None")
        super().__init__(params_input)

    def _matches(self, pattern):
        return [key for key in self if isinstance(key, str)
                and fnmatch.fnmatchcase(key, pattern)]

    def __getitem__(self, key):
        if dict.__contains__(self, key) or not _is_pattern(key):
            return dict.__getitem__(self, key)
        matches = self._matches(key)
        if not matches:
            raise KeyError(f"no parameter matches the pattern {key!r}")
        return Params({name: deepcopy(dict.__getitem__(self, name))
                       for name in matches})

    def __setitem__(self, key, value):
        if dict.__contains__(self, key) or not _is_pattern(key):
            dict.__setitem__(self, key, value)
            return
        matches = self._matches(key)
        if not matches:
            # creating a key whose name looks like a pattern is almost
            # always a typo in the pattern
            raise KeyError(f"no parameter matches the pattern {key!r}")
        for name in matches:
            dict.__setitem__(self, name, deepcopy(value))

    def copy(self):
        """A deep copy (nested values are not shared)."""
        return Params(deepcopy(dict(self)))

    def __repr__(self):
        if not self:
            return "Params({})"
        names = sorted(self, key=str)
        width = max(len(str(name)) for name in names)
        lines = [f"Params with {len(self)} entries:"]
        lines += [f"  {str(name):<{width}} : {dict.__getitem__(self, name)!r}"
                  for name in names]
        return "\n".join(lines)

    __str__ = __repr__

    def __reduce__(self):
        # plain dict state, so pickling never goes through the pattern logic
        return (Params, (dict(self),))


def _convert_legacy_value(text):
    """Type a ``.param`` value the way the HNN GUI files were meant to be read."""
    try:
        if "." in text or "e" in text:
            return float(text)
        return int(text)
    except ValueError:
        return text


def _parse_legacy(text, path):
    out = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = line.split(":")
        key = fields[0].strip()
        value = fields[-1].strip()
        if len(fields) != 2 or not key or not value:
            raise ValueError(
                f"line {lineno} of {path} must be 'key: value', got {raw!r}"
            )
        out[key] = _convert_legacy_value(value)
    return out


def _resolve(fname):
    """Find a parameter file: as given, else by its bare name in PARAMS_DIR."""
    check_type(fname, (str, Path), "fname", "str or pathlib.Path")
    path = Path(fname).expanduser()
    suffix = path.suffix.lower()
    bare = path.parent == Path(".")
    if suffix not in _EXTENSIONS:
        if bare and suffix == "":
            # 'default' means default.json (or .param) in PARAMS_DIR
            for ext in _EXTENSIONS:
                candidate = params_dir() / (path.name + ext)
                if candidate.is_file():
                    return candidate
            raise FileNotFoundError(
                f"no parameter file named {str(fname)!r} (.json or .param) "
                f"in {params_dir()}"
            )
        raise ValueError(
            f"fname must end in .json or .param, got {str(fname)!r}"
        )
    if path.is_file():
        return path
    if bare:
        candidate = params_dir() / path.name
        if candidate.is_file():
            return candidate
        # the bundled sets are JSON conversions of HNN's .param files
        twin = [params_dir() / (path.stem + ext) for ext in _EXTENSIONS
                if ext != suffix and (params_dir() / (path.stem + ext)).is_file()]
        hint = (f"; hnnfit ships {twin[0].name!r} with the same values" if twin else "")
        raise FileNotFoundError(
            f"parameter file {str(fname)!r} found neither at {path.resolve()} "
            f"nor in {params_dir()}{hint}"
        )
    raise FileNotFoundError(f"parameter file {str(path)!r} does not exist")


def read_params(fname):
    """Read a parameter set from a ``.json`` or legacy ``.param`` file.

    Parameters
    ----------
    fname : str | pathlib.Path
        Path of the file. A bare file name (no folder) that does not exist
        in the working directory is looked up in ``hnnfit.PARAMS_DIR``;
        a bare name without extension (``'default'``) means the ``.json``
        (else ``.param``) file of that name there.

    Returns
    -------
    params : Params
        The file's entries, numbers typed as in the file (ints stay int).

    Raises
    ------
    ValueError
        Unknown extension, malformed ``.param`` line (the message names the
        line number and text), invalid JSON, or an empty file.
    FileNotFoundError
        The file does not exist; the message names the path(s) tried.
    """
    path = _resolve(fname)
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            content = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(content, dict):
            raise ValueError(
                f"{path} must hold a JSON object, got {type(content).__name__}"
            )
    else:
        content = _parse_legacy(text, path)
    if not content:
        raise ValueError(f"{path} holds no parameters")
    return Params(content)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        return float(value)
    return value


def write_params(params, fname):
    """Write a parameter set to a JSON file (sorted keys, 4-space indent).

    Parameters
    ----------
    params : dict
        The parameter set (a :class:`Params` or any dict). numpy scalars and
        arrays are stored as plain numbers and lists.
    fname : str | pathlib.Path
        Output path; must end in ``.json``. An existing file is replaced.

    Returns
    -------
    path : pathlib.Path
        The file written.
    """
    check_type(params, dict, "params")
    check_type(fname, (str, Path), "fname", "str or pathlib.Path")
    path = Path(fname).expanduser()
    if path.suffix.lower() != ".json":
        raise ValueError(f"fname must end in .json, got {str(fname)!r}")
    text = json.dumps(_jsonable(dict(params)), sort_keys=True, indent=4)
    path.write_text(text + "\n")
    return path


def default_params():
    """hnnfit's default parameter set (``params/default.json``).

    Returns
    -------
    params : Params
        A fresh copy; changing it does not affect later calls.
    """
    return read_params(params_dir() / "default.json")


# --------------------------------------------------------------------------
# Defaults of keys a file may leave out. These are the values the reference
# implementation substitutes for missing keys; most of them switch the
# corresponding input off (zero weight, start beyond any simulation).
# --------------------------------------------------------------------------

def _reference_fallbacks():
    fb = {
        "tstop": 250.0,
        "dt": 0.025,
        "celsius": 37.0,
        "N_trials": 1,
        "threshold": 0.0,
        "dipole_scalefctr": 30e3,
        "dipole_smooth_win": 15.0,
        "sync_evinput": 1,
        "inc_evinput": 0.0,
        "t0_pois": 0.0,
        "T_pois": -1,
        "prng_seedcore_input_prox": 0,
        "prng_seedcore_input_dist": 0,
        "prng_seedcore_extpois": 0,
        "prng_seedcore_extgauss": 0,
        "input_prox_A_delay_L2": 0.1,
        "input_prox_A_delay_L5": 1.0,
        "input_dist_A_delay_L2": 5.0,
        "input_dist_A_delay_L5": 5.0,
    }
    for side in ("prox", "dist"):
        fb.update({
            f"t0_input_{side}": 1000.0,
            f"tstop_input_{side}": 250.0,
            f"f_input_{side}": 10.0,
            f"f_stdev_{side}": 20.0,
            f"events_per_cycle_{side}": 2,
            f"repeats_{side}": 10,
            f"t0_input_stdev_{side}": 0.0,
        })
        for short in SHORT_NAMES.values():
            for receptor in ("ampa", "nmda"):
                fb[f"input_{side}_A_weight_{short}_{receptor}"] = 0.0
    gauss_sigma = {"L2Basket": 3.6, "L2Pyr": 3.6, "L5Basket": 2.0, "L5Pyr": 4.8}
    for short in SHORT_NAMES.values():
        fb[f"{short}_Gauss_A_weight"] = 0.0
        fb[f"{short}_Gauss_mu"] = 2000.0
        fb[f"{short}_Gauss_sigma"] = gauss_sigma[short]
        fb[f"{short}_Pois_A_weight_ampa"] = 0.0
        fb[f"{short}_Pois_A_weight_nmda"] = 0.0
        fb[f"{short}_Pois_lamtha"] = 0.0
    return fb


_FALLBACKS = _reference_fallbacks()
_EVOKED_FALLBACK = re.compile(
    r"^(?:(?P<gbar>gbar_ev(?:prox|dist)_\d+_\w+)|t_ev(?:prox|dist)_\d+"
    r"|sigma_t_ev(?:prox|dist)_\d+|(?P<seed>prng_seedcore_ev(?:prox|dist)_\d+)"
    r"|(?P<nspk>numspikes_ev(?:prox|dist)_\d+))$"
)


def get_param(params, key):
    """Value of ``key`` in ``params``, or the reference's default if absent.

    Parameters
    ----------
    params : dict
        A parameter set.
    key : str
        Exact parameter name (no pattern).

    Returns
    -------
    value : int | float | str
        ``params[key]`` if present; otherwise the value the reference
        implementation uses for a missing key (e.g. ``tstop`` 250.0 ms,
        ``N_trials`` 1, ``dipole_scalefctr`` 30000.0, ``dipole_smooth_win``
        15.0 ms, ``celsius`` 37.0 degC, ``sync_evinput`` 1, zero weights for
        inputs).

    Raises
    ------
    KeyError
        ``key`` is absent and has no known default.
    """
    check_type(params, dict, "params")
    check_type(key, str, "key")
    if key in params:
        return dict.__getitem__(params, key)
    if key in _FALLBACKS:
        return _FALLBACKS[key]
    match = _EVOKED_FALLBACK.match(key)
    if match:
        if match.group("seed"):
            return 0
        if match.group("nspk"):
            return 1
        return 0.0
    raise KeyError(f"parameter {key!r} is missing and has no default")


# --------------------------------------------------------------------------
# Drives defined by a parameter file
# --------------------------------------------------------------------------

def _evoked_indices(params, prefix):
    """Numbers n of the evoked inputs ``t_<prefix>_n`` a file defines, sorted."""
    pattern = re.compile(rf"^t_{prefix}_(\d+)$")
    found = sorted(int(m.group(1)) for m in map(pattern.match, params) if m)
    # the reference counts the inputs and then numbers them 1..n
    expected = list(range(1, len(found) + 1))
    if found != expected:
        raise ValueError(
            f"evoked inputs t_{prefix}_<n> must be numbered 1..{len(found)}, "
            f"got {found}"
        )
    return found


def _evoked_specs(params, legacy_mode):
    specs = {}
    sync = bool(get_param(params, "sync_evinput"))
    for prefix, location in (("evprox", "proximal"), ("evdist", "distal")):
        targets, delays = EVOKED_TARGETS[location], EVOKED_DELAYS[location]
        for num in _evoked_indices(params, prefix):
            tag = f"{prefix}_{num}"
            weights = {"ampa": {}, "nmda": {}}
            for cell_type in targets:
                base = f"gbar_{tag}_{SHORT_NAMES[cell_type]}"
                for receptor in ("ampa", "nmda"):
                    key = f"{base}_{receptor}"
                    # old files give one weight for both receptors
                    if key not in params and base in params:
                        key = base
                    weights[receptor][cell_type] = get_param(params, key)
            seed = int(get_param(params, f"prng_seedcore_{tag}"))
            if legacy_mode:
                # the HNN GUI had 18 fewer bursty drive cells before evoked
                # drives, which shifted its absolute-gid seeds by 18
                seed -= 18
            specs[f"{prefix}{num}"] = {
                "type": "evoked",
                "mu": get_param(params, f"t_{tag}"),
                "sigma": get_param(params, f"sigma_t_{tag}"),
                "numspikes": get_param(params, f"numspikes_{tag}"),
                "location": location,
                "n_drive_cells": 1 if sync else "n_cells",
                "cell_specific": not sync,
                "weights_ampa": weights["ampa"],
                "weights_nmda": weights["nmda"],
                "synaptic_delays": dict(delays),
                "space_constant": EVOKED_SPACE_CONSTANT,
                "event_seed": seed,
            }
    return specs


def _bursty_specs(params, legacy_mode):
    specs = {}
    tstop = get_param(params, "tstop")
    for num, (side, location, targets) in enumerate(
            (("prox", "proximal", CELL_TYPES),
             ("dist", "distal", ("L2_basket", "L2_pyramidal", "L5_pyramidal"))),
            start=1):
        t0 = get_param(params, f"t0_input_{side}")
        # the train never outlasts the simulation
        t_end = min(get_param(params, f"tstop_input_{side}"), tstop)
        if not legacy_mode and t_end < t0:
            continue
        delay_l2 = get_param(params, f"input_{side}_A_delay_L2")
        delay_l5 = get_param(params, f"input_{side}_A_delay_L5")
        if delay_l5 == -1:
            # GUI convention: -1 means "as L2", except that the L2 default
            # of 0.1 ms maps to 1.0 ms for L5
            delay_l5 = delay_l2 if delay_l2 != 0.1 else 1.0
        weights_ampa, weights_nmda, delays = {}, {}, {}
        for cell_type in targets:
            short = SHORT_NAMES[cell_type]
            weights_ampa[cell_type] = get_param(
                params, f"input_{side}_A_weight_{short}_ampa")
            weights_nmda[cell_type] = get_param(
                params, f"input_{side}_A_weight_{short}_nmda")
            delays[cell_type] = delay_l2 if cell_type.startswith("L2") else delay_l5
        specs[f"bursty{num}"] = {
            "type": "bursty",
            "tstart": t0,
            "tstart_std": get_param(params, f"t0_input_stdev_{side}"),
            "tstop": t_end,
            "burst_rate": get_param(params, f"f_input_{side}"),
            "burst_std": get_param(params, f"f_stdev_{side}"),
            "numspikes": get_param(params, f"events_per_cycle_{side}"),
            # intra-burst interval is fixed in the GUI, not a file entry
            "spike_isi": 10,
            "n_drive_cells": get_param(params, f"repeats_{side}"),
            "cell_specific": False,
            "location": location,
            "weights_ampa": weights_ampa,
            "weights_nmda": weights_nmda,
            "synaptic_delays": delays,
            "space_constant": 100.0,
            "event_seed": int(get_param(params, f"prng_seedcore_input_{side}")),
        }
    return specs


def _gauss_spec(params, legacy_mode):
    mu = get_param(params, "L2Basket_Gauss_mu")
    if not legacy_mode and mu > get_param(params, "tstop"):
        return {}
    weights, delays = {}, {}
    for cell_type in CELL_TYPES:
        short = SHORT_NAMES[cell_type]
        weights[cell_type] = get_param(params, f"{short}_Gauss_A_weight")
        # Faithful to the reference, whose legacy table put each cell type's
        # Gaussian mean where the delay belongs: the synaptic delay of this
        # drive is the per-type mean time (ms).
        delays[cell_type] = get_param(params, f"{short}_Gauss_mu")
    return {"extgauss": {
        "type": "evoked",
        "mu": mu,
        "sigma": get_param(params, "L2Basket_Gauss_sigma"),
        "numspikes": 50,
        "location": "proximal",
        "weights_ampa": weights,
        "weights_nmda": {},
        "synaptic_delays": delays,
        "space_constant": 100.0,
        "event_seed": int(get_param(params, "prng_seedcore_extgauss")),
    }}


def _poisson_spec(params, legacy_mode):
    t0 = get_param(params, "t0_pois")
    t_end = get_param(params, "T_pois")
    if not legacy_mode and t_end < t0:
        return {}
    delays = dict(POISSON_DELAYS)
    rates, weights_ampa, weights_nmda = {}, {}, {}
    for cell_type in CELL_TYPES:
        short = SHORT_NAMES[cell_type]
        rate = get_param(params, f"{short}_Pois_lamtha")
        # placeholder drives in old files carry rate 0; a Poisson process
        # needs a positive rate, and the reference substitutes 1 Hz
        rates[cell_type] = rate if rate > 0 else 1
        weights_ampa[cell_type] = get_param(params, f"{short}_Pois_A_weight_ampa")
        weights_nmda[cell_type] = get_param(params, f"{short}_Pois_A_weight_nmda")
    return {"extpois": {
        "type": "poisson",
        # negative times appear in old files; a drive cannot start before 0
        "tstart": max(0, t0),
        "tstop": max(0, t_end),
        "rate_constant": rates,
        "location": "proximal",
        "weights_ampa": weights_ampa,
        "weights_nmda": weights_nmda,
        "synaptic_delays": delays,
        "space_constant": POISSON_SPACE_CONSTANT,
        "event_seed": int(get_param(params, "prng_seedcore_extpois")),
    }}


def extract_drive_specs(params, legacy_mode=False):
    """The external drives a parameter file defines, in the order to add them.

    Parameters
    ----------
    params : dict
        A parameter set (keys such as ``t_evprox_1`` (ms),
        ``gbar_evprox_1_L2Pyr_ampa`` (uS), ``prng_seedcore_evprox_1``,
        ``t0_input_prox`` (ms), ``T_pois`` (ms), ...). Missing keys take the
        reference's defaults (:func:`get_param`).
    legacy_mode : bool
        Reproduce the HNN GUI: no drive is skipped and evoked event seeds
        are lowered by 18. Default False.

    Returns
    -------
    specs : collections.OrderedDict
        Drive name -> spec, sorted by name (``bursty1``, ``bursty2``,
        ``evdist1``, ``evprox1``, ``evprox2``, ``extgauss``, ``extpois``),
        which is the order in which the reference adds them and hence
        assigns their gids. Each spec holds ``'type'`` (``'evoked'``,
        ``'poisson'`` or ``'bursty'``) and otherwise exactly the keyword
        arguments of the matching ``Network.add_<type>_drive``.

    Notes
    -----
    Drives are skipped (unless ``legacy_mode``) when they could not fire:
    the rhythmic (bursty) inputs when ``tstop_input_*``, clipped to
    ``tstop``, is before ``t0_input_*``; the Gaussian input when its mean is
    after ``tstop``; the Poisson input when ``T_pois < t0_pois``. Zero
    weights do not remove a drive.

    ``event_seed`` is the file's ``prng_seedcore_*`` value. The reference
    then adds the first gid of the drive's gid range to it once all drives
    are attached (the GUI seeded by absolute gid); a Network building its
    drives from these specs must do the same.
    """
    check_type(params, dict, "params")
    legacy_mode = check_bool(legacy_mode, "legacy_mode")
    specs = {}
    specs.update(_bursty_specs(params, legacy_mode))
    specs.update(_evoked_specs(params, legacy_mode))
    specs.update(_gauss_spec(params, legacy_mode))
    specs.update(_poisson_spec(params, legacy_mode))
    return OrderedDict((name, specs[name]) for name in sorted(specs))
