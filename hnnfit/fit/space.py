"""Parameter spaces: names of network quantities, their bounds and transforms.

A parameter is addressed by a dotted name that starts with the name of an
external drive of the network:

``'<drive>.<key>'``
    a scalar in ``net.external_drives[drive]['dynamics']``, e.g.
    ``'evprox2.mu'``, ``'evprox2.sigma'``, ``'evprox2.numspikes'`` (must be
    declared ``integer=True``), ``'bursty1.burst_rate'``;
``'<drive>.<key>.<cell_type>'``
    one entry of a per-cell-type dynamics dict, e.g.
    ``'poisson1.rate_constant.L5_pyramidal'``;
``'<drive>.ampa.<cell_type>'`` / ``'<drive>.nmda.<cell_type>'``
    the synaptic weight (uS) of the drive onto that cell type;
``'<drive>.delay.<cell_type>'``
    the synaptic delay (ms) of the drive onto that cell type.

Weights and delays are written both into the drive's own description
(``weights_ampa``, ``weights_nmda``, ``synaptic_delays``) and into the
``nc_dict`` of the drive's connection rules in ``net.connectivity``, since
the simulator builds synapses from the latter.

Solvers work on the unit cube: :meth:`ParameterSpace.to_unit` maps each
parameter's range onto [0, 1] (logarithmically for ``log=True``), so a step
of the same size means the same fraction of every parameter's range.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from ..validation import check_bool, check_number, check_type

_RECEPTORS = ("ampa", "nmda")
# a value inside a bound by less than this fraction of the range counts as
# inside (values that went through the unit transform and back)
_BOUND_TOL = 1e-9


@dataclass(frozen=True)
class Parameter:
    """One fitted quantity and its bounds.

    Parameters
    ----------
    name : str
        Dotted name (see the module docstring), e.g. ``'evprox1.mu'``.
    low, high : float
        Bounds (in the quantity's own unit: ms, uS, ...), ``low < high``.
    log : bool
        Search on a logarithmic scale (needs ``low > 0``).
    integer : bool
        The quantity is an integer (e.g. ``numspikes``); proposals are
        rounded to the nearest integer inside the bounds.
    """

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self):
        check_type(self.name, str, "parameter name")
        if not self.name or self.name.strip() != self.name:
            raise ValueError(f"parameter name must be a non-empty name without spaces, "
                             f"got {self.name!r}")
        low = check_number(self.low, f"low bound of parameter {self.name!r}")
        high = check_number(self.high, f"high bound of parameter {self.name!r}")
        check_bool(self.log, f"log of parameter {self.name!r}")
        check_bool(self.integer, f"integer of parameter {self.name!r}")
        if not low < high:
            raise ValueError(
                f"bounds of parameter {self.name!r} must satisfy low < high, "
                f"got low={low} and high={high}"
            )
        if self.log and low <= 0:
            raise ValueError(
                f"low bound of log-scaled parameter {self.name!r} must be > 0, got {low}"
            )
        if self.integer and math.ceil(low) > math.floor(high):
            raise ValueError(
                f"bounds of integer parameter {self.name!r} must contain an integer, "
                f"got low={low} and high={high}"
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    # --- transforms -----------------------------------------------------
    def to_unit(self, value):
        """Map a value in ``[low, high]`` to ``[0, 1]``."""
        if self.log:
            return (math.log(value) - math.log(self.low)) / (
                math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u):
        """Map ``u`` in ``[0, 1]`` (clipped) back to a value in ``[low, high]``."""
        u = min(1.0, max(0.0, float(u)))
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        value = min(self.high, max(self.low, value))
        if self.integer:
            return int(min(math.floor(self.high), max(math.ceil(self.low), round(value))))
        return value

    def check_value(self, value):
        """Raise ``ValueError`` unless ``value`` lies within the bounds."""
        value = check_number(value, f"value of parameter {self.name!r}")
        slack = _BOUND_TOL * (self.high - self.low)
        if not self.low - slack <= value <= self.high + slack:
            raise ValueError(
                f"value of parameter {self.name!r} must be within [{self.low}, "
                f"{self.high}], got {value}"
            )
        if self.integer and not float(value).is_integer():
            raise ValueError(
                f"value of integer parameter {self.name!r} must be a whole number, "
                f"got {value}"
            )
        return int(value) if self.integer else value

    def to_dict(self):
        return {"name": self.name, "low": self.low, "high": self.high,
                "log": self.log, "integer": self.integer}


def _as_parameter(p):
    if isinstance(p, Parameter):
        return p
    if isinstance(p, dict):
        return Parameter(**p)
    if isinstance(p, (tuple, list)) and 3 <= len(p) <= 5:
        return Parameter(*p)
    raise TypeError(
        "parameters must be Parameter objects, dicts or (name, low, high[, log, "
        f"integer]) tuples, got {type(p).__name__} {p!r}"
    )


# --- network access ------------------------------------------------------
# Connection rules may be objects with attributes or dict-like; read both.
def _conn_field(conn, key):
    try:
        return getattr(conn, key)
    except AttributeError:
        return conn[key]


@dataclass(frozen=True)
class _Address:
    kind: str            # 'dynamics' | 'weight' | 'delay'
    drive: str
    key: str | None = None        # dynamics key, or receptor for 'weight'
    cell_type: str | None = None  # None for a scalar dynamics entry


def _drive_connections(net, drive, cell_type, receptor=None):
    out = []
    for conn in net.connectivity:
        if _conn_field(conn, "src_type") != drive:
            continue
        if _conn_field(conn, "target_type") != cell_type:
            continue
        if receptor is not None and _conn_field(conn, "receptor") != receptor:
            continue
        out.append(conn)
    return out


def _resolve(net, name):
    """Map a dotted parameter name onto the network; ValueError if impossible."""
    drives = net.external_drives
    parts = name.split(".")
    drive = None
    # drive names may themselves contain dots: take the longest that exists
    for k in range(len(parts) - 1, 0, -1):
        cand = ".".join(parts[:k])
        if cand in drives:
            drive, rest = cand, parts[k:]
            break
    if drive is None:
        known = ", ".join(repr(d) for d in drives) or "none"
        raise ValueError(
            f"parameter {name!r} must start with the name of a drive of the network "
            f"(drives: {known}), got {parts[0]!r}"
        )
    spec = drives[drive]
    cell_types = list(net.cell_types)
    if rest[0] in _RECEPTORS or rest[0] == "delay":
        if len(rest) != 2:
            raise ValueError(
                f"parameter {name!r} must have the form '{drive}.{rest[0]}.<cell_type>'"
            )
        cell_type = rest[1]
        if cell_type not in cell_types:
            raise ValueError(
                f"cell type of parameter {name!r} must be one of "
                f"{', '.join(repr(c) for c in cell_types)}, got {cell_type!r}"
            )
        receptor = rest[0] if rest[0] in _RECEPTORS else None
        if not _drive_connections(net, drive, cell_type, receptor):
            what = f"{receptor} synapses" if receptor else "synapses"
            raise ValueError(
                f"parameter {name!r} must address an existing connection, but drive "
                f"{drive!r} has no {what} onto {cell_type!r}"
            )
        if receptor:
            return _Address("weight", drive, receptor, cell_type)
        return _Address("delay", drive, None, cell_type)
    dynamics = spec.get("dynamics") or {}
    key = rest[0]
    if key not in dynamics:
        known = ", ".join(repr(k) for k in dynamics) or "none"
        raise ValueError(
            f"parameter {name!r} must name a dynamics entry of drive {drive!r} "
            f"({known}) or 'ampa'/'nmda'/'delay', got {key!r}"
        )
    current = dynamics[key]
    if isinstance(current, dict):
        if len(rest) != 2 or rest[1] not in current:
            known = ", ".join(repr(k) for k in current)
            raise ValueError(
                f"parameter {name!r} must have the form '{drive}.{key}.<cell_type>' "
                f"with a cell type among {known}"
            )
        return _Address("dynamics", drive, key, rest[1])
    if len(rest) != 1:
        raise ValueError(f"parameter {name!r} must have the form '{drive}.{key}'")
    if isinstance(current, bool) or not isinstance(current, (int, float, np.number)):
        raise ValueError(
            f"parameter {name!r} must address a numeric dynamics entry, got "
            f"{type(current).__name__} {current!r}"
        )
    return _Address("dynamics", drive, key, None)


def _read(net, addr):
    spec = net.external_drives[addr.drive]
    if addr.kind == "dynamics":
        value = spec["dynamics"][addr.key]
        return value if addr.cell_type is None else value[addr.cell_type]
    if addr.kind == "weight":
        weights = spec.get(f"weights_{addr.key}") or {}
        if addr.cell_type in weights:
            return weights[addr.cell_type]
        conn = _drive_connections(net, addr.drive, addr.cell_type, addr.key)[0]
        return _conn_field(conn, "nc_dict")["A_weight"]
    delays = spec.get("synaptic_delays")
    if isinstance(delays, dict) and addr.cell_type in delays:
        return delays[addr.cell_type]
    if delays is not None and not isinstance(delays, dict):
        return delays
    conn = _drive_connections(net, addr.drive, addr.cell_type)[0]
    return _conn_field(conn, "nc_dict")["A_delay"]


def _write(net, addr, value):
    spec = net.external_drives[addr.drive]
    if addr.kind == "dynamics":
        if addr.cell_type is None:
            spec["dynamics"][addr.key] = value
        else:
            spec["dynamics"][addr.key][addr.cell_type] = value
        return
    if addr.kind == "weight":
        field = f"weights_{addr.key}"
        if spec.get(field) is None:
            spec[field] = {}
        spec[field][addr.cell_type] = value
        for conn in _drive_connections(net, addr.drive, addr.cell_type, addr.key):
            _conn_field(conn, "nc_dict")["A_weight"] = value
        return
    delays = spec.get("synaptic_delays")
    if not isinstance(delays, dict):
        # one delay for every target: spell it out per cell type so that one
        # of them can change
        targets = spec.get("target_types") or [
            _conn_field(c, "target_type") for c in net.connectivity
            if _conn_field(c, "src_type") == addr.drive]
        delays = {ct: delays for ct in targets} if delays is not None else {}
        spec["synaptic_delays"] = delays
    delays[addr.cell_type] = value
    for conn in _drive_connections(net, addr.drive, addr.cell_type):
        _conn_field(conn, "nc_dict")["A_delay"] = value


class ParameterSpace:
    """An ordered set of parameters, addressed by name.

    Parameters
    ----------
    parameters : list of Parameter | dict | tuple
        The parameters, in the order solvers see them.
    set_params : callable | None
        Optional user hook ``set_params(net, params)`` that changes a copy
        of the network in place from a dict of parameter values. When given,
        it replaces the built-in dotted-name addressing, so names are free.
        It must be a module-level function (it is pickled to workers).
    """

    def __init__(self, parameters, set_params=None):
        params = [_as_parameter(p) for p in parameters]
        if not params:
            raise ValueError("parameters must hold at least one parameter, got none")
        names = [p.name for p in params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"parameter names must be unique, got {', '.join(dup)} twice")
        if set_params is not None and not callable(set_params):
            raise TypeError(f"set_params must be callable, got {type(set_params).__name__}")
        self._params = params
        self._index = {p.name: i for i, p in enumerate(params)}
        self.set_params = set_params

    # --- container protocol -------------------------------------------------
    @property
    def names(self):
        """Parameter names, in order."""
        return [p.name for p in self._params]

    @property
    def parameters(self):
        return list(self._params)

    def __len__(self):
        return len(self._params)

    def __iter__(self):
        return iter(self._params)

    def __contains__(self, name):
        return name in self._index

    def __getitem__(self, name):
        try:
            return self._params[self._index[name]]
        except KeyError:
            raise KeyError(
                f"parameter name must be one of {', '.join(map(repr, self.names))}, "
                f"got {name!r}") from None

    def __eq__(self, other):
        if not isinstance(other, ParameterSpace):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self):
        body = ", ".join(
            f"{p.name} in [{p.low:g}, {p.high:g}]" + (" log" if p.log else "")
            + (" int" if p.integer else "") for p in self._params)
        return f"<ParameterSpace {body}>"

    # --- values ---------------------------------------------------------------
    def check_values(self, values):
        """Return ``values`` as an ordered dict after checking names and bounds."""
        if isinstance(values, dict):
            missing = [n for n in self.names if n not in values]
            extra = [n for n in values if n not in self._index]
            if missing or extra:
                parts = []
                if missing:
                    parts.append("missing " + ", ".join(map(repr, missing)))
                if extra:
                    parts.append("unknown " + ", ".join(map(repr, extra)))
                raise ValueError(
                    f"parameter values must give exactly the space's parameters, "
                    f"got {'; '.join(parts)}")
            return {p.name: p.check_value(values[p.name]) for p in self._params}
        seq = list(values)
        if len(seq) != len(self):
            raise ValueError(f"parameter values must have {len(self)} entries, got {len(seq)}")
        return {p.name: p.check_value(v) for p, v in zip(self._params, seq)}

    def to_unit(self, values):
        """Map a dict (or ordered sequence) of values to a point of the unit cube.

        Returns
        -------
        u : array of float, shape (n_params,)
        """
        values = self.check_values(values)
        return np.array([min(1.0, max(0.0, p.to_unit(values[p.name])))
                         for p in self._params])

    def from_unit(self, u):
        """Map a point of the unit cube (clipped into it) to a dict of values."""
        u = np.asarray(u, dtype=float).ravel()
        if u.shape != (len(self),):
            raise ValueError(f"unit point must have {len(self)} coordinates, got {u.shape[0]}")
        if not np.isfinite(u).all():
            raise ValueError(f"unit point must be finite, got {u.tolist()}")
        return {p.name: p.from_unit(x) for p, x in zip(self._params, u)}

    def clip(self, values):
        """Bring each value into its bounds (integers rounded)."""
        out = {}
        for p in self._params:
            v = check_number(values[p.name], f"value of parameter {p.name!r}")
            v = min(p.high, max(p.low, v))
            if p.integer:
                v = int(min(math.floor(p.high), max(math.ceil(p.low), round(v))))
            out[p.name] = v
        return out

    def midpoint(self):
        """The centre of the unit cube, as values."""
        return self.from_unit(np.full(len(self), 0.5))

    # --- network --------------------------------------------------------------
    def validate(self, net):
        """Check that every parameter addresses the network; raise ``ValueError`` if not.

        With a ``set_params`` hook the hook is tried once on a copy of the
        network at the centre of the space, so that its errors also show up
        before any simulation.
        """
        if self.set_params is not None:
            try:
                self.set_params(net.copy(), self.midpoint())
            except Exception as err:
                raise ValueError(
                    f"set_params must accept the space's parameters "
                    f"({', '.join(self.names)}), but it raised "
                    f"{type(err).__name__}: {err}") from err
            return
        for p in self._params:
            addr = _resolve(net, p.name)
            current = _read(net, addr)
            if (addr.kind == "dynamics" and isinstance(current, (int, np.integer))
                    and not isinstance(current, bool) and not p.integer):
                raise ValueError(
                    f"parameter {p.name!r} addresses an integer quantity and must be "
                    f"declared integer=True")
            if addr.kind in ("weight", "delay") and p.low < 0:
                raise ValueError(
                    f"low bound of parameter {p.name!r} must be >= 0 for a synaptic "
                    f"{'weight' if addr.kind == 'weight' else 'delay'}, got {p.low}")
            if addr.kind == "dynamics" and p.low < 0:
                # every drive dynamics entry (mu, sigma, tstart, rates, counts)
                # is a time, a spread, a rate or a count: none can be negative
                raise ValueError(
                    f"low bound of parameter {p.name!r} must be >= 0 for a drive's "
                    f"{addr.key!r} (a time in ms, a spread, a rate or a count), got {p.low}")

    def apply(self, net, values):
        """Return a copy of ``net`` with the parameters set to ``values``.

        Parameters
        ----------
        net : Network
            Left untouched.
        values : dict
            One value per parameter (in its own unit), within the bounds.

        Returns
        -------
        net : Network
            A modified copy (``net.copy()``).
        """
        values = self.check_values(values)
        new = net.copy()
        if self.set_params is not None:
            self.set_params(new, dict(values))
            return new
        for p in self._params:
            _write(new, _resolve(new, p.name), values[p.name])
        return new

    def current_values(self, net):
        """The network's present value of each parameter (not clipped to bounds)."""
        if self.set_params is not None:
            raise ValueError(
                "current_values needs the built-in parameter names; a space with a "
                "set_params hook cannot read values back from a network")
        out = {}
        for p in self._params:
            value = _read(net, _resolve(net, p.name))
            out[p.name] = int(value) if p.integer else float(value)
        return out

    def with_overrides(self, overrides, what="space"):
        """A space with some ranges replaced, parameters added or dropped.

        Parameters
        ----------
        overrides : dict | None
            ``{name: (low, high)}``, ``{name: (low, high, {'log': True})}``
            or ``{name: Parameter}`` replaces the range of a parameter of
            this space (keeping its place) or appends a new one;
            ``{name: None}`` drops one.
        what : str
            What the space is called in error messages.

        Returns
        -------
        ParameterSpace
            A new space with the same ``set_params`` hook; not checked
            against a network (see :meth:`validate`).
        """
        params = {p.name: p for p in self._params}
        if overrides is not None and not isinstance(overrides, dict):
            raise TypeError(f"overrides must be a dict of parameter ranges, got "
                            f"{type(overrides).__name__}")
        for name, spec in dict(overrides or {}).items():
            check_type(name, str, "override name")
            if spec is None:
                if name not in params:
                    raise ValueError(f"override {name!r} must name a parameter of the "
                                     f"{what} to drop, got an unknown name")
                del params[name]
                continue
            params[name] = _override_parameter(name, spec)
        if not params:
            raise ValueError(f"overrides must leave at least one parameter of the {what}, "
                             f"got none left")
        return ParameterSpace(list(params.values()), set_params=self.set_params)

    def subset(self, names):
        """A space with only the parameters ``names`` (same bounds, this order).

        Parameters
        ----------
        names : sequence of str
            Names of parameters of this space.

        Returns
        -------
        ParameterSpace
        """
        return ParameterSpace([self[n] for n in names], set_params=self.set_params)

    # --- (de)serialisation -------------------------------------------------
    def to_dict(self):
        """A JSON-able description (used to identify a study's space)."""
        hook = None
        if self.set_params is not None:
            hook = f"{getattr(self.set_params, '__module__', '?')}." \
                   f"{getattr(self.set_params, '__qualname__', repr(self.set_params))}"
        return {"parameters": [p.to_dict() for p in self._params], "set_params": hook}

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data, set_params=None):
        """Rebuild a space from :meth:`to_dict` output (the hook is not stored)."""
        return cls([Parameter(**p) for p in data["parameters"]], set_params=set_params)


# -- automatic spaces for evoked drives ------------------------------------------
# Limits a proposal must respect whatever the current value (a start point far
# from the published ones still gets a usable range).
TIMING_HALF_WIDTH = 10.0   # ms: mean searched at least +-10 ms around its value
SIGMA_MIN = 0.1            # ms
WEIGHT_FACTOR = 10.0       # weights searched from w / 10 to w * 10 (log scale) ...
WEIGHT_CAP = 1.0           # ... but not above max(1 uS, 2 w)


def _evoked_drive_parameters(net, name, drive, tstop):
    dyn = drive["dynamics"]
    mu, sigma = float(dyn["mu"]), float(dyn["sigma"])
    half = max(3.0 * sigma, TIMING_HALF_WIDTH)
    low, high = max(0.0, mu - half), mu + half
    if tstop is not None:
        high = min(high, float(tstop))
    out = []
    if high > low:
        out.append(Parameter(f"{name}.mu", low, high))
    out.append(Parameter(f"{name}.sigma", min(sigma, max(SIGMA_MIN, sigma / 3.0)),
                         max(3.0 * sigma, sigma + 5.0)))
    for receptor in _RECEPTORS:
        weights = drive.get(f"weights_{receptor}") or {}
        for cell_type, w in weights.items():
            w = float(w)
            if w <= 0.0:
                # an absent synapse stays absent: a zero weight has no scale
                # to search around (add it by hand through overrides)
                continue
            high = min(w * WEIGHT_FACTOR, max(WEIGHT_CAP, 2.0 * w))
            out.append(Parameter(f"{name}.{receptor}.{cell_type}", w / WEIGHT_FACTOR,
                                 high, log=True))
    return out


def evoked_space(net, *, drives=None, tstop=None, overrides=None):
    """A parameter space for a network's evoked drives, from their current values.

    For each evoked drive ``d`` (mean ``mu``, spread ``sigma`` ms, weights
    ``w`` uS):

    * ``d.mu`` in ``mu +- max(3 sigma, 10 ms)``, within ``[0, tstop]``
      (drives whose events all come after ``tstop`` are left out);
    * ``d.sigma`` from ``min(sigma, max(0.1, sigma / 3))`` to
      ``max(3 sigma, sigma + 5)`` ms;
    * ``d.ampa.<cell_type>`` / ``d.nmda.<cell_type>`` for every non-zero
      weight, on a log scale from ``w / 10`` to ``min(10 w, max(1, 2 w))``.

    Zero weights (absent synapses), synaptic delays and ``numspikes`` are
    not fitted unless ``overrides`` adds them.

    Parameters
    ----------
    net : Network
        The network whose drives give the centres of the ranges.
    drives : sequence of str | None
        Names of the evoked drives to include (default: all of them, in the
        order of their mean time).
    tstop : float | None
        End of the fitted window (ms): no mean is searched past it.
    overrides : dict | None
        ``{name: (low, high)}``, ``{name: (low, high, {'log': True})}`` or a
        :class:`Parameter` to replace or add a range, ``{name: None}`` to
        drop a parameter.

    Returns
    -------
    ParameterSpace

    Raises
    ------
    ValueError
        If the network has no evoked drive, a named drive is not an evoked
        drive of the network, or an override does not address the network.
    """
    evoked = {n: d for n, d in net.external_drives.items() if d["type"] == "evoked"}
    if drives is None:
        names = sorted(evoked, key=lambda n: (float(evoked[n]["dynamics"]["mu"]), n))
    else:
        names = list(drives)
        for n in names:
            if n not in evoked:
                known = ", ".join(repr(k) for k in evoked) or "none"
                raise ValueError(f"drives must name evoked drives of the network ({known}), "
                                 f"got {n!r}")
    if not names:
        raise ValueError("net must have at least one evoked drive to build a space "
                         "from, got none")
    if tstop is not None:
        tstop = check_number(tstop, "tstop", low=0.0)
        late = [n for n in names if float(evoked[n]["dynamics"]["mu"])
                - 3.0 * float(evoked[n]["dynamics"]["sigma"]) >= tstop]
        if drives is not None and late:
            raise ValueError(f"drives must act before tstop ({tstop:g} ms), got "
                             f"{', '.join(map(repr, late))}, whose events all come later")
        # a drive whose events all come after the window cannot shape it
        names = [n for n in names if n not in late]
        if not names:
            raise ValueError(f"net must have an evoked drive acting before tstop "
                             f"({tstop:g} ms), got none")
    params = {}
    for n in names:
        for p in _evoked_drive_parameters(net, n, evoked[n], tstop):
            params[p.name] = p
    space = ParameterSpace(list(params.values())).with_overrides(overrides, "automatic space")
    space.validate(net)
    return space


def _override_parameter(name, spec):
    """The Parameter an override ``{name: spec}`` stands for."""
    if isinstance(spec, Parameter):
        return spec if spec.name == name else Parameter(name, spec.low, spec.high,
                                                        spec.log, spec.integer)
    if isinstance(spec, (tuple, list)):
        spec = tuple(spec)
        if len(spec) == 3 and isinstance(spec[2], dict):
            return Parameter(name, spec[0], spec[1], **spec[2])
        if len(spec) == 2:
            return Parameter(name, spec[0], spec[1])
    raise ValueError(f"override {name!r} must be (low, high), (low, high, options) or a "
                     f"Parameter, got {spec!r}")
