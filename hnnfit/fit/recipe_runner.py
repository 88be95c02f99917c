"""Running a fitting recipe: its phases as studies, its clock, its record and report.

See :mod:`hnnfit.fit.recipes` for what the phases do and how the time is
shared. Each phase is a study file beside the search's (``<stem>.sqlite``):
``<stem>_polish.sqlite``, ``<stem>_refine.sqlite``, one per candidate drive
of a structure search (``<stem>_<drive>.sqlite``), and the point kept as
``<stem>_best.json``. The recipe's record (the time each phase used, the
budgets it decided, the check) is kept in the search study's metadata, so a
recipe resumes where it stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..validation import check_int, check_type
from .recipes import (DEFAULT_RECIPE, MAX_NEW_DRIVES, Recipe, get_recipe, parse_duration,
                      phases_left_out, split_time, structure_phase_name, structure_round,
                      with_structure_search)
from .solvers import CmaSolver

__all__ = ["run_recipe", "RecipeReport", "recipe_record", "candidate_space",
           "generation_means", "RECIPE_KEY", "MIN_GAIN", "TREND_GENERATIONS"]

#: Metadata key of the search study holding the recipe's record.
RECIPE_KEY = "recipe"
#: Seeds of the polish's first generation (each generation shifts them).
POLISH_SEED0 = 1000
#: Seeds of the refinement's fixed trials.
REFINE_SEED0 = 2000
#: Seeds of the held-out check: far from every phase's.
CHECK_SEED0 = 100
#: Seeds of the trials a structure search judges models on (each later round
#: shifts them by :data:`STRUCTURE_ROUND_SEEDS`, so no round reuses another's).
STRUCTURE_SEED0 = 300
STRUCTURE_ROUND_SEEDS = 100
#: A new drive must lower the expected score by this fraction at least, on top
#: of beating the comparison's noise: a drive adds four to six fitted
#: parameters, worth keeping only for a visible gain.
MIN_GAIN = 0.03
#: The report compares a polish's first and last generations (a quarter of
#: them each, at least this many) only when it ran twice this many: fewer
#: generation means, each on three new trials, are too noisy to show a trend.
TREND_GENERATIONS = 4


@dataclass
class RecipeReport:
    """What a recipe did, and how good its point is on trials it never used.

    Attributes
    ----------
    recipe : str
    time_budget : float
        Seconds.
    phases : list of dict
        Per phase: ``name``, ``study`` (its file), ``n_evals``, ``seconds``,
        ``best_value`` (on the phase's own trials, nAm); a polish also has
        ``generation_means``, the mean score of each of its generations
        (nAm, see :func:`generation_means`), and the report compares its
        first and last quarter.
    params : dict
        The point kept.
    start_value : float | None
        The start point's score on the search's trials (nAm).
    held_out : float | None
        RMSE of the average of the first ``k`` held-out trials (nAm).
    group_rmse : list of float
        RMSE of each average of ``k`` held-out trials (nAm): the held-out
        score's spread.
    expected, bias2, var : float | None
        The expected RMSE of a ``k``-trial average (nAm) and its split into
        the squared bias and the trials' variance (nAm^2).
    k : int
    check_seeds : list of int
    check_seconds : float | None
    params_file : str | None
        The parameter file of the point kept (None if the network cannot be
        written as one).
    hypotheses : list of dict
        With a structure search, each drive tried: ``name``, ``location``,
        ``mu`` (fitted, ms), ``reason``, ``expected`` (nAm, on the
        comparison's unseen trials), ``gain`` and ``noise`` (nAm, against
        the model without it), ``kept``, ``round`` (1, 2, ...); and, first
        in each round, the model without it as ``name`` None.
    left_out : dict
        ``{phase name: why}`` of the phases the time budget left out (see
        :func:`~hnnfit.fit.recipes.phases_left_out`).
    """

    recipe: str
    time_budget: float
    phases: list
    params: dict
    start_value: float | None = None
    held_out: float | None = None
    group_rmse: list = field(default_factory=list)
    expected: float | None = None
    bias2: float | None = None
    var: float | None = None
    k: int = 3
    check_seeds: list = field(default_factory=list)
    check_seconds: float | None = None
    params_file: str | None = None
    hypotheses: list = field(default_factory=list)
    left_out: dict = field(default_factory=dict)

    def to_dict(self):
        """The report as JSON-able data."""
        return dict(vars(self))

    def lines(self):
        """The report as text lines (a table of the phases, then the check)."""
        out = [f"recipe {self.recipe!r}, budget {_minutes(self.time_budget)}",
               f"{'phase':<8} {'evaluations':>11} {'time':>9} {'best (fit trials)':>18}  study"]
        for ph in self.phases:
            best = "-" if ph["best_value"] is None else f"{ph['best_value']:.3f}"
            out.append(f"{ph['name']:<8} {ph['n_evals']:>11} {_minutes(ph['seconds']):>9} "
                       f"{best:>18}  {ph['study']}")
        for name, why in self.left_out.items():
            out.append(f"{name:<8} {'left out':>11}  ({why})")
        for ph in self.phases:
            means = ph.get("generation_means") or []
            if len(means) >= 2 * TREND_GENERATIONS:
                n = max(TREND_GENERATIONS, len(means) // 4)
                out.append(f"{ph['name']}: mean score of a generation, first {n}: "
                           f"{np.mean(means[:n]):.3f}, last {n}: {np.mean(means[-n:]):.3f} "
                           f"nAm (of {len(means)}; each on new trials)")
        if self.check_seconds is not None:
            out.append(f"{'check':<8} {len(self.check_seeds):>8} tr {_minutes(self.check_seconds):>9}")
        if self.start_value is not None:
            out.append(f"start point: {self.start_value:.3f} nAm on the search's trials")
        if self.held_out is not None:
            spread = np.asarray(self.group_rmse, dtype=float)
            out.append(f"held-out RMSE (average of trials {self.check_seeds[0]}-"
                       f"{self.check_seeds[self.k - 1]}): {self.held_out:.3f} nAm; "
                       f"over {spread.size} groups of {self.k}: median "
                       f"{np.median(spread):.3f}, 10-90% {np.percentile(spread, 10):.3f}-"
                       f"{np.percentile(spread, 90):.3f}")
            out.append(f"expected RMSE of a {self.k}-trial average: {self.expected:.3f} nAm "
                       f"= sqrt(bias² {self.bias2:.2f} + variance {self.var:.2f} / {self.k})")
        if self.hypotheses:
            out.append("structure search (expected RMSE on unseen trials):")
            for h in self.hypotheses:
                if h["name"] is None:
                    r = h.get("round", 1)
                    out.append(f"  without a new drive: {h['expected']:.3f} nAm" if r == 1
                               else f"  round {r}, on the model with the drives kept so "
                                    f"far: {h['expected']:.3f} nAm")
                    continue
                verdict = "KEPT" if h["kept"] else "not kept"
                out.append(f"  {verdict}: {h['name']} ({h['location']}, fitted at "
                           f"{h['mu']:.1f} ms): {h['expected']:.3f} nAm, gain "
                           f"{h['gain']:+.3f} +- {h['noise']:.3f}; {h['reason']}")
        if self.params_file is not None:
            out.append(f"the point kept, as a parameter file: {self.params_file}")
        return out


def _minutes(seconds):
    return f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------------------
# running a recipe
# ---------------------------------------------------------------------------
class _Record:
    """The recipe's record in the search study's metadata."""

    def __init__(self, storage, recipe, time_budget, n_jobs):
        self.storage = storage
        raw = storage.get_metadata(RECIPE_KEY)
        if raw is None:
            self.data = {"name": recipe.name, "time_budget": time_budget, "n_jobs": n_jobs,
                         "phases": {}}
        else:
            self.data = json.loads(raw)
            if self.data["name"] != recipe.name:
                from ..exceptions import StudyError

                raise StudyError(f"study {str(storage.path)!r} was fitted with the recipe "
                                 f"{self.data['name']!r}; resume it with that recipe, not "
                                 f"{recipe.name!r}")
            # a new budget for a resumed recipe is the caller's to give
            self.data["time_budget"] = time_budget
            self.data["n_jobs"] = n_jobs
            for phase in self.data["phases"].values():
                phase.pop("interrupted", None)

    def phase(self, name):
        return self.data["phases"].setdefault(name, {"seconds": 0.0, "done": False})

    def elapsed(self):
        return {n: (p["seconds"], p["done"]) for n, p in self.data["phases"].items()}

    def save(self):
        self.storage.set_metadata(RECIPE_KEY, json.dumps(self.data, sort_keys=True))


class _Clock:
    """The recipe's wall clock: all time since the last tick goes to the
    current phase's record (time between phases, setting up the next one
    included, counts against the phase that follows)."""

    def __init__(self, record, phase, start):
        self.record, self.phase, self.last = record, phase, start

    def tick(self):
        """Charge the time since the last tick to the current phase; its total (s)."""
        now = time.monotonic()
        p = self.record.phase(self.phase)
        p["seconds"] += now - self.last
        self.last = now
        self.record.save()
        return p["seconds"]

    def until(self, limit):
        """A run callback that asks the run to stop once the phase has used ``limit`` s."""
        return lambda row: self.tick() >= limit

    def per_stage(self, study, budgets, allotted):
        """A run callback giving each stage of the search its share of the time left.

        A stage may use the phase's time left when it starts in proportion
        to its budget among the stages still to run.
        """
        state = {"stage": None, "limit": math.inf}

        def callback(row):
            seconds = self.tick()
            if row.get("stage") != state["stage"]:
                state["stage"] = stage = row.get("stage")
                todo = {n: max(1, b - _used(study, n)) for n, b in budgets.items()
                        if _used(study, n) < b or n == stage}
                left = max(0.0, allotted - seconds)
                state["limit"] = seconds + left * todo.get(stage, 1) / sum(todo.values())
            return seconds >= state["limit"]

        callback.state = state     # the stage of the last row: where a stop came
        return callback


def _eval_seconds(record, study):
    """Estimated seconds of one evaluation of ``study`` from the measured search's."""
    per_trial = record.data["eval_seconds"] / record.data["search_trials"]
    return per_trial * study.objective.n_trials * record.data["search_dt"] / study.objective.dt


def _used(study, stage):
    """Complete plus failed evaluations of a stage."""
    from .storage import EvalState

    counts = study.storage.counts(stage)
    return counts[EvalState.COMPLETE] + counts[EvalState.FAILED]


def _timed_evaluation(objective, point):
    """(value, seconds) of a second evaluation at ``point`` (the first warms up)."""
    objective(point)
    t0 = time.perf_counter()
    value = objective(point)["value"]
    return value, time.perf_counter() - t0


def run_recipe(setup, path, recipe=DEFAULT_RECIPE, time_budget="30m", *, n_jobs=1,
               progress=True, out=None, description=None, add_drives=0):
    """Fit with a recipe within a wall-time budget (or resume such a fit).

    Parameters
    ----------
    setup : hnnfit.config.FitSetup
        The network, target, space, objective and solver seed
        (:func:`hnnfit.config.build_fit`); the search is a staged fit of
        its space, with the Bayesian solver.
    path : str | pathlib.Path
        The search's study file; the other phases' files go beside it
        (``<stem>_polish.sqlite``, ``<stem>_refine.sqlite``). An existing
        one is resumed.
    recipe : str
        A name in :data:`RECIPES`.
    time_budget : str | float
        Wall time of the whole recipe, e.g. ``'45m'`` (see
        :func:`parse_duration`; a number is seconds).
    n_jobs : int
        Evaluations run at once.
    progress : bool
        Print progress lines to stderr.
    out : callable | None
        Called with each line of the phase headers and of the final report
        (default: ``print``).
    description : str | None
        Stored in the search study.
    add_drives : int
        The most evoked drives to add, 0 (default: the network's drives
        only) to :data:`~hnnfit.fit.recipes.MAX_NEW_DRIVES`. After the
        search, look for a drive the model lacks (see
        :mod:`hnnfit.fit.structure`): each candidate is fitted and judged
        against the model without it on unseen trials, and kept only if it
        lowers the expected score by more than twice the noise of that
        comparison. Each round keeps one drive at most, and the next round
        (up to ``add_drives``) runs only if it kept one. The phases after
        the search then work on the model kept.

    Returns
    -------
    RecipeReport
    """
    from ..exceptions import StudyError
    from .study import Study

    started = time.monotonic()
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    check_type(recipe, Recipe, "recipe")
    add_drives = check_int(add_drives, "add_drives", low=0, high=MAX_NEW_DRIVES)
    if add_drives:
        recipe = with_structure_search(recipe, add_drives)
    total = parse_duration(time_budget)
    n_jobs = check_int(n_jobs, "n_jobs", low=1)
    out = print if out is None else out
    path = Path(path)
    fine_dt = float(setup.objective.get("dt", 0.025))
    objective = dict(setup.objective)
    if recipe.search_dt is not None and fine_dt < recipe.search_dt:
        objective["dt"] = recipe.search_dt
    kwargs = setup.study_kwargs(staged=True)
    kwargs.update(objective=objective, solver="bayesian")
    study = Study.create(path, **kwargs, description=description, exist_ok=True)
    studies = [study]
    try:
        record = _Record(study.storage, recipe, total, n_jobs)
        clock = _Clock(record, recipe.phases[0].name, started)
        data = record.data
        if "eval_seconds" not in data:
            # the cost of one evaluation, measured, sets the search's budget
            value, seconds = _timed_evaluation(study.objective,
                                               study.space.clip(study.x0))
            data.update(start_value=value, eval_seconds=seconds,
                        search_trials=study.objective.n_trials,
                        search_dt=study.objective.dt)
            record.save()
        # the check's trials, at the fit's own step, are set aside first
        trial_s = data["eval_seconds"] / data["search_trials"] * data["search_dt"] / fine_dt
        if "check_trials" not in data:
            fits = int(0.1 * total / trial_s * n_jobs) // 3 * 3
            data["check_trials"] = min(recipe.check_trials, max(6, fits))
            record.save()
        reserve = math.ceil(data["check_trials"] / n_jobs) * trial_s
        if "left_out" not in data:
            # decided once, from the measured cost, so that a resumed recipe
            # runs the phases it started with
            data["left_out"] = phases_left_out(
                recipe, total - reserve - 2 * data["eval_seconds"],
                data["eval_seconds"] / data["search_trials"], n_jobs, len(study.space),
                _polish_generation_size(recipe, study.space))
            record.save()
        for name, why in data["left_out"].items():
            out(f"{name}: left out, {why}; its time goes to the other phases")
        recipe = replace(recipe, phases=tuple(p for p in recipe.phases
                                              if p.name not in data["left_out"]))
        point, last = None, study
        phases = []
        added = []      # the parameters of the drives a structure search kept
        for phase in recipe.phases:
            clock.tick()
            clock.phase = phase.name
            before = last     # a phase without a point hands this study back
            allotted = split_time(total, recipe.phases, record.elapsed(), reserve)
            round_ = structure_round(phase.name)
            runner = {"search": _search, "polish": _polish,
                      "refine": _refine}.get(phase.name)
            if runner is None and round_ is None:
                raise ValueError(f"phase must be 'search', 'structure', 'polish' or "
                                 f"'refine', got {phase.name!r}")
            if phase.name == "search":
                ran, point = _search(study, clock, phase, allotted.get(phase.name),
                                     n_jobs, progress, out)
            elif round_ is not None:
                ran, point = _structure(study, last, point, path, clock,
                                        allotted.get(phase.name), n_jobs, progress, out,
                                        setup.solver.seed, studies, round_)
                if ran is not last and ran.n_complete:
                    added.extend(ran.space.parameters)    # the new drive's
            else:
                full = list(study.space.parameters) + added
                why = _left_out_after_structure(recipe, phase, record, total, reserve,
                                                n_jobs, full, grown=bool(added))
                if why is not None:
                    out(f"{phase.name}: left out, {why}; its time goes to the other phases")
                    recipe = replace(recipe, phases=tuple(
                        p for p in recipe.phases if p.name != phase.name))
                    continue
                ran, point = runner(last, point, path, clock, phase, objective,
                                    allotted.get(phase.name), n_jobs, progress, out,
                                    setup.solver.seed, full=full)
                studies.append(ran)
            p = record.phase(phase.name)
            if p.get("interrupted"):
                raise KeyboardInterrupt
            if ran.n_complete:
                last = ran     # the study whose point the next phase starts from
            elif phase.name == "search":
                raise StudyError(f"the search of {str(path)!r} completed no evaluation; "
                                 f"see 'hnnfit show {path}'")
            if round_ is None:
                phases.append({"name": phase.name, "study": str(ran.path),
                               "n_evals": int(ran.n_complete + ran.n_failed),
                               "seconds": p["seconds"], "best_value": _best(ran)})
                if phase.name == "polish" and ran is not before:
                    phases[-1]["generation_means"] = generation_means(ran)
            elif not p.get("skipped"):
                # the candidates' fits; the study is the drive kept, if any
                kept = p.get("kept")
                phases.append({"name": phase.name,
                               "study": kept["study"] if kept else "(no drive kept)",
                               "n_evals": int(p.get("n_evals", 0)),
                               "seconds": p["seconds"],
                               "best_value": _best(ran) if kept else None})
        report = RecipeReport(recipe=recipe.name, time_budget=total, phases=phases,
                              left_out=dict(data["left_out"]),
                              params=dict(point), start_value=data.get("start_value"),
                              hypotheses=[h for ph in recipe.phases
                                          if structure_round(ph.name)
                                          for h in record.phase(ph.name).get("hypotheses",
                                                                             [])])
        clock.tick()
        _check(last, point, report, record, recipe, fine_dt, n_jobs, out)
        report.params_file = _export(last, point, path.with_name(f"{path.stem}_best.json"),
                                     out)
        for line in report.lines():
            out(line)
        return report
    finally:
        for st in studies:
            st.close()


def generation_means(study):
    """The mean score of each generation of a resampled study, in order (nAm).

    A resampled CMA-ES polish runs one generation per batch, each on new
    trials, so its lowest single value is partly luck; the mean of a
    generation, early against late, shows whether the polish was still
    gaining when its time ran out. Failed evaluations are left out; a batch
    with none complete gives no mean.
    """
    from .storage import EvalState

    by_batch = {}
    for row in study.storage.rows(state=EvalState.COMPLETE):
        if row["batch"] is not None and row["value"] is not None:
            by_batch.setdefault(int(row["batch"]), []).append(float(row["value"]))
    return [float(np.mean(by_batch[b])) for b in sorted(by_batch)]


def _best(study):
    from ..exceptions import StudyError

    if study.n_complete == 0:
        return None
    try:
        return float(study.best_value)
    except StudyError:      # a staged study without a final stage row
        return None


def _search(study, clock, phase, allotted, n_jobs, progress, out):
    """The staged Bayesian search within its time.

    Its evaluation budget comes from the measured cost of one evaluation
    and is split among the stages as a staged fit splits it; each stage
    also gets the phase's time left in proportion to its budget among the
    stages still to run, and a stage past its time is closed where it is
    (its budget shortened to what it ran, so a resumed search agrees).
    """
    from .staging import FINAL, split_budget

    record = clock.record
    p = record.phase("search")
    if not p["done"]:
        names = [st.name for st in study.stages]
        if "stage_evals" not in p:
            per_eval = record.data["eval_seconds"] / n_jobs
            n = int(allotted / per_eval)
            n = max(2 * len(names), min(n, 10 * len(study.space) + 20))
            p["stage_evals"] = dict(split_budget(n, study.stages))
            record.save()
        out(f"search: staged Bayesian fit of {len(study.space)} parameters in "
            f"{len(names)} stages, at most {sum(p['stage_evals'].values())} evaluations "
            f"(about {_minutes(allotted - p['seconds'])} of its time left)")
        while True:
            budgets = p["stage_evals"]
            if all(_used(study, n) >= budgets[n] for n in names):
                break
            callback = clock.per_stage(study, budgets, allotted)
            summary = study.optimize(sum(budgets.values()), n_jobs=n_jobs,
                                     progress=progress, callback=callback,
                                     stage_evals=budgets)
            clock.tick()
            if summary.interrupted:
                p["interrupted"] = True
                return study, None
            if not summary.stopped:
                break
            # the stage ran out of its time: it ends with what it has (a stop
            # on its last evaluation leaves its budget as it was)
            stopped = callback.state["stage"]
            budgets[stopped] = max(1, _used(study, stopped))
            record.save()
        p["done"] = True
        record.save()
    if study.storage.best(FINAL) is None:
        return study, study.space.clip(study.x0)
    return study, study.stage_point()


def _timed_run(study, clock, phase_record, allotted, step, n_jobs, progress, record,
               eval_s):
    """Run ``study`` until its phase has used ``allotted`` seconds (or its solver stops).

    No batch of ``step`` evaluations starts that the pace so far says would
    end past the phase's time. The study's recorded budget is then what it
    ran, so that ``hnnfit resume`` on it has nothing left to do.
    """
    pace = {"t": None, "rows": 0, "per_row": phase_record.get("row_seconds")}

    def callback(row):
        seconds = clock.tick()
        now = time.monotonic()
        if pace["t"] is not None:
            pace["rows"] += 1
            pace["per_row"] = (now - pace["t"]) / pace["rows"]
            phase_record["row_seconds"] = pace["per_row"]
        else:
            pace["t"] = now
        ahead = (pace["per_row"] or 0.0) * step
        return seconds + ahead >= allotted

    done = study.n_complete + study.n_failed
    left = allotted - phase_record["seconds"]
    if left - (pace["per_row"] or 0.0) * step > 0:
        # a cap of twice what the time allows at the estimated pace
        # (``eval_s`` per evaluation): the callback ends the run
        cap = step * math.ceil(2 * left * n_jobs / eval_s / step + 1)
        summary = study.optimize(done + cap, n_jobs=n_jobs, progress=progress,
                                 callback=callback)
        clock.tick()
        if summary.interrupted:
            phase_record["interrupted"] = True
            record.save()
            return
    study.storage.record_budget(max(1, study.n_complete + study.n_failed), n_jobs, {})
    phase_record["done"] = True
    record.save()


def _left_out_after_structure(recipe, phase, record, total, reserve, n_jobs, full, grown):
    """Why ``phase`` (a polish or refinement) is left out once a structure
    search has widened the space, or None to run it.

    The first decision counts the search's parameters; a kept drive adds
    its own, and a polish then draws more points per generation. This
    decision, made once when the phase is about to start, judges the phase
    again on the widened space (``full``, all its parameters; ``grown``,
    whether a drive was kept) and the time left, and is recorded with the
    first (so a resumed recipe leaves out the same phases).
    """
    from .space import ParameterSpace

    data = record.data
    p = record.phase(phase.name)
    if not grown or p["done"] or p["seconds"] > 0 or phase.name in data.get("rejudged", ()):
        return None
    elapsed = record.elapsed()
    todo = [ph for ph in recipe.phases
            if ph.name in ("polish", "refine") and not elapsed.get(ph.name, (0.0, False))[1]]
    used = sum(e[0] for e in elapsed.values())
    later = replace(recipe, phases=tuple(todo))
    why = phases_left_out(later, total - reserve - used,
                          data["eval_seconds"] / data["search_trials"], n_jobs, len(full),
                          _polish_generation_size(later, ParameterSpace(full))).get(phase.name)
    data.setdefault("rejudged", []).append(phase.name)
    if why is not None:
        data["left_out"][phase.name] = why
    record.save()
    return why


def _polish_generation_size(recipe, space):
    """Points per generation of ``recipe``'s polish on ``space``, as its solver
    would draw them (None without a polish)."""
    for phase in recipe.phases:
        if phase.name == "polish":
            return CmaSolver(space, **phase.options).generation_size
    return None


def _polish(base, point, path, clock, phase, objective, allotted, n_jobs, progress, out,
            seed, full):
    """CMA-ES on new trials each generation; keeps its averaged mean."""
    record = clock.record
    p = record.phase("polish")
    if point is None:
        return base, point
    polish = _local_study(base, point, path, phase, objective, seed, full, "polish", "cma",
                          POLISH_SEED0, resample=True)
    seeds = polish.objective.seeds
    if not p["done"]:
        gen = polish.make_solver().generation_size
        out(f"polish: CMA-ES, {gen} points per generation on {len(seeds)} new trials "
            f"each, about {_minutes(allotted - p['seconds'])}")
        _timed_run(polish, clock, p, allotted, gen, n_jobs, progress, record,
                   _eval_seconds(record, polish))
        if p.get("interrupted"):
            return polish, None
    if polish.n_complete == 0:
        return polish, point     # no time was left for it
    solver = polish.replay_solver()
    if len(solver.means) >= 2:
        kept = polish.space.clip(solver.averaged_mean(solver.averaging_window()))
    else:
        kept = dict(polish.best_params)
    return polish, {**point, **kept}


def _local_study(base, point, path, phase, objective, seed, full, suffix, solver, seed0,
                 resample):
    """The study of a polish or refinement from ``point``: ``phase.n_trials``
    trials from ``seed0``, averaged in groups of 3, at the search's step."""
    seeds = list(range(seed0, seed0 + phase.n_trials))
    settings = {"seeds": seeds, "n_trials": len(seeds), "group_size": 3,
                "resample": resample}
    if "dt" in objective:
        settings["dt"] = objective["dt"]
    return base.create_polish(path.with_name(f"{path.stem}_{suffix}.sqlite"),
                              objective=settings, solver=solver,
                              solver_options=dict(phase.options), seed=seed,
                              start={n: point[n] for n in base.space.names},
                              exist_ok=True, overrides=_widen(base, full),
                              description=f"recipe {suffix} of {path.name}")


def _refine(base, point, path, clock, phase, objective, allotted, n_jobs, progress, out,
            seed, full):
    """A pattern search on fixed trials from the point kept so far."""
    record = clock.record
    p = record.phase("refine")
    if point is None:
        return base, point
    refine = _local_study(base, point, path, phase, objective, seed, full, "refine",
                          "pattern", REFINE_SEED0, resample=False)
    seeds = refine.objective.seeds
    if not p["done"]:
        out(f"refine: pattern search on {len(seeds)} fixed trials, about "
            f"{_minutes(allotted - p['seconds'])}")
        _timed_run(refine, clock, p, allotted, n_jobs, n_jobs, progress, record,
                   _eval_seconds(record, refine))
        if p.get("interrupted"):
            return refine, None
    if refine.n_complete == 0:
        return refine, point
    return refine, {**point, **refine.best_params}


def _structure(search, base, point, path, clock, allotted, n_jobs, progress, out, seed,
               studies, round_=1):
    """One round of the search for evoked drives the model lacks: fit and
    judge each candidate.

    Returns the study whose point the next phase starts from (a candidate's
    if one is kept) and that point. A round after the first runs only if
    the round before it kept a drive.
    """
    from ..network import add_evoked_drives
    from .objective import objective_kwargs
    from .structure import compare_models, gain_and_noise, propose_drives, residual_features
    from .study import Study

    record = clock.record
    name = structure_phase_name(round_)
    p = record.phase(name)
    if point is None or p.get("done"):
        if p.get("kept"):
            kept = Study.load(p["kept"]["study"])
            studies.append(kept)
            return kept, {**point, **p["kept"]["params"]}
        return base, point
    if round_ > 1 and not record.phase(structure_phase_name(round_ - 1)).get("kept"):
        p.update(done=True, skipped=True)
        record.save()
        return base, point
    data = record.data
    per_trial = data["eval_seconds"] / data["search_trials"]
    # the comparison's trials: at most a fifth of the phase's time, 9 to 30
    if "n_trials" not in p:
        fits = int(0.2 * allotted / per_trial * n_jobs / (2 * 2 + 1)) // 3 * 3
        p["n_trials"] = min(30, max(9, fits))
        record.save()
    seed0 = STRUCTURE_SEED0 + (round_ - 1) * STRUCTURE_ROUND_SEEDS
    seeds = list(range(seed0, seed0 + p["n_trials"]))
    target = search.target
    tstop = float(target.times[-1])
    params = {n: point[n] for n in base.space.names}
    base_net = base.space.apply(base.net, params)
    budget = base.objective.error_budget(params, seeds, k=3, n_jobs=n_jobs)
    trials = {"": budget["trials"]}
    features = residual_features(target.times, target.values, budget, k=3)
    candidates = propose_drives(base_net, features, tstop, max_features=2)
    out(f"{name}: {len(features)} part(s) of the waveform miss the target beyond "
        f"trial noise; {len(candidates)} candidate drive(s), about "
        f"{_minutes(allotted - p['seconds'])}")
    fitted = []
    for i, cand in enumerate(candidates):
        spec = cand["spec"]
        drive = spec["name"]
        net = base_net.copy()
        add_evoked_drives(net, [dict(spec)], what="candidate drive")
        lo, hi = cand["mu_range"]
        space = candidate_space(net, drive, (lo, hi), tstop, cand.get("weight_ranges"))
        tag = "" if round_ == 1 else f"round{round_}_"
        cpath = path.with_name(f"{path.stem}_{tag}{drive}.sqlite")
        study = Study.create(cpath, net, target, space,
                             objective=objective_kwargs(base.objective), solver="bayesian",
                             seed=seed, description=f"recipe candidate: {cand['reason']}",
                             exist_ok=True)
        studies.append(study)
        c = p.setdefault("candidates", {}).setdefault(drive, {"done": False})
        if not c["done"]:
            out(f"  candidate {drive}: {cand['reason']}")
            left = allotted - p["seconds"] - (len(candidates) + 1 - i) * _cmp_seconds(
                p["n_trials"], per_trial, n_jobs)
            limit = p["seconds"] + max(0.0, left) / (len(candidates) - i)
            summary = study.optimize(max(len(space) + 3, 10 * len(space)), n_jobs=n_jobs,
                                     progress=progress, callback=clock.until(limit))
            clock.tick()
            if summary.interrupted:
                p["interrupted"] = True
                record.save()
                return base, None
            c["done"] = True
            record.save()
        if study.n_complete:
            best = dict(study.best_params)
            trials[drive] = study.objective.error_budget(best, seeds, k=3,
                                                        n_jobs=n_jobs)["trials"]
            fitted.append((cand, study, best))
            clock.tick()
    p["n_evals"] = sum(st.n_complete + st.n_failed for _, st, _ in fitted)
    scores = compare_models(trials, target.values, k=3)
    hypotheses = [{"name": None, "location": None, "mu": None, "reason": "the model as fitted",
                   "expected": scores[""]["expected"], "gain": 0.0, "noise": 0.0,
                   "kept": False, "round": round_}]
    winner = None
    for cand, study, best in fitted:
        drive = cand["spec"]["name"]
        gain, noise = gain_and_noise(scores, "", drive)
        hypotheses.append({"name": drive, "location": cand["spec"]["location"],
                           "mu": best[f"{drive}.mu"], "reason": cand["reason"],
                           "expected": scores[drive]["expected"], "gain": gain,
                           "noise": noise, "kept": False, "round": round_})
        worth = gain > 2 * noise and gain > MIN_GAIN * scores[""]["expected"]
        if worth and (winner is None or gain > winner[0]):
            winner = (gain, len(hypotheses) - 1, study, best)
    if winner is not None:
        hypotheses[winner[1]]["kept"] = True
        p["kept"] = {"study": str(winner[2].path), "params": winner[3]}
    else:
        hypotheses[0]["kept"] = True
    p["hypotheses"] = hypotheses
    p["done"] = True
    record.save()
    if winner is None:
        return base, point
    return winner[2], {**point, **winner[3]}


#: Spread of a candidate drive's events searched (ms): from a near-synchronous
#: volley to a broad one.
CANDIDATE_SIGMA = (0.5, 20.0)


def candidate_space(net, name, mu_range, tstop, weight_ranges=None):
    """The parameters of a candidate drive fitted by a structure search.

    Its timing (within ``mu_range``, ms), its spread (0.5-20 ms) and its
    weights: with ``weight_ranges`` (``{'ampa.<cell>': (low, high)}``, uS,
    as :func:`~hnnfit.fit.structure.propose_drives` gives them) every one
    of them, on a log scale, so that the candidate can also be made nearly
    silent; without, its AMPA weights onto the pyramidal cells in the
    default ranges of :func:`~hnnfit.fit.space.evoked_space`.
    """
    from .space import evoked_space

    overrides = {f"{name}.mu": tuple(mu_range), f"{name}.sigma": CANDIDATE_SIGMA}
    for key, (lo, hi) in (weight_ranges or {}).items():
        overrides[f"{name}.{key}"] = (float(lo), float(hi), {"log": True})
    space = evoked_space(net, drives=[name], tstop=tstop, overrides=overrides)
    keep = [n for n in space.names
            if n in (f"{name}.mu", f"{name}.sigma")
            or (weight_ranges is not None and n[len(name) + 1:] in weight_ranges)
            or (weight_ranges is None and n.startswith(f"{name}.ampa.")
                and n.endswith("_pyramidal"))]
    return space.subset(keep)


def _cmp_seconds(n_trials, per_trial, n_jobs):
    """Seconds to simulate one model's comparison trials."""
    return math.ceil(n_trials / n_jobs) * per_trial


def _widen(base, full):
    """The parameters of ``full`` (a list) that ``base`` does not fit (a polish
    adds them back).

    After a structure search, the study kept fits its new drive alone; its
    polish covers every parameter again: the search's, and those of every
    drive the structure search kept.
    """
    return {p.name: p for p in full if p.name not in base.space} or None


def _check(last, point, report, record, recipe, fine_dt, n_jobs, out):
    """Score the point on held-out trials at the fit's own step; fill ``report``."""
    from . import assess

    data = record.data
    check = data.get("check")
    seeds = list(range(CHECK_SEED0, CHECK_SEED0 + data["check_trials"]))
    if check is None or check["params"] != _jsonable(point) or check["seeds"] != seeds:
        out(f"check: the point on {len(seeds)} held-out trials at dt {fine_dt:g} ms")
        t0 = time.monotonic()
        params = {n: point[n] for n in last.space.names}
        budget = assess.error_budget(last, seeds, params=params, k=3, n_jobs=n_jobs,
                                     dt=fine_dt)
        # the disjoint averages of k consecutive held-out trials: the first is
        # the held-out score, all of them its spread
        trials, k = budget["trials"], int(budget["k"])
        groups = [float(np.sqrt(np.mean((trials[i:i + k].mean(axis=0)
                                         - last.target.values) ** 2)))
                  for i in range(0, len(trials) - k + 1, k)]
        check = {"params": _jsonable(point), "seeds": seeds, "group_rmse": groups,
                 "expected": float(budget["expected"]), "bias2": float(budget["bias2"]),
                 "var": float(budget["var"]), "k": int(budget["k"]),
                 "seconds": time.monotonic() - t0}
        data["check"] = check
        record.save()
    report.group_rmse = check["group_rmse"]
    report.held_out = check["group_rmse"][0] if check["group_rmse"] else None
    report.expected, report.bias2, report.var = check["expected"], check["bias2"], check["var"]
    report.k, report.check_seeds = check["k"], check["seeds"]
    report.check_seconds = check["seconds"]


def _export(study, point, path, out):
    """Write the point kept as a parameter file; its path, or None if it cannot be."""
    from ..exceptions import HnnfitError

    try:
        study.export(path, params={n: point[n] for n in study.space.names})
    except HnnfitError as err:
        out(f"the point kept cannot be written as a parameter file: {err}")
        return None
    return str(path)


def _jsonable(point):
    return {str(k): float(v) for k, v in sorted(point.items())}


def recipe_record(storage):
    """The recipe record of a search study (dict), or None for another study."""
    raw = storage.get_metadata(RECIPE_KEY)
    return None if raw is None else json.loads(raw)
