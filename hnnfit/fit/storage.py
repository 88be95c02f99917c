"""Study storage: one SQLite file holding every evaluation and its context.

The storage is persistence only. It stores

- metadata: the target (values and hash), the network definition (a blob
  the caller provides), the parameter space, the objective and solver
  settings, the hnnfit and NEURON versions, the machine and library
  versions it was created on (:func:`hnnfit.sysinfo.sys_info`), and what
  the run loop records per stage (solver settings, schedule, seed offset)
  and per run (the budget);
- one row per evaluation (an :class:`Evaluation` when read): parameters,
  value, fitted scale factor, state (:class:`EvalState`), error text,
  seeds, number of trials, timing, the driver's host and process, stage,
  and the solver batch/position the point came from.

It knows nothing about NEURON or solvers.

Guarantees
----------
One driver at a time
    Opening a study for writing takes an exclusive lock (``flock`` on a
    ``<study>.lock`` file beside it) held until :meth:`StudyStorage.close`;
    a second writer is refused with a :class:`~hnnfit.exceptions.StudyError`
    naming the holder. The kernel drops the lock when its process dies, so
    a killed driver never blocks the next one.
Crashes
    Rows are written in transactions, in WAL mode, so a crash leaves every
    row complete, failed, or still marked running; a writer that opens the
    study marks running rows whose driver is gone as abandoned.
Honest liveness
    A row records its driver's host, pid, process start time and boot id;
    a process is alive only if all of them still match, so a reused pid
    (after a reboot, or on a busy node) does not hold a study.
Reading never writes
    ``StudyStorage.load(path, readonly=True)`` opens the file with SQLite's
    ``mode=ro`` (``immutable=1`` when no driver's write-ahead log is beside
    it): no migration, no journal change, no abandoned marking, no lock file.
Errors
    SQLite failures become one-line :class:`~hnnfit.exceptions.StudyError`
    (bad or damaged file) or :class:`~hnnfit.exceptions.StudyIOError`
    (disk full, I/O) messages.

Schema versions
---------------
Version 1 had no process identity on rows and left the schedule and seed
offset of early stages unrecorded; :data:`MIGRATIONS` upgrades a file when
it is opened for writing, in one transaction. A read-only open reads an
older file as it is.
"""
from __future__ import annotations

import enum
import fcntl
import functools
import hashlib
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import quote

from ..exceptions import StudyError, StudyIOError
from ..validation import check_bool, check_int, check_option, check_type

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "EvalState", "Evaluation", "Budget",
           "DriverInfo", "StudyStorage", "canonical_json", "list_studies",
           "scan_studies", "study_record", "lock_path", "LIST_COLUMNS"]

SCHEMA_VERSION = 2
_APP_ID = "hnnfit-study"


class EvalState(str, enum.Enum):
    """State of one evaluation (stored as its lower-case value)."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    ABANDONED = "abandoned"

    def __str__(self):
        return self.value

    @property
    def finished(self):
        """True for a result the solver was told (complete or failed)."""
        return self in (EvalState.COMPLETE, EvalState.FAILED)


STATES = tuple(EvalState)
FINISHED = (EvalState.COMPLETE, EvalState.FAILED)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation as stored (read-only).

    Attributes
    ----------
    id : int
        Row id (order of recording).
    stage : str
        Stage label (``''`` for an unstaged study).
    batch, position : int | None
        Where the point came from in the solver's sequence.
    params : dict
        Parameter values.
    value : float | None
        Objective value (None unless complete).
    scale : float | None
        Fitted scale factor of the dipole.
    state : EvalState
    error : str | None
        Error text of a failed evaluation.
    seeds : list of int | None
        Trial seeds the evaluation used.
    n_trials : int | None
    start_time, end_time : float | None
        Seconds since the epoch (UTC).
    sim_seconds : float | None
        Wall time of the evaluation (s).
    host : str | None
        Host of the driver that recorded it.
    pid : int | None
        Process id of that driver.
    info : dict | None
        What the objective reported besides the value, and the worker.
    """

    id: int
    stage: str
    batch: int | None
    position: int | None
    params: dict
    value: float | None
    scale: float | None
    state: EvalState
    error: str | None
    seeds: list | None
    n_trials: int | None
    start_time: float | None
    end_time: float | None
    sim_seconds: float | None
    host: str | None
    pid: int | None
    info: dict | None = field(default=None)

    # Mapping access with the names of the former dict rows ('status' for
    # state), kept for callers written against them.
    def __getitem__(self, key):
        if key == "status":
            return self.state
        if key in _FIELD_NAMES:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self):
        return [("status" if n == "state" else n) for n in _FIELD_NAMES]

    def to_dict(self):
        """The record as a dict (``state`` as its string value)."""
        out = {n: getattr(self, n) for n in _FIELD_NAMES}
        out["state"] = self.state.value
        return out


_FIELD_NAMES = tuple(f.name for f in fields(Evaluation))


@dataclass(frozen=True)
class Budget:
    """The budget a study was last optimised towards (recorded by the facade).

    Attributes
    ----------
    n_evals : int
        Evaluations (complete plus failed) of the run.
    n_jobs : int | None
        Evaluations run at once.
    stage_evals : dict | None
        Evaluations of named stages of a staged study.
    """

    n_evals: int
    n_jobs: int | None = None
    stage_evals: dict | None = None


@dataclass(frozen=True)
class DriverInfo:
    """Identity of a process that drives (writes) a study.

    ``start`` is the process start time in clock ticks since boot (Linux
    ``/proc/<pid>/stat``), ``boot_id`` the kernel's boot id: with the host
    they tell a live driver from an unrelated process that got its pid.
    """

    host: str
    pid: int
    start: int | None = None
    boot_id: str | None = None
    since: float | None = None

    def alive(self):
        """True if this process still runs (as far as this host can tell)."""
        return _alive(self.host, self.pid, self.start, self.boot_id)

    def describe(self):
        since = ("" if self.since is None else
                 time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since)))
        return f"pid {self.pid} on host {self.host}{since}"


# metadata keys; the budget keys keep their historical names so that older
# files resume with the budget they recorded
_BUDGET_KEY = "cli_n_evals"
_JOBS_KEY = "cli_n_jobs"
_STAGE_EVALS_KEY = "cli_stage_evals"
_JSON_KEYS = ("target", "space", "objective", "solver", "machine")

_COLUMNS = ("id", "stage", "batch", "position", "params", "value", "scale", "status",
            "error", "seeds", "n_trials", "start_time", "end_time", "sim_seconds",
            "host", "pid", "info")

_TABLES = f"""
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
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s.value) for s in STATES)})),
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


def _stage_key(name, stage):
    return name if stage == "" else f"{name}[{stage}]"


# ----------------------------------------------------------------- migrations
def _v1_inferred(conn):
    """Metadata a schema-1 file left to be guessed, as version 2 records it.

    A stage with batch rows but no recorded schedule ran before pipelining
    existed, so in batches; a stage with rows but no recorded seed offset
    ran before resampled stages were shifted, so from offset 0.
    """
    meta = dict(conn.execute("SELECT key, value FROM metadata").fetchall())
    out = {}
    for stage, with_batch in conn.execute(
            "SELECT stage, MAX(batch IS NOT NULL) FROM evaluations GROUP BY stage"):
        if with_batch and _stage_key("schedule", stage) not in meta:
            out[_stage_key("schedule", stage)] = "batches"
        if _stage_key("seed_offset", stage) not in meta:
            out[_stage_key("seed_offset", stage)] = "0"
    return out


def _migrate_1_to_2(conn):
    """Rows get the driver's process identity; early stages' guesses are recorded."""
    conn.execute("ALTER TABLE evaluations ADD COLUMN pid_start INTEGER")
    conn.execute("ALTER TABLE evaluations ADD COLUMN boot_id TEXT")
    conn.executemany("INSERT INTO metadata (key, value) VALUES (?, ?)",
                     list(_v1_inferred(conn).items()))


#: ``MIGRATIONS[v - 1]`` upgrades a file of schema version ``v`` to ``v + 1``.
MIGRATIONS = (_migrate_1_to_2,)
assert len(MIGRATIONS) == SCHEMA_VERSION - 1


def _create_tables(conn):
    for stmt in _TABLES.strip().split(";"):
        if stmt.strip():
            conn.execute(stmt)
    # a new file is built by the same steps an old one is upgraded by, so
    # the two cannot drift apart
    for migrate in MIGRATIONS:
        migrate(conn)
    conn.execute("INSERT INTO hnnfit_schema (app, version) VALUES (?, ?)",
                 (_APP_ID, SCHEMA_VERSION))


# ------------------------------------------------------------------ helpers
def _canonical(obj):
    """Stable JSON text used to compare study identities."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


canonical_json = _canonical


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


def _short(text, n=60):
    text = str(text)
    return text if len(text) <= n else text[:n - 3] + "..."


def _difference(stored, new, most=3):
    """What differs between two stored settings, named by their keys.

    Settings are JSON texts; for two JSON objects (or lists) the entries that
    differ are named with both values, so a long setting shows where it
    differs rather than its common beginning.
    """
    try:
        a, b = json.loads(stored), json.loads(new)
    except (TypeError, ValueError):
        return f"stored: {_short(stored)}, given: {_short(new)}"
    diffs = []

    def walk(x, y, where):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k, "<absent>"), y.get(k, "<absent>"), f"{where}.{k}" if where else k)
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{where}[{i}]")
        elif x != y:
            diffs.append(f"{where or 'value'}: stored {_short(json.dumps(x), 40)}, "
                         f"given {_short(json.dumps(y), 40)}")

    walk(a, b, "")
    more = f"; {len(diffs) - most} more" if len(diffs) > most else ""
    return "; ".join(diffs[:most]) + more if diffs else "stored and given differ"


# ------------------------------------------------------------------ liveness
def _process_start(pid):
    """Start time of process ``pid`` in clock ticks since boot, or None."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses
    try:
        return int(text[text.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


@functools.cache
def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _me():
    """This process's identity (the start time is read once per process)."""
    pid = os.getpid()
    if _ME.get("pid") != pid:
        _ME.update(pid=pid, start=_process_start(pid))
    return DriverInfo(socket.gethostname(), pid, _ME["start"], _boot_id())


_ME = {}


def _pid_exists(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _alive(host, pid, start, boot_id):
    """Whether the process recorded as (host, pid, start, boot_id) still runs.

    Another host's process cannot be checked from here and counts as gone
    (its study's lock, not its rows, keeps a second driver out). Fields an
    older file did not record (start, boot id) are not compared.
    """
    if pid is None or host != socket.gethostname():
        return False
    mine = _boot_id()
    if boot_id is not None and mine is not None and boot_id != mine:
        return False   # the machine rebooted since
    if not _pid_exists(pid):
        return False
    if start is not None:
        now = _process_start(pid)
        if now is not None and now != int(start):
            return False   # the pid now belongs to another process
    return True


def _is_me(host, pid, start, boot_id):
    me = _me()
    return (host == me.host and pid == me.pid
            and (start is None or me.start is None or int(start) == me.start)
            and (boot_id is None or me.boot_id is None or boot_id == me.boot_id))


# ------------------------------------------------------------------ errors
_SQLITE_FULL, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_NOTADB = 13, 10, 11, 26
_SQLITE_CANTOPEN, _SQLITE_READONLY, _SQLITE_BUSY, _SQLITE_LOCKED = 14, 8, 5, 6
_SQLITE_NOMEM, _SQLITE_PERM = 7, 3


def _translate(err, path):
    """A one-line hnnfit exception for an sqlite3 error on study ``path``."""
    code = getattr(err, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = " ".join(str(err).split())
    where = repr(str(path))
    if primary == _SQLITE_FULL:
        return StudyIOError(
            f"cannot write study {where}: the disk or the database is full ({text}); "
            f"free some space and resume it (what it recorded is kept)")
    if primary in (_SQLITE_IOERR, _SQLITE_NOMEM):
        return StudyIOError(
            f"input/output error on study {where} ({text}); check the storage it is on, "
            f"then resume it")
    if primary == _SQLITE_CORRUPT:
        # damage is a failure of the storage, not a wrong file given
        return StudyIOError(
            f"study file {where} is damaged ({text}); use a backup copy or start a new "
            f"study")
    if primary == _SQLITE_NOTADB:
        return StudyError(
            f"study file {where} is not an hnnfit study file ({text}); give a study "
            f"file written by hnnfit")
    if primary in (_SQLITE_CANTOPEN, _SQLITE_PERM):
        return StudyError(
            f"cannot open study file {where} ({text}); give a file in an existing, "
            f"writable folder (or open it read-only to read it)")
    if primary == _SQLITE_READONLY:
        return StudyError(
            f"study file {where} cannot be written ({text}); open it read-only to read "
            f"it, or copy it to writable storage to run it")
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StudyError(
            f"study file {where} is locked by another process ({text}); try again when "
            f"that process is done")
    return StudyError(f"study file {where} cannot be used ({text})")


def _translating(method):
    """Turn sqlite3 errors of a storage method into hnnfit exceptions."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            raise _translate(err, self.path) from err
    return wrapper


# ------------------------------------------------------------------ the lock
def lock_path(path):
    """The lock file a driver of study ``path`` holds (``<study>.lock``)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _read_holder(lock_file):
    """The DriverInfo recorded in a lock file, or None."""
    for _ in range(20):
        try:
            text = Path(lock_file).read_text()
        except OSError:
            return None
        if text.strip():
            try:
                d = json.loads(text)
                return DriverInfo(d["host"], int(d["pid"]), d.get("start"),
                                  d.get("boot_id"), d.get("since"))
            except (ValueError, KeyError, TypeError):
                return None
        time.sleep(0.01)   # the holder writes it just after taking the lock
    return None


class _DriverLock:
    """An exclusive ``flock`` on ``<study>.lock``, shared by one process's opens.

    ``flock`` locks are independent of the POSIX record locks SQLite takes
    on the study file itself (Linux), and of the study file's descriptors,
    so SQLite closing a descriptor never drops it; the kernel drops it when
    the process dies.
    """

    # real path of the lock file -> [lock, number of opens, owning pid]; a
    # forked child finds its parent's entries and must not take them as its own
    _held = {}

    def __init__(self, path):
        self.path = lock_path(path)
        self.fd = None

    @classmethod
    def acquire(cls, study_path, take_over=False):
        key = os.path.realpath(lock_path(study_path))
        held = cls._held.get(key)
        if held is not None and held[2] == os.getpid():
            held[1] += 1
            return held[0]
        lock = cls(study_path)
        lock._take(study_path, take_over)
        cls._held[key] = [lock, 1, os.getpid()]
        lock._key = key
        return lock

    def _take(self, study_path, take_over):
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise StudyError(
                    f"cannot open study {str(study_path)!r} for writing: its lock file "
                    f"{str(self.path)!r} cannot be created ({err.strerror}); run studies "
                    f"in a writable folder, or open this one read-only to read it"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _read_holder(self.path)
                if take_over:
                    # the holder keeps a lock on a file that is no longer the
                    # study's lock file; the next attempt makes a new one
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    take_over = False
                    continue
                who = "another process" if holder is None else holder.describe()
                raise StudyError(
                    f"study {str(study_path)!r} is being run by {who}; only one driver "
                    f"may write a study at a time: wait for it to finish, or open the "
                    f"study read-only to look at it") from None
            # the file may have been replaced between open and lock
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            me = _me()
            text = json.dumps({"host": me.host, "pid": me.pid, "start": me.start,
                               "boot_id": me.boot_id, "since": time.time()})
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, text.encode(), 0)
            except OSError as err:
                os.close(fd)
                raise StudyIOError(
                    f"cannot write the lock file {str(self.path)!r} of study "
                    f"{str(study_path)!r} ({err.strerror}); check the storage it is on"
                ) from None
            self.fd = fd
            return
        raise StudyError(f"cannot lock study {str(study_path)!r}: its lock file "
                         f"{str(self.path)!r} keeps being replaced")

    def release(self):
        held = self._held.get(self._key)
        if held is None or held[0] is not self or held[2] != os.getpid():
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del self._held[self._key]
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


# ------------------------------------------------------------------ storage
class StudyStorage:
    """One fitting study, stored in one SQLite file.

    Create with :meth:`create`, open with :meth:`load`; do not call the
    constructor directly. A storage opened for writing holds the study's
    driver lock until :meth:`close`.
    """

    def __init__(self, path, conn, *, readonly=False, version=SCHEMA_VERSION, lock=None,
                 inferred=None):
        self.path = Path(path)
        self._conn = conn
        self._readonly = readonly
        self._version = version
        self._lock = lock
        # metadata an unmigrated (read-only) old file leaves to be inferred
        self._inferred = dict(inferred or {})

    # --- opening -------------------------------------------------------------
    @staticmethod
    def _connect(path):
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @staticmethod
    def _connect_readonly(path):
        """A connection that cannot write to the study, its log or its folder.

        With a shared-memory index beside the file (a driver runs, or one
        crashed) it is opened read-only too (``readonly_shm``), so a running
        driver's newest rows are read and nothing beside the file changes.
        Without one, the file is read as it is (``immutable``): no log or
        index is created; a log left without its index is not read.
        """
        uri = "file:" + quote(str(Path(path).absolute())) + "?mode=ro"

        def connect(extra):
            conn = sqlite3.connect(uri + extra, uri=True, timeout=30.0,
                                   isolation_level=None)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except BaseException:
                conn.close()
                raise
            return conn

        if Path(str(path) + "-shm").exists():
            try:
                return connect("&readonly_shm=1")
            except sqlite3.OperationalError:
                pass
        return connect("&immutable=1")

    @staticmethod
    def holds_study(path):
        """Whether ``path`` is a file with content: a study, or a file a study
        cannot be created in. An empty file (a creation that was killed) is not.

        Parameters
        ----------
        path : str | pathlib.Path

        Returns
        -------
        bool
        """
        path = Path(path)
        return path.is_file() and not _is_empty_database(path)

    @classmethod
    def create(cls, path, *, target, space, objective=None, solver=None, network=None,
               description=None, exist_ok=False, take_over=False):
        """Create a study file (and hold its driver lock).

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
        take_over : bool
            See :meth:`load`.

        Returns
        -------
        storage : StudyStorage
        """
        check_bool(exist_ok, "exist_ok")
        check_bool(take_over, "take_over")
        path = Path(path)
        target_d = _target_dict(target)
        space_d = _as_dict(space, "space")
        if target_d is None or space_d is None:
            raise ValueError("target and space must be given to create a study")
        blob = _network_blob(network)
        if path.is_dir():
            raise ValueError(f"path must be a study file, got the folder {str(path)!r}")
        if not path.parent.is_dir():
            raise ValueError(f"path must be in an existing folder, got {str(path)!r}")
        # the lock comes first, so two creators of one file cannot both go on
        lock = _DriverLock.acquire(path, take_over)
        try:
            if path.exists() and not _is_empty_database(path):
                if not exist_ok:
                    raise StudyError(
                        f"study file {str(path)!r} already exists; open it with "
                        f"Study.load or pass exist_ok=True to resume it")
                opened = cls.load(path, target=target, space=space, objective=objective,
                                  solver=solver, network=network, take_over=take_over)
                lock.release()   # the opened storage holds the lock itself
                return opened
            try:
                conn = cls._connect(path)
            except sqlite3.Error as err:
                raise _translate(err, path) from err
            try:
                conn.execute("BEGIN IMMEDIATE")
                _create_tables(conn)
                import hnnfit

                from ..sysinfo import package_version, sys_info

                meta = {
                    "target": _canonical(target_d),
                    "target_hash": target_d["hash"],
                    "space": _canonical(space_d),
                    "objective": _canonical(objective),
                    "solver": _canonical(solver),
                    "network": blob,
                    "network_hash": (None if blob is None
                                     else hashlib.sha256(blob).hexdigest()),
                    "description": description,
                    "hnnfit_version": hnnfit.__version__,
                    "neuron_version": package_version("neuron"),
                    "created": time.time(),
                    # where the study began: a fit's path can differ across
                    # CPUs and library versions (hnnfit.sysinfo)
                    "machine": _canonical(sys_info()),
                }
                conn.executemany("INSERT INTO metadata (key, value) VALUES (?, ?)",
                                 list(meta.items()))
                conn.execute("COMMIT")
            except BaseException as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
                if isinstance(err, sqlite3.Error):
                    raise _translate(err, path) from err
                raise
        except BaseException:
            lock.release()
            raise
        return cls(path, conn, lock=lock)

    @classmethod
    def load(cls, path, *, target=None, space=None, objective=None, solver=None,
             network=None, mark_abandoned=True, readonly=False, take_over=False):
        """Open an existing study.

        Parameters
        ----------
        path : str | Path
        target, space, objective, solver, network : optional
            When given, each must equal what the study was created with;
            otherwise :class:`~hnnfit.exceptions.StudyError` is raised.
        mark_abandoned : bool
            Mark 'running' rows whose driver is gone (see :meth:`mark_abandoned`)
            as 'abandoned'. Not with ``readonly``.
        readonly : bool
            Open for reading only: nothing is ever written to the file or
            beside it (no lock, no migration, no abandoned marking), and
            files on read-only storage open. Writing methods raise
            :class:`~hnnfit.exceptions.StudyError`.
        take_over : bool
            Open for writing even though another process seems to drive the
            study: its lock is broken (the lock file is replaced) and every
            evaluation another process left running is marked abandoned, to
            be evaluated again. Only for a driver known to be gone that this
            host cannot see die (e.g. one on a node that failed); two
            drivers writing one study duplicate evaluations.

        Returns
        -------
        storage : StudyStorage
        """
        check_bool(mark_abandoned, "mark_abandoned")
        check_bool(readonly, "readonly")
        check_bool(take_over, "take_over")
        if readonly and take_over:
            raise ValueError("take_over is for opening a study to write it, got "
                             "readonly=True with take_over=True")
        path = Path(check_type(path, (str, os.PathLike), "path"))
        if not path.is_file():
            raise ValueError(f"path must be an existing study file, got {str(path)!r}")
        if readonly:
            return cls._load_readonly(path, target=target, space=space,
                                      objective=objective, solver=solver, network=network)
        lock = _DriverLock.acquire(path, take_over)
        conn = None
        try:
            try:
                conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
                # before touching its journal mode, make sure the file is ours
                version = _check_schema(conn, path)
                conn.close()
                conn = cls._connect(path)
                if version < SCHEMA_VERSION:
                    _migrate(conn, path)
            except sqlite3.Error as err:
                raise _translate(err, path) from err
            study = cls(path, conn, lock=lock)
        except BaseException:
            if conn is not None:
                conn.close()
            lock.release()
            raise
        try:
            study._check_identity(target=target, space=space, objective=objective,
                                  solver=solver, network=network)
            if take_over:
                study.abandon_others()
            elif mark_abandoned:
                study.mark_abandoned()
        except BaseException:
            study.close()
            raise
        return study

    @classmethod
    def open(cls, path, *, readonly=False, **kwargs):
        """Open an existing study (:meth:`load` with ``readonly`` first)."""
        return cls.load(path, readonly=readonly, **kwargs)

    @classmethod
    def _load_readonly(cls, path, **given):
        try:
            conn = cls._connect_readonly(path)
        except sqlite3.Error as err:
            raise _translate(err, path) from err
        try:
            try:
                version = _check_schema(conn, path)
                inferred = _v1_inferred(conn) if version < 2 else None
            except sqlite3.Error as err:
                raise _translate(err, path) from err
            study = cls(path, conn, readonly=True, version=version, inferred=inferred)
        except BaseException:
            conn.close()
            raise
        try:
            study._check_identity(**given)
        except BaseException:
            study.close()
            raise
        return study

    @_translating
    def _check_identity(self, **given):
        meta = self._raw_metadata()
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
                if not self._readonly:
                    # not recorded at creation: record it now
                    self.set_metadata(key, new)
                continue
            if stored != new:
                raise StudyError(
                    f"study {str(self.path)!r} was created with a different {key}; "
                    f"use a new study file, or open this one with the {key} it was "
                    f"created with ({_difference(stored, new)})")

    def close(self):
        """Close the database connection and release the driver lock."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if self._conn is None:
            return f"<StudyStorage {self.path.name} (closed)>"
        c = self.counts()
        mode = " (read-only)" if self._readonly else ""
        return (f"<StudyStorage {self.path.name}{mode}: {c['complete']} complete, "
                f"{c['failed']} failed, {c['running']} running, "
                f"{c['abandoned']} abandoned>")

    @property
    def readonly(self):
        """True if the study was opened for reading only."""
        return self._readonly

    @property
    def schema_version(self):
        """Schema version of the file as opened (older only when read-only)."""
        return self._version

    @property
    def _db(self):
        if self._conn is None:
            raise StudyError(f"study {str(self.path)!r} is closed")
        return self._conn

    @property
    def conn(self):
        """The SQLite connection (transitional: use the public methods)."""
        return self._db

    def _writable(self):
        if self._readonly:
            raise StudyError(f"study {str(self.path)!r} was opened read-only; open it "
                             f"without readonly=True to change it")
        return self._db

    # --- metadata -------------------------------------------------------------
    def _raw_metadata(self):
        raw = dict(self._db.execute("SELECT key, value FROM metadata").fetchall())
        for key, value in self._inferred.items():
            raw.setdefault(key, value)
        return raw

    @_translating
    def get_metadata(self, key, default=None):
        """One raw metadata entry (text or bytes) as stored, or ``default``."""
        row = self._db.execute("SELECT value FROM metadata WHERE key=?",
                               (key,)).fetchone()
        if row is None:
            return self._inferred.get(key, default)
        return row[0]

    @_translating
    def set_metadata(self, key, value):
        """Store one metadata entry (text or bytes) in its own transaction."""
        self.set_metadata_many({key: value})

    @_translating
    def set_metadata_many(self, entries):
        """Store several metadata entries in one transaction."""
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO metadata (key, value) VALUES (?, ?)",
                             list(dict(entries).items()))

    @property
    @_translating
    def metadata(self):
        """Decoded metadata: JSON entries as objects, the network blob as bytes."""
        out = {}
        for key, value in self._raw_metadata().items():
            if key in _JSON_KEYS and value is not None:
                out[key] = json.loads(value)
            else:
                out[key] = value
        return out

    @property
    def target(self):
        """The stored target, as a :class:`~hnnfit.fit.targets.Target`."""
        from .targets import Target

        return Target.from_dict(json.loads(self.get_metadata("target")))

    @property
    def space(self):
        """The stored parameter space (without any set_params hook)."""
        from .space import ParameterSpace

        return ParameterSpace.from_dict(json.loads(self.get_metadata("space")))

    @property
    def space_dict(self):
        """The stored parameter space as the dict it was stored from."""
        return json.loads(self.get_metadata("space"))

    @property
    def objective(self):
        """The stored objective settings (dict or None)."""
        raw = self.get_metadata("objective")
        return None if raw is None else json.loads(raw)

    @property
    def solver_settings(self):
        """The solver settings the study was created with (dict or None)."""
        raw = self.get_metadata("solver")
        return None if raw is None else json.loads(raw)

    @property
    def network_blob(self):
        """The network definition as stored (bytes or None)."""
        return self.get_metadata("network")

    @property
    def param_names(self):
        return [p["name"] for p in self.space_dict["parameters"]]

    @property
    def description(self):
        return self.get_metadata("description")

    @property
    def created(self):
        """Creation time, seconds since the epoch (float or None)."""
        raw = self.get_metadata("created")
        return None if raw is None else float(raw)

    # per-stage records of the run loop
    def stage_solver(self, stage=""):
        """Canonical JSON of the solver settings a stage ran with, or None."""
        raw = self.get_metadata(_stage_key("solver", stage))
        return None if raw in (None, "null") else raw

    def set_stage_solver(self, stage, settings):
        """Record the solver settings (a dict) a stage runs with."""
        self.set_metadata(_stage_key("solver", stage), _canonical(settings))

    def stage_schedule(self, stage=""):
        """How a stage is scheduled (``'batches'``, ``'pipelined'``) or None."""
        raw = self.get_metadata(_stage_key("schedule", stage))
        return raw if raw in ("batches", "pipelined") else None

    def set_stage_schedule(self, stage, schedule):
        check_option(schedule, ("batches", "pipelined"), "schedule")
        self.set_metadata(_stage_key("schedule", stage), schedule)

    def stage_seed_offset(self, stage=""):
        """Seed spans a resampled stage skipped before its first batch, or None."""
        raw = self.get_metadata(_stage_key("seed_offset", stage))
        return None if raw is None else int(raw)

    def set_stage_seed_offset(self, stage, offset):
        offset = check_int(offset, "offset", low=0)
        self.set_metadata(_stage_key("seed_offset", stage), str(offset))

    # the budget of the last run
    @property
    def budget(self):
        """The :class:`Budget` the study was last optimised towards, or None."""
        raw = self._raw_metadata()
        if raw.get(_BUDGET_KEY) is None:
            return None
        jobs = raw.get(_JOBS_KEY)
        stage_evals = raw.get(_STAGE_EVALS_KEY)
        return Budget(int(raw[_BUDGET_KEY]), None if jobs is None else int(jobs),
                      None if stage_evals is None else json.loads(stage_evals))

    def record_budget(self, n_evals, n_jobs, stage_evals=None):
        """Record the budget, jobs (and stage budgets) of a run, in one transaction."""
        n_evals = check_int(n_evals, "n_evals", low=1)
        n_jobs = check_int(n_jobs, "n_jobs", low=1)
        entries = {_BUDGET_KEY: str(n_evals), _JOBS_KEY: str(n_jobs)}
        if stage_evals is not None:
            entries[_STAGE_EVALS_KEY] = json.dumps(stage_evals)
        self.set_metadata_many(entries)

    # --- rows -------------------------------------------------------------
    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            elif self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            return False

    def _transaction(self):
        return StudyStorage._Tx(self._writable())

    @_translating
    def add_running(self, points, *, stage="", batch=None, positions=None, seeds=None,
                    n_trials=None):
        """Record points about to be evaluated as running; return their row ids.

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
        me, now = _me(), time.time()
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
                    "seeds, n_trials, start_time, host, pid, pid_start, boot_id) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (stage, batch, pos if batch is not None else None, _canonical(params),
                     EvalState.RUNNING.value, _canonical(seeds), n_trials, now, me.host,
                     me.pid, me.start, me.boot_id))
                ids.append(cur.lastrowid)
        return ids

    @_translating
    def finish(self, row_id, *, state=None, value=None, scale=None, error=None,
               sim_seconds=None, n_trials=None, info=None, end_time=None, status=None):
        """Close a running row as complete or failed (one transaction).

        ``state`` is :attr:`EvalState.COMPLETE` or :attr:`EvalState.FAILED`
        (``status`` is its former name).
        """
        name = "state"
        if state is None:
            state, name = status, "status"
        state = _as_state(state, name, (EvalState.COMPLETE, EvalState.FAILED))
        if state is EvalState.COMPLETE and value is None:
            raise ValueError("value must be given for a complete evaluation, got None")
        with self._transaction() as conn:
            sets = ("status=?, value=?, scale=?, error=?, sim_seconds=?, info=?, "
                    "end_time=?, n_trials=COALESCE(?, n_trials)")
            conn.execute(f"UPDATE evaluations SET {sets} WHERE id=?",
                         (state.value, value, scale, error, sim_seconds,
                          None if info is None else _canonical(info),
                          time.time() if end_time is None else end_time, n_trials,
                          row_id))

    @_translating
    def abandon(self, row_ids):
        """Mark the given running rows as abandoned."""
        if not row_ids:
            return
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE evaluations SET status=?, end_time=? WHERE id=? AND status=?",
                [(EvalState.ABANDONED.value, time.time(), i, EvalState.RUNNING.value)
                 for i in row_ids])

    def _running_drivers(self):
        """(id, host, pid, pid_start, boot_id) of every running row."""
        ident = "pid_start, boot_id" if self._version >= 2 else "NULL, NULL"
        return self._db.execute(
            f"SELECT id, host, pid, {ident} FROM evaluations WHERE status=?",
            (EvalState.RUNNING.value,)).fetchall()

    @_translating
    def mark_abandoned(self):
        """Mark running rows whose driver process is gone as abandoned.

        A driver is gone when it ran on another host, on this host before
        a reboot, or in a process that no longer exists (a process that got
        its pid since does not count). Returns the number marked.
        """
        gone = [r[0] for r in self._running_drivers()
                if not _is_me(*r[1:]) and not _alive(*r[1:])]
        self.abandon(gone)
        return len(gone)

    @_translating
    def abandon_others(self):
        """Mark every running row of another process as abandoned (a take-over)."""
        others = [r[0] for r in self._running_drivers() if not _is_me(*r[1:])]
        self.abandon(others)
        return len(others)

    @_translating
    def running_elsewhere(self):
        """Ids of running rows owned by another live process on this host."""
        return [r[0] for r in self._running_drivers()
                if not _is_me(*r[1:]) and _alive(*r[1:])]

    @_translating
    def running_driver(self):
        """The live driver of the study (:class:`DriverInfo`), or None.

        Read from the lock file of a driver that holds it, else from the
        running rows of a live process; reads, never writes.
        """
        holder = _read_holder(lock_path(self.path)) if lock_path(self.path).exists() \
            else None
        if holder is not None and (holder.alive() or _is_me(holder.host, holder.pid,
                                                             holder.start, holder.boot_id)):
            return holder
        for _, host, pid, start, boot in self._running_drivers():
            if _alive(host, pid, start, boot) and not _is_me(host, pid, start, boot):
                return DriverInfo(host, pid, start, boot)
        return None

    def _select(self, where="", args=(), tail=" ORDER BY id"):
        sql = f"SELECT {', '.join(_COLUMNS)} FROM evaluations{where}{tail}"
        return [_evaluation(row) for row in self._db.execute(sql, args).fetchall()]

    @_translating
    def rows(self, stage=None, status=None, *, state=None):
        """Evaluations (:class:`Evaluation`), by id.

        Parameters
        ----------
        stage : str | None
            Only this stage's.
        state : EvalState | str | sequence | None
            Only evaluations in this state (or these states); ``status`` is
            its former name.
        """
        if state is None:
            state = status
        cond, args = [], []
        if stage is not None:
            cond.append("stage=?")
            args.append(stage)
        if state is not None:
            states = ((state,) if isinstance(state, str) else tuple(state))
            states = [_as_state(s, "state").value for s in states]
            cond.append(f"status IN ({', '.join('?' * len(states))})")
            args.extend(states)
        where = (" WHERE " + " AND ".join(cond)) if cond else ""
        return self._select(where, args)

    evaluations = rows

    @_translating
    def seeds_used(self):
        """Sorted seeds of all evaluations (without decoding their other columns)."""
        used = set()
        for (text,) in self._db.execute(
                "SELECT DISTINCT seeds FROM evaluations WHERE seeds IS NOT NULL"):
            used.update(json.loads(text) or ())
        return sorted(used)

    @_translating
    def counts(self, stage=None):
        """Number of rows by state (a dict with every :class:`EvalState` as key).

        The keys are str-valued, so ``counts()['complete']`` works too.
        """
        sql = "SELECT status, COUNT(*) FROM evaluations"
        args = ()
        if stage is not None:
            sql += " WHERE stage=?"
            args = (stage,)
        found = dict(self._db.execute(sql + " GROUP BY status", args).fetchall())
        return {s: found.get(s.value, 0) for s in STATES}

    @_translating
    def newest_stage(self):
        """Stage of the most recently recorded evaluation, or None."""
        row = self._db.execute(
            "SELECT stage FROM evaluations ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else row[0]

    @_translating
    def last_end_time(self):
        """End of the newest finished evaluation (s since the epoch), or None."""
        return self._db.execute(
            "SELECT MAX(end_time) FROM evaluations WHERE status IN (?, ?)",
            tuple(s.value for s in FINISHED)).fetchone()[0]

    @property
    def n_complete(self):
        return self.counts()[EvalState.COMPLETE]

    @property
    def n_failed(self):
        return self.counts()[EvalState.FAILED]

    @property
    def trials(self):
        """All evaluations as a pandas DataFrame, one column per parameter."""
        import pandas as pd

        rows = self.rows()
        names = self.param_names
        records = []
        for r in rows:
            rec = {k: r[k] for k in _COLUMNS if k not in ("params", "info")}
            rec["status"] = r.state.value
            for n in names:
                rec[n] = r.params.get(n)
            info = r.info or {}
            rec["worker_host"] = info.get("worker_host")
            rec["worker_pid"] = info.get("worker_pid")
            rec["info"] = r.info
            records.append(rec)
        cols = ([c for c in _COLUMNS if c not in ("params", "info")] + names
                + ["worker_host", "worker_pid", "info"])
        df = pd.DataFrame.from_records(records, columns=cols)
        for c in ("start_time", "end_time"):
            df[c.replace("_time", "")] = pd.to_datetime(df[c], unit="s", utc=True)
        return df

    @_translating
    def best(self, stage=None):
        """The complete evaluation with the lowest value (:class:`Evaluation`), or None."""
        where, args = " WHERE status=?", [EvalState.COMPLETE.value]
        if stage is not None:
            where += " AND stage=?"
            args.append(stage)
        found = self._select(where, args, " ORDER BY value ASC, id ASC LIMIT 1")
        return found[0] if found else None

    @property
    def best_params(self):
        """Parameter values of the best complete evaluation (dict)."""
        best = self.best()
        if best is None:
            raise StudyError(f"study {str(self.path)!r} has no complete evaluation yet")
        return best.params

    @property
    def best_value(self):
        """Lowest objective value among complete evaluations."""
        best = self.best()
        if best is None:
            raise StudyError(f"study {str(self.path)!r} has no complete evaluation yet")
        return best.value

    @_translating
    def integrity_check(self):
        """SQLite's integrity check: ``'ok'`` or the problems it found (text)."""
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(r[0] for r in rows)


def _as_state(value, name, allowed=STATES):
    try:
        state = EvalState(value)
    except ValueError:
        state = None
    if state not in allowed:
        raise ValueError(f"{name} must be one of "
                         f"{', '.join(repr(s.value) for s in allowed)}, got {value!r}")
    return state


def _evaluation(row):
    rec = dict(zip(_COLUMNS, row))
    for key in ("params", "seeds", "info"):
        if rec[key] is not None:
            rec[key] = json.loads(rec[key])
    rec["state"] = EvalState(rec.pop("status"))
    return Evaluation(**rec)


def _check_schema(conn, path):
    """The schema version of an hnnfit study file; StudyError for any other file."""
    try:
        row = conn.execute("SELECT app, version FROM hnnfit_schema").fetchone()
    except sqlite3.OperationalError as err:
        if "no such table" not in str(err):
            raise   # translated by the caller
        raise StudyError(f"{str(path)!r} is not an hnnfit study file (it has no "
                         f"hnnfit_schema table)") from None
    if row is None or row[0] != _APP_ID:
        raise StudyError(f"{str(path)!r} is not an hnnfit study file")
    if row[1] > SCHEMA_VERSION:
        raise StudyError(
            f"study file {str(path)!r} has schema version {row[1]}, newer than this "
            f"hnnfit understands ({SCHEMA_VERSION}); upgrade hnnfit to open it")
    return int(row[1])


def _migrate(conn, path):
    """Upgrade an open file to :data:`SCHEMA_VERSION` in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # read again inside the transaction: another process may have done it
        version = _check_schema(conn, path)
        start = version
        while version < SCHEMA_VERSION:
            MIGRATIONS[version - 1](conn)
            version += 1
        if version != start:
            import hnnfit

            conn.execute("UPDATE hnnfit_schema SET version=?", (version,))
            history = conn.execute("SELECT value FROM metadata WHERE key='migrations'"
                                   ).fetchone()
            history = [] if history is None else json.loads(history[0])
            history.append({"from": start, "to": version, "time": time.time(),
                            "hnnfit_version": hnnfit.__version__})
            conn.execute("INSERT OR REPLACE INTO metadata (key, value) VALUES (?, ?)",
                         ("migrations", json.dumps(history)))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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


# ------------------------------------------------------------------ listing
LIST_COLUMNS = ("study", "state", "stage", "evaluations", "budget", "complete", "failed",
                "abandoned", "running", "stale", "best_value", "created", "last",
                "description", "solver", "pid", "path", "error")

#: Stage label of the final stage of a staged study.
FINAL_STAGE = "final"


def scan_studies(folder):
    """The records of :func:`list_studies` as dicts (times in seconds since
    the epoch, missing values None), one per ``*.sqlite`` file, by name."""
    folder = Path(check_type(folder, (str, os.PathLike), "folder"))
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing folder, got {str(folder)!r}")
    records = []
    for path in sorted(folder.glob("*.sqlite")):
        if not path.is_file():
            continue
        rec = dict.fromkeys(LIST_COLUMNS)
        rec.update(study=path.name, path=str(path))
        try:
            with StudyStorage.load(path, readonly=True) as storage:
                rec.update(study_record(storage))
        except (StudyError, ValueError, OSError, sqlite3.Error) as err:
            rec.update(state="not a study", error=" ".join(str(err).split()))
        records.append(rec)
    return records


def study_record(storage):
    """The fields of :func:`list_studies` for one open storage (never unpickles)."""
    raw_stages = storage.get_metadata("stages")
    # an unstaged study created by the facade stores the JSON null
    staged = raw_stages is not None and json.loads(raw_stages) is not None
    counts = storage.counts()
    live = storage.running_elsewhere()
    driver = storage.running_driver()
    newest = storage.newest_stage()
    best = storage.best(FINAL_STAGE if staged else None)
    budget = storage.budget
    budget = None if budget is None else budget.n_evals
    done = counts[EvalState.COMPLETE] + counts[EvalState.FAILED]
    stale = counts[EvalState.RUNNING] - len(live)
    if driver is not None or live:
        state = "running"
    elif stale:
        state = "interrupted"
    elif newest is None:
        state = "empty"
    elif budget is None:
        state = "idle"
    else:
        state = "done" if done >= budget else "stopped"
    solver = storage.solver_settings or {}
    return {
        "state": state,
        "stage": newest if staged else None,
        "evaluations": done, "budget": budget,
        "complete": counts[EvalState.COMPLETE], "failed": counts[EvalState.FAILED],
        "abandoned": counts[EvalState.ABANDONED], "running": len(live), "stale": stale,
        "best_value": None if best is None else float(best.value),
        "created": storage.created,
        "last": storage.last_end_time(),
        "description": storage.description,
        "solver": solver.get("name") if isinstance(solver, dict) else None,
        "pid": None if driver is None else driver.pid,
    }


def list_studies(folder="studies"):
    """Summarise the study files of a folder without changing any of them.

    Each ``*.sqlite`` file directly in ``folder`` is opened read-only (no
    network is rebuilt, nothing is written, so a study being run by another
    process is safe to list). Files that are not hnnfit studies, or are
    damaged, are listed too, with the reason in ``error``; the others are
    listed whatever those hold.

    Parameters
    ----------
    folder : str | pathlib.Path
        The folder to look in (not recursively); default ``'studies'``.

    Returns
    -------
    pandas.DataFrame
        One row per file, by name, with columns

        - ``study`` (file name), ``path``;
        - ``state``: ``'running'`` (a live process drives it),
          ``'interrupted'`` (its driver died with evaluations in flight:
          resume redoes them), ``'stopped'`` (fewer evaluations than the
          budget it was last optimised towards), ``'done'`` (the budget is
          reached), ``'idle'`` (evaluations but no recorded budget),
          ``'empty'`` (no evaluation yet) or ``'not a study'``;
        - ``stage``: the stage of the newest evaluation of a staged study;
        - ``evaluations`` (complete plus failed), ``budget`` (the
          ``n_evals`` the study was last optimised towards, or None),
          and the counts ``complete``, ``failed``, ``abandoned``,
          ``running`` (in flight in a live process) and ``stale`` (left
          running by a process that is gone);
        - ``best_value``: the lowest value, of the final stage for a staged
          study (None before it starts);
        - ``created``, ``last`` (the newest evaluation's end): UTC
          timestamps; ``description``, ``solver`` (name), ``pid`` (of the
          live driver, else None) and ``error``.
    """
    import pandas as pd

    df = pd.DataFrame.from_records(scan_studies(folder), columns=list(LIST_COLUMNS))
    for col in ("created", "last"):
        df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    # counts stay integers next to the missing ones of files that are not studies
    for col in ("evaluations", "budget", "complete", "failed", "abandoned", "running",
                "stale", "pid"):
        df[col] = df[col].astype("Int64")
    return df
