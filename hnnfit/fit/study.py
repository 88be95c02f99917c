"""A fitting study: one SQLite file holding every evaluation and its context.

The study is persistence only. It stores

- metadata: the target (values and hash), the network definition (a blob
  the caller provides), the parameter space, the objective and solver
  settings, the hnnfit and NEURON versions, and the machine and library
  versions it was created on (:func:`hnnfit.sysinfo.sys_info`);
- one row per evaluation: parameters, value, fitted scale factor, status
  (``'running'``, ``'complete'``, ``'failed'``, ``'abandoned'``), error
  text, seeds, number of trials, timing, host/pid of the driver, stage,
  and the solver batch/position the point came from.

It knows nothing about NEURON or solvers. The file is written by one
process (the driver) in transactions, in WAL mode, so a crash leaves every
row either complete, failed, or still marked running; :meth:`Study.load`
turns running rows whose process is gone into ``'abandoned'``.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from ..exceptions import StudyError
from ..validation import check_bool, check_option

SCHEMA_VERSION = 1
_APP_ID = "hnnfit-study"
STATUSES = ("running", "complete", "failed", "abandoned")

_SCHEMA = f"""
CREATE TABLE hnnfit_schema (
    app TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE metadata (
    key TEXT PRIMARY KEY,
    value BLOB
);
CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stage TEXT NOT NULL DEFAULT '',
    batch INTEGER,
    position INTEGER,
    params TEXT NOT NULL,
    value REAL,
    scale REAL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    error TEXT,
    seeds TEXT,
    n_trials INTEGER,
    start_time REAL,
    end_time REAL,
    sim_seconds REAL,
    host TEXT,
    pid INTEGER,
    info TEXT
);
CREATE INDEX evaluations_stage_batch ON evaluations (stage, batch, position);
"""

_COLUMNS = ("id", "stage", "batch", "position", "params", "value", "scale", "status",
            "error", "seeds", "n_trials", "start_time", "end_time", "sim_seconds",
            "host", "pid", "info")


def _canonical(obj):
    """Stable JSON text used to compare study identities."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"study metadata must be JSON-able, got {type(obj).__name__}")


def _as_dict(obj, what):
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"{what} must be a dict or have a to_dict() method, got "
                    f"{type(obj).__name__}")


def _target_dict(target):
    if target is None:
        return None
    if hasattr(target, "to_dict"):
        return target.to_dict()
    if isinstance(target, dict) and "hash" in target:
        return target
    raise TypeError(f"target must be a Target, got {type(target).__name__}")


def _network_blob(network):
    if network is None:
        return None
    if isinstance(network, str):
        return network.encode()
    if isinstance(network, (bytes, bytearray, memoryview)):
        return bytes(network)
    raise TypeError(f"network must be bytes (e.g. a pickle) or a JSON string, got "
                    f"{type(network).__name__}")


def _pid_alive(pid):
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Study:
    """One fitting study, stored in one SQLite file.

    Create with :meth:`create`, open with :meth:`load`; do not call the
    constructor directly.
    """

    def __init__(self, path, conn):
        self.path = Path(path)
        self._conn = conn

    # --- opening -------------------------------------------------------------
    @staticmethod
    def _connect(path, check=False):
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        if check:
            # before touching its journal mode, make sure the file is ours
            try:
                Study._check_schema(conn, path)
            except BaseException:
                conn.close()
                raise
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def create(cls, path, *, target, space, objective=None, solver=None, network=None,
               description=None, exist_ok=False):
        """Create a study file.

        Parameters
        ----------
        path : str | Path
            The SQLite file to create.
        target : Target
            The waveform being fitted (its values and hash are stored).
        space : ParameterSpace | dict
            The parameter space.
        objective : dict | None
            JSON-able objective settings (smoothing, scaling, window, ...).
        solver : dict | None
            JSON-able solver settings (see ``solver.settings()``).
        network : bytes | str | None
            The network definition (pickle or JSON) supplied by the caller.
        description : str | None
            Free text.
        exist_ok : bool
            If the file already holds a study, open it instead (after
            checking that target, space, objective, solver and network
            match) rather than raising.

        Returns
        -------
        study : Study
        """
        check_bool(exist_ok, "exist_ok")
        path = Path(path)
        target_d = _target_dict(target)
        space_d = _as_dict(space, "space")
        if target_d is None or space_d is None:
            raise ValueError("target and space must be given to create a study")
        blob = _network_blob(network)
        if path.exists() and not _is_empty_database(path):
            if not exist_ok:
                raise StudyError(
                    f"study file {str(path)!r} already exists; open it with Study.load or "
                    f"pass exist_ok=True to resume it")
            return cls.load(path, target=target, space=space, objective=objective,
                            solver=solver, network=network)
        if not path.parent.is_dir():
            raise ValueError(f"path must be in an existing folder, got {str(path)!r}")
        conn = cls._connect(path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT INTO hnnfit_schema (app, version) VALUES (?, ?)",
                         (_APP_ID, SCHEMA_VERSION))
            import hnnfit

            from ..sysinfo import package_version, sys_info

            meta = {
                "target": _canonical(target_d),
                "target_hash": target_d["hash"],
                "space": _canonical(space_d),
                "objective": _canonical(objective),
                "solver": _canonical(solver),
                "network": blob,
                "network_hash": None if blob is None else hashlib.sha256(blob).hexdigest(),
                "description": description,
                "hnnfit_version": hnnfit.__version__,
                "neuron_version": package_version("neuron"),
                "created": time.time(),
                # where the study began: a fit's path can differ across CPUs
                # and library versions (hnnfit.sysinfo)
                "machine": _canonical(sys_info()),
            }
            conn.executemany("INSERT INTO metadata (key, value) VALUES (?, ?)",
                             list(meta.items()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        return cls(path, conn)

    @classmethod
    def load(cls, path, *, target=None, space=None, objective=None, solver=None,
             network=None, mark_abandoned=True):
        """Open an existing study.

        Parameters
        ----------
        path : str | Path
        target, space, objective, solver, network : optional
            When given, each must equal what the study was created with;
            otherwise :class:`~hnnfit.exceptions.StudyError` is raised.
        mark_abandoned : bool
            Mark 'running' rows whose process is gone (dead pid on this host,
            or another host) as 'abandoned'.

        Returns
        -------
        study : Study
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path must be an existing study file, got {str(path)!r}")
        conn = cls._connect(path, check=True)
        study = cls(path, conn)
        try:
            study._check_identity(target=target, space=space, objective=objective,
                                  solver=solver, network=network)
            if mark_abandoned:
                study.mark_abandoned()
        except BaseException:
            study.close()
            raise
        return study

    @staticmethod
    def _check_schema(conn, path):
        try:
            row = conn.execute("SELECT app, version FROM hnnfit_schema").fetchone()
        except sqlite3.DatabaseError as err:
            raise StudyError(
                f"{str(path)!r} is not an hnnfit study file ({err})") from None
        if row is None or row[0] != _APP_ID:
            raise StudyError(f"{str(path)!r} is not an hnnfit study file")
        if row[1] > SCHEMA_VERSION:
            raise StudyError(
                f"study file {str(path)!r} has schema version {row[1]}, newer than this "
                f"hnnfit understands ({SCHEMA_VERSION}); upgrade hnnfit to open it")

    def _check_identity(self, **given):
        meta = self._meta_raw()
        checks = {
            "target": lambda v: (meta.get("target_hash"), _target_dict(v)["hash"]),
            "space": lambda v: (meta.get("space"), _canonical(_as_dict(v, "space"))),
            "objective": lambda v: (meta.get("objective"), _canonical(v)),
            "solver": lambda v: (meta.get("solver"), _canonical(v)),
            "network": lambda v: (meta.get("network_hash"),
                                  hashlib.sha256(_network_blob(v)).hexdigest()),
        }
        for key, value in given.items():
            if value is None:
                continue
            stored, new = checks[key](value)
            if key in ("objective", "solver") and stored == "null":
                # not recorded at creation: record it now
                self.set_metadata(key, new)
                continue
            if stored != new:
                raise StudyError(
                    f"study {str(self.path)!r} was created with a different {key}; "
                    f"use a new study file, or open this one with the {key} it was "
                    f"created with (stored: {_short(stored)}, given: {_short(new)})")

    def close(self):
        """Close the database connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self.counts()
        return (f"<Study {self.path.name}: {c['complete']} complete, {c['failed']} failed, "
                f"{c['running']} running, {c['abandoned']} abandoned>")

    @property
    def conn(self):
        if self._conn is None:
            raise StudyError(f"study {str(self.path)!r} is closed")
        return self._conn

    # --- metadata -------------------------------------------------------------
    def _meta_raw(self):
        return dict(self.conn.execute("SELECT key, value FROM metadata").fetchall())

    def set_metadata(self, key, value):
        """Store one metadata entry (text or bytes) in its own transaction."""
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO metadata (key, value) VALUES (?, ?)",
                         (key, value))

    @property
    def metadata(self):
        """Decoded metadata: JSON entries as objects, the network blob as bytes."""
        raw = self._meta_raw()
        out = {}
        for key, value in raw.items():
            if key in ("target", "space", "objective", "solver", "machine") \
                    and value is not None:
                out[key] = json.loads(value)
            else:
                out[key] = value
        return out

    @property
    def target(self):
        """The stored target, as a :class:`~hnnfit.fit.targets.Target`."""
        from .targets import Target

        return Target.from_dict(self.metadata["target"])

    @property
    def space(self):
        """The stored parameter space (without any set_params hook)."""
        from .space import ParameterSpace

        return ParameterSpace.from_dict(self.metadata["space"])

    @property
    def objective(self):
        return self.metadata.get("objective")

    @property
    def solver_settings(self):
        return self.metadata.get("solver")

    @property
    def network_blob(self):
        return self._meta_raw().get("network")

    @property
    def param_names(self):
        return [p["name"] for p in self.metadata["space"]["parameters"]]

    # --- rows -------------------------------------------------------------
    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")
            return False

    def _transaction(self):
        return Study._Tx(self.conn)

    def add_running(self, points, *, stage="", batch=None, positions=None, seeds=None,
                    n_trials=None):
        """Record points about to be evaluated as 'running'; return their row ids.

        All rows are written in one transaction, so a batch is recorded whole
        or not at all.

        Parameters
        ----------
        points : list of dict
            Parameter values.
        stage : str
            Stage label.
        batch : int | None
            Solver batch the points came from.
        positions : list of int | None
            Position of each point in its batch (default: 0, 1, ...).
        seeds : list of int | None
            Seeds every evaluation uses.
        n_trials : int | None
        """
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        if positions is None:
            positions = list(range(len(points)))
        if len(positions) != len(points):
            raise ValueError(f"positions must have one entry per point ({len(points)}), "
                             f"got {len(positions)}")
        ids = []
        with self._transaction() as conn:
            for pos, params in zip(positions, points):
                cur = conn.execute(
                    "INSERT INTO evaluations (stage, batch, position, params, status, "
                    "seeds, n_trials, start_time, host, pid) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (stage, batch, pos if batch is not None else None, _canonical(params),
                     "running", _canonical(seeds), n_trials, now, host, pid))
                ids.append(cur.lastrowid)
        return ids

    def finish(self, row_id, *, status, value=None, scale=None, error=None,
               sim_seconds=None, n_trials=None, info=None, end_time=None):
        """Close a 'running' row as 'complete' or 'failed' (one transaction)."""
        check_option(status, ("complete", "failed"), "status")
        if status == "complete" and value is None:
            raise ValueError("value must be given for a complete evaluation, got None")
        with self._transaction() as conn:
            sets = ("status=?, value=?, scale=?, error=?, sim_seconds=?, info=?, "
                    "end_time=?, n_trials=COALESCE(?, n_trials)")
            conn.execute(f"UPDATE evaluations SET {sets} WHERE id=?",
                         (status, value, scale, error, sim_seconds,
                          None if info is None else _canonical(info),
                          time.time() if end_time is None else end_time, n_trials,
                          row_id))

    def abandon(self, row_ids):
        """Mark the given 'running' rows as 'abandoned'."""
        if not row_ids:
            return
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE evaluations SET status='abandoned', end_time=? "
                "WHERE id=? AND status='running'",
                [(time.time(), i) for i in row_ids])

    def mark_abandoned(self):
        """Mark 'running' rows whose driver process is gone as 'abandoned'.

        A row is abandoned when it was started on another host, or on this
        host by a process that no longer exists. Returns the number marked.
        """
        host = socket.gethostname()
        rows = self.conn.execute(
            "SELECT id, host, pid FROM evaluations WHERE status='running'").fetchall()
        gone = [r[0] for r in rows
                if r[1] != host or (r[2] != os.getpid() and not _pid_alive(r[2]))]
        self.abandon(gone)
        return len(gone)

    def running_elsewhere(self):
        """Ids of 'running' rows owned by another live process on this host."""
        host, me = socket.gethostname(), os.getpid()
        rows = self.conn.execute(
            "SELECT id, host, pid FROM evaluations WHERE status='running'").fetchall()
        return [r[0] for r in rows if r[1] == host and r[2] != me and _pid_alive(r[2])]

    def rows(self, stage=None, status=None):
        """Evaluation rows as a list of dicts (params, seeds, info decoded), by id."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM evaluations"
        cond, args = [], []
        if stage is not None:
            cond.append("stage=?")
            args.append(stage)
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            cond.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if cond:
            sql += " WHERE " + " AND ".join(cond)
        sql += " ORDER BY id"
        out = []
        for row in self.conn.execute(sql, args).fetchall():
            rec = dict(zip(_COLUMNS, row))
            for key in ("params", "seeds", "info"):
                if rec[key] is not None:
                    rec[key] = json.loads(rec[key])
            out.append(rec)
        return out

    def seeds_used(self):
        """Sorted seeds of all evaluations (without decoding their other columns)."""
        used = set()
        for (text,) in self.conn.execute(
                "SELECT DISTINCT seeds FROM evaluations WHERE seeds IS NOT NULL"):
            used.update(json.loads(text))
        return sorted(used)

    def counts(self, stage=None):
        """Number of rows by status (dict with every status as a key)."""
        sql = "SELECT status, COUNT(*) FROM evaluations"
        args = ()
        if stage is not None:
            sql += " WHERE stage=?"
            args = (stage,)
        found = dict(self.conn.execute(sql + " GROUP BY status", args).fetchall())
        return {s: found.get(s, 0) for s in STATUSES}

    @property
    def n_complete(self):
        return self.counts()["complete"]

    @property
    def n_failed(self):
        return self.counts()["failed"]

    @property
    def trials(self):
        """All evaluations as a pandas DataFrame, one column per parameter."""
        import pandas as pd

        rows = self.rows()
        names = self.param_names
        records = []
        for r in rows:
            rec = {k: r[k] for k in _COLUMNS if k not in ("params", "info")}
            for n in names:
                rec[n] = r["params"].get(n)
            info = r["info"] or {}
            rec["worker_host"] = info.get("worker_host")
            rec["worker_pid"] = info.get("worker_pid")
            rec["info"] = r["info"]
            records.append(rec)
        cols = ([c for c in _COLUMNS if c not in ("params", "info")] + names
                + ["worker_host", "worker_pid", "info"])
        df = pd.DataFrame.from_records(records, columns=cols)
        for c in ("start_time", "end_time"):
            df[c.replace("_time", "")] = pd.to_datetime(df[c], unit="s", utc=True)
        return df

    def best(self, stage=None):
        """The complete row with the lowest value (dict), or None."""
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM evaluations WHERE status='complete'")
        args = []
        if stage is not None:
            sql += " AND stage=?"
            args.append(stage)
        row = self.conn.execute(sql + " ORDER BY value ASC, id ASC LIMIT 1", args).fetchone()
        if row is None:
            return None
        rec = dict(zip(_COLUMNS, row))
        for key in ("params", "seeds", "info"):
            if rec[key] is not None:
                rec[key] = json.loads(rec[key])
        return rec

    @property
    def best_params(self):
        """Parameter values of the best complete evaluation (dict)."""
        best = self.best()
        if best is None:
            raise StudyError(f"study {str(self.path)!r} has no complete evaluation yet")
        return best["params"]

    @property
    def best_value(self):
        """Lowest objective value among complete evaluations."""
        best = self.best()
        if best is None:
            raise StudyError(f"study {str(self.path)!r} has no complete evaluation yet")
        return best["value"]


def _is_empty_database(path):
    """True for an empty file or an SQLite file without any table.

    A driver killed while creating its study leaves such a file behind; it
    is safe to create the study in it.
    """
    if path.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(str(path))
        try:
            n = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return n == 0


def _short(text, n=60):
    text = str(text)
    return text if len(text) <= n else text[:n - 3] + "..."
