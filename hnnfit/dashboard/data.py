"""What the dashboard shows, read from study files without writing to them.

Every function here opens a study read-only
(``StudyStorage.load(path, readonly=True)``), reads what it needs and
closes it again, so a study being written by a running fit, deleted, or
damaged never holds up the server: a file that cannot be read gives a
:class:`~hnnfit.exceptions.StudyError` (or an ``OSError``) naming it.

Nothing here needs the web library; the pages (:mod:`hnnfit.dashboard`)
turn these plain dicts and lists into plots and tables.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ..exceptions import StudyError
from ..fit.storage import EvalState, StudyStorage, scan_studies, study_record

__all__ = ["study_path", "fingerprint", "read_folder", "read_study", "shown_best",
           "full_point", "stored_objective", "simulate_point", "parameter_file_text"]

def study_path(folder, name):
    """The study file ``name`` of ``folder``, refusing anything outside it.

    Parameters
    ----------
    folder : str | pathlib.Path
        The folder the dashboard serves.
    name : str
        A file name of that folder (``'fit.sqlite'``), as the pages pass it.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        ``name`` is not the bare name of a ``.sqlite`` file.
    """
    if (not isinstance(name, str) or not name or name != Path(name).name
            or name in (".", "..") or not name.endswith(".sqlite")):
        raise ValueError(f"study must be the name of a .sqlite file of the folder, "
                         f"got {name!r}")
    return Path(folder) / name


def fingerprint(path):
    """What changes whenever a fit records something in ``path``.

    The size and modification time (ns) of the study file and of its
    write-ahead log; None for a file that does not exist. Reading it costs
    two ``stat`` calls, so pages poll it every second.
    """
    out = []
    for p in (Path(path), Path(str(path) + "-wal")):
        try:
            st = p.stat()
        except OSError:
            if p == Path(path):
                return None
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


def _utc(seconds):
    if seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def read_folder(folder):
    """One row per ``*.sqlite`` file of ``folder``, for the studies table.

    Parameters
    ----------
    folder : str | pathlib.Path

    Returns
    -------
    list of dict
        The records of :func:`hnnfit.fit.storage.scan_studies` with the
        display fields ``progress`` (``'12/40'``), ``best`` (the best value
        as text), ``last_utc``, ``created_utc`` (``'YYYY-mm-dd HH:MM:SS'``,
        UTC) and ``ok`` (False for a file that is not a readable study;
        its ``error`` says why).
    """
    rows = []
    for rec in scan_studies(folder):
        rec = dict(rec)
        rec["ok"] = rec["state"] != "not a study"
        if rec["ok"]:
            done = rec["evaluations"]
            rec["progress"] = f"{done}" + ("" if rec["budget"] is None
                                           else f"/{rec['budget']}")
        else:
            rec["progress"] = ""
        rec["best"] = "" if rec["best_value"] is None else f"{rec['best_value']:.6g}"
        rec["last_utc"] = _utc(rec["last"])
        rec["created_utc"] = _utc(rec["created"])
        for key in ("stage", "description", "solver", "error"):
            rec[key] = "" if rec[key] is None else str(rec[key])
        rows.append(rec)
    return rows


def _stages(storage):
    raw = storage.get_metadata("stages")
    plan = None if raw is None else json.loads(raw)
    return plan or None


def shown_best(storage, plan=None):
    """The evaluation whose waveform the study page draws over the target.

    For an unstaged study its best evaluation; for a staged one the best of
    the final stage once it has one, else the best of the latest stage
    that has a complete evaluation (drawn over that stage's window).

    Returns
    -------
    Evaluation | None
    """
    plan = _stages(storage) if plan is None else plan
    if not plan:
        return storage.best()
    for stage in reversed(plan):
        best = storage.best(stage["name"])
        if best is not None:
            return best
    return None


def full_point(storage, plan=None):
    """The best values of all parameters (dict), or None before any result.

    Unstaged: the best evaluation's parameters. Staged: the start point
    ``x0`` updated, stage by stage, with each stage's best evaluation (the
    point the fit carries forward).
    """
    plan = _stages(storage) if plan is None else plan
    if not plan:
        best = storage.best()
        return None if best is None else dict(best.params)
    solver = storage.solver_settings or {}
    point = storage.space.clip(dict(solver.get("x0") or {})) if solver.get("x0") else {}
    found = False
    for stage in plan:
        best = storage.best(stage["name"])
        if best is not None:
            point.update(best.params)
            found = True
    return point if found else None


def _series(rows, names):
    """Columns of the evaluations table and the convergence plot."""
    cols = {k: [] for k in ("id", "n", "stage", "state", "value", "best_so_far",
                            "scale", "sim_seconds", "end_utc", "host", "error")}
    params = {n: [] for n in names}
    best = math.inf
    n = 0
    for row in rows:
        finished = row.state in (EvalState.COMPLETE, EvalState.FAILED)
        if finished:
            n += 1
        value = row.value if row.state == EvalState.COMPLETE else None
        if value is not None:
            best = min(best, value)
        cols["id"].append(row.id)
        cols["n"].append(n if finished else None)
        cols["stage"].append(row.stage)
        cols["state"].append(row.state.value)
        cols["value"].append(value)
        cols["best_so_far"].append(best if math.isfinite(best) and finished else None)
        cols["scale"].append(row.scale)
        cols["sim_seconds"].append(row.sim_seconds)
        cols["end_utc"].append(_utc(row.end_time))
        cols["host"].append(row.host or "")
        cols["error"].append((row.error or "").splitlines()[0] if row.error else "")
        for name in names:
            params[name].append(row.params.get(name))
    return cols, params


def read_study(path):
    """Everything the study page shows of one study file (plain data).

    Parameters
    ----------
    path : str | pathlib.Path

    Returns
    -------
    dict
        ``name``; ``record`` (its row of the studies table, see
        :func:`read_folder`); ``times`` and ``target`` (ms, nAm);
        ``stages`` (None, or one dict per stage with ``name``,
        ``t_start``, ``t_end`` (ms) and ``weights`` on ``times``);
        ``evaluations`` (columns: ``id``, ``n`` (number among finished
        evaluations), ``stage``, ``state``, ``value``, ``best_so_far``,
        ``scale``, ``sim_seconds``, ``end_utc``, ``host``, ``error``);
        ``params`` (one column of values per parameter, aligned with
        ``evaluations``); ``space`` (``name``, ``low``, ``high``, ``log``
        per parameter); ``best`` (None or ``id``, ``value``, ``stage``,
        ``params`` and ``dipole``: the stored waveform of that evaluation,
        nAm, or None when the objective did not store it); ``point``
        (:func:`full_point`); ``settings`` (objective, solver, budget,
        description, created) and ``machine``.

    Raises
    ------
    StudyError
        The file is not a readable study.
    """
    path = Path(path)
    with StudyStorage.load(path, readonly=True) as storage:
        record = dict(study_record(storage), study=path.name, path=str(path))
        target = storage.target
        times = np.asarray(target.times, dtype=float)
        plan = _stages(storage)
        stages = None
        if plan:
            from ..fit.staging import Stage

            stages = []
            for d in plan:
                st = Stage.from_dict(d)
                stages.append({"name": st.name, "t_start": float(st.t_start),
                               "t_end": float(min(st.t_end, times[-1])),
                               "weights": st.weights(times).tolist()})
        space = [{"name": p["name"], "low": float(p["low"]), "high": float(p["high"]),
                  "log": bool(p.get("log", False))}
                 for p in storage.space_dict["parameters"]]
        names = [p["name"] for p in space]
        rows = storage.rows()
        evaluations, params = _series(rows, names)
        best_row = shown_best(storage, plan)
        best = None
        if best_row is not None:
            dipole = (best_row.info or {}).get("dipole")
            if not isinstance(dipole, list) or not dipole:
                dipole = None
            best = {"id": best_row.id, "value": best_row.value, "stage": best_row.stage,
                    "params": dict(best_row.params),
                    "dipole": None if dipole is None else [float(v) for v in dipole]}
        budget = storage.budget
        meta = storage.metadata
        settings = {
            "objective": storage.objective,
            "solver": storage.solver_settings,
            "budget": None if budget is None else {
                "n_evals": budget.n_evals, "n_jobs": budget.n_jobs,
                "stage_evals": budget.stage_evals},
            "description": storage.description,
            "created": _utc(storage.created),
            "hnnfit_version": meta.get("hnnfit_version"),
            "schema_version": storage.schema_version,
        }
        point = full_point(storage, plan)
        return {
            "name": path.name, "record": record,
            "times": times.tolist(), "target": np.asarray(target.values, float).tolist(),
            "stages": stages, "evaluations": evaluations, "params": params,
            "space": space, "best": best, "point": point,
            "settings": settings, "machine": meta.get("machine"),
        }


def stored_objective(storage):
    """The study's objective, rebuilt from what the study file stores.

    Opens the study read-only as :meth:`hnnfit.Study.load` does, which
    unpickles any ``set_params`` hook or callable metric stored with it: so
    only for study files one trusts.

    Parameters
    ----------
    storage : StudyStorage
        An open (read-only) study.

    Returns
    -------
    DipoleObjective
    """
    from ..fit.study import Study

    with Study.load(storage.path, readonly=True) as study:
        return study.objective


def simulate_point(path, params):
    """Simulate ``params`` of the study at ``path``: its processed dipole (nAm).

    The dipole is smoothed and scaled as the study's objective scores it,
    on the target's times. Runs the model (seconds to minutes), so the
    server calls it in a worker process.

    Returns
    -------
    list of float
    """
    with StudyStorage.load(path, readonly=True) as storage:
        objective = stored_objective(storage)
    return [float(v) for v in objective(dict(params))["dipole"]]


def parameter_file_text(path):
    """The study's best point as the text of a JSON parameter file.

    The network with the best values of every parameter (see
    :func:`full_point`), written by :func:`hnnfit.params.write_params`
    from :func:`hnnfit.param_export.network_to_params`; what
    ``hnnfit export`` writes.

    Raises
    ------
    StudyError
        No complete evaluation yet.
    HnnfitError
        The network cannot be written as a parameter file.
    """
    import tempfile

    from ..param_export import network_to_params
    from ..params import write_params

    with StudyStorage.load(path, readonly=True) as storage:
        point = full_point(storage)
        if point is None:
            raise StudyError(f"study {str(storage.path)!r} has no complete evaluation yet")
        objective = stored_objective(storage)
    net = objective.make_net(objective.space.check_values(point))
    params = network_to_params(net)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "best.json")
        write_params(params, out)
        with open(out, encoding="utf-8") as f:
            return f.read()
