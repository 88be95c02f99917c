"""The one place where user input is checked.

Every public entry point validates its arguments with these helpers, so
that all messages share one style::

    <name> must be <expectation>, got <value!r>

and name both the bad value and what was expected.
"""
import numbers

import numpy as np


def _fmt(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_seeds(seeds):
    """Seeds as ranges, ``'0-2, 1000-1188'``: long seed lists stay readable in messages.

    Duplicates are dropped and the seeds sorted; a run of consecutive seeds
    is written ``first-last``.
    """
    seeds = sorted({int(s) for s in seeds})
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(str(start) if start == s else f"{start}-{s}")
            start = None
    return ", ".join(parts) if parts else "none"


def check_type(value, types, name, type_name=None):
    """Raise ``TypeError`` unless ``value`` is an instance of ``types``."""
    if isinstance(types, type):
        types = (types,)
    # bool is an int subclass; reject it where numbers are expected
    if isinstance(value, bool) and bool not in types and numbers.Number not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        if type_name is None:
            type_name = " or ".join(t.__name__ for t in types)
        raise TypeError(
            f"{name} must be an instance of {type_name}, got "
            f"{type(value).__name__} {_fmt(value)}"
        )
    return value


def check_number(value, name, *, low=None, high=None, low_inclusive=True,
                 high_inclusive=True, allow_none=False):
    """Check a real, finite number, optionally within a range; return it as float."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(
            f"{name} must be a number, got {type(value).__name__} {_fmt(value)}"
        )
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {_fmt(value)}")
    if low is not None:
        bad = value < low if low_inclusive else value <= low
        if bad:
            op = ">=" if low_inclusive else ">"
            raise ValueError(f"{name} must be {op} {low}, got {_fmt(value)}")
    if high is not None:
        bad = value > high if high_inclusive else value >= high
        if bad:
            op = "<=" if high_inclusive else "<"
            raise ValueError(f"{name} must be {op} {high}, got {_fmt(value)}")
    return value


def check_positive(value, name, allow_none=False):
    """A number strictly greater than zero."""
    return check_number(value, name, low=0.0, low_inclusive=False,
                        allow_none=allow_none)


def check_nonnegative(value, name, allow_none=False):
    """A number greater than or equal to zero."""
    return check_number(value, name, low=0.0, allow_none=allow_none)


def check_int(value, name, *, low=None, high=None, allow_none=False):
    """An integer (Python or numpy, not bool), optionally within [low, high]."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        # accept floats that are whole numbers (e.g. values read from JSON)
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(
                f"{name} must be an integer, got {type(value).__name__} {_fmt(value)}"
            )
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_option(value, options, name):
    """Raise ``ValueError`` unless ``value`` is one of ``options``."""
    if value not in options:
        opts = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {opts}, got {_fmt(value)}")
    return value


def check_bool(value, name):
    """A Python or numpy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {_fmt(value)}")
    return bool(value)


def check_finite_array(values, name, ndim=None, min_len=None):
    """Return ``values`` as a float array, refusing NaN/inf and wrong shapes."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {_fmt(values)}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if min_len is not None and len(arr) < min_len:
        raise ValueError(f"{name} must have at least {min_len} values, got {len(arr)}")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must contain only finite values, got {arr[tuple(idx)]} at index "
            f"{tuple(int(i) for i in idx) if arr.ndim > 1 else int(idx[0])}"
        )
    return arr


def check_increasing(values, name):
    """Refuse a 1-D array that is not strictly increasing."""
    arr = check_finite_array(values, name, ndim=1)
    steps = np.diff(arr)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        raise ValueError(
            f"{name} must be strictly increasing, got {arr[i]} followed by {arr[i + 1]} "
            f"at index {i + 1}"
        )
    return arr
