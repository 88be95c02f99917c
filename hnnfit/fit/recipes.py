"""Fitting recipes: named pipelines of the fitting parts, run within a wall-time budget.

A recipe runs its phases one after the other, each an ordinary study file:

``search``
    a staged Bayesian fit (:mod:`hnnfit.fit.staging`): one stage per group
    of evoked drives on the part of the waveform it shapes, then every
    parameter on the whole waveform; at a coarse time step (0.05 ms) when
    the fit's own is finer, which halves the cost of an evaluation;
``structure`` (``add_drives``; ``structure-2``, ... for further rounds)
    a search for an evoked drive the model lacks
    (:mod:`hnnfit.fit.structure`): candidates are fitted and judged against
    the model without them on unseen trials; each round keeps one at most,
    and a round runs only if the one before it kept a drive;
``polish``
    CMA-ES from the search's best point on averages of new trials for each
    generation (so that no point is kept for one lucky draw of trial
    noise); the point kept is CMA-ES' mean averaged over its later
    generations;
``refine``
    a pattern search from that point on fixed trials;

then a **check**: the point kept is scored at the fit's own time step on
held-out trials no phase used, and the expected score of an average of
``k`` trials is split into bias and trial variance (see
:func:`hnnfit.fit.objective.error_budget`).

Time. A recipe is given a wall-time budget. The check's cost is set aside
first (from the measured time of one simulation); each phase then gets the
time left in proportion to its share among the phases still to run, so a
phase that ends early leaves its time to the next. The search's evaluation
budget is set from the measured cost of one evaluation when it starts (its
stages split it as a staged fit does); the polish and the refinement run
until their time is used up or their solver stops. A polish or refinement
whose share cannot pay for enough of its rounds (:func:`phases_left_out`)
is left out, and its time goes to the other phases. What was decided and the
time each phase has used are recorded in the search study, so an
interrupted recipe resumes where it stopped, in the middle of a phase
included: the phase's solver is replayed from its log and proposes the
points an uninterrupted run would.

This module holds the recipes themselves, durations and the split of a
budget; :mod:`hnnfit.fit.recipe_runner` runs them (``hnnfit fit --recipe
NAME --time 45m``, or :func:`hnnfit.fit.recipe_runner.run_recipe` from
Python).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..validation import check_number, check_type

__all__ = ["Phase", "Recipe", "RECIPES", "DEFAULT_RECIPE", "parse_duration", "get_recipe",
           "split_time", "with_structure_search", "STRUCTURE_SHARE",
           "STRUCTURE_ROUND_SHARE", "MAX_NEW_DRIVES", "new_drive_limit", "structure_phase_name",
           "structure_round", "phases_left_out",
           "MIN_POLISH_GENERATIONS", "MIN_REFINE_SWEEPS"]

#: Share of the time a structure search takes from a recipe's others.
STRUCTURE_SHARE = 0.35
#: Share of the time each further round of a structure search adds (a round
#: runs only if the one before it kept a drive).
STRUCTURE_ROUND_SHARE = 0.175
#: Most drives one recipe may add (each round adds one at most).
MAX_NEW_DRIVES = 3


def new_drive_limit(value):
    """The most drives a structure search may add, from ``add_drives``.

    ``'none'`` is 0, ``'auto'`` is 1 (one round: the drive that pays most,
    if any), and a number from 1 to :data:`MAX_NEW_DRIVES` (or its text)
    allows that many rounds.

    Raises
    ------
    ValueError
        Anything else, named.
    """
    if value in ("none", "auto"):
        return int(value == "auto")
    n = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_NEW_DRIVES:
        return n
    raise ValueError(f"add_drives must be 'auto', 'none' or a number of drives from 0 to "
                     f"{MAX_NEW_DRIVES}, got {value!r}")


def structure_phase_name(round_):
    """The name of a structure search's round ``round_`` (1, 2, ...) as a phase."""
    return "structure" if round_ == 1 else f"structure-{round_}"


def structure_round(name):
    """The round of a structure phase's name, or None for another phase."""
    if name == "structure":
        return 1
    if name.startswith("structure-") and name[len("structure-"):].isdigit():
        return int(name[len("structure-"):])
    return None


@dataclass(frozen=True)
class Phase:
    """One phase of a recipe.

    Attributes
    ----------
    name : {'search', 'structure', 'structure-2', ..., 'polish', 'refine'}
        What the phase does (see the module's description).
    share : float
        Its share of the time (> 0), relative to the other phases'.
    options : dict
        Solver options (CMA-ES' ``sigma0``, the pattern search's ``step``).
    n_trials : int
        Trials per evaluation (the polish's and refinement's are averaged in
        groups of 3).
    min_rounds : int | None
        A polish or refinement is left out, its time given to the others,
        when its share of the time cannot run this many CMA-ES generations
        or polls of every direction (see :func:`phases_left_out`); None:
        :data:`MIN_POLISH_GENERATIONS` or :data:`MIN_REFINE_SWEEPS`; 0:
        always run it.
    """

    name: str
    share: float
    options: dict = field(default_factory=dict)
    n_trials: int = 3
    min_rounds: int | None = None


@dataclass(frozen=True)
class Recipe:
    """A named fitting pipeline.

    Attributes
    ----------
    name : str
    summary : str
        One line on what it does and when to use it.
    phases : tuple of Phase
    search_dt : float | None
        Time step of the search and polish (ms); None keeps the fit's. A
        step finer than this is kept as it is.
    check_trials : int
        Held-out trials of the final check, at most (their averages of 3
        give the held-out score's spread); fewer, down to 6, when they
        would take more than a tenth of the time budget.
    """

    name: str
    summary: str
    phases: tuple
    search_dt: float | None = 0.05
    check_trials: int = 30


RECIPES = {
    "erp": Recipe(
        "erp", "staged Bayesian search, then a CMA-ES polish on new trials each "
        "generation, then a check on held-out trials (the default)",
        (Phase("search", 0.4), Phase("polish", 0.6, {"sigma0": 0.08}))),
    "erp-refine": Recipe(
        "erp-refine", "as 'erp', then a pattern search on 12 fixed trials from the "
        "polished point (for budgets of 75 minutes or more)",
        (Phase("search", 0.5), Phase("polish", 0.3, {"sigma0": 0.08}),
         Phase("refine", 0.2, {"step": 0.05}, n_trials=12))),
    "search": Recipe(
        "search", "the staged Bayesian search alone, then the check (a quick first look)",
        (Phase("search", 1.0),)),
}
#: The recipe ``hnnfit fit --time`` runs unless told otherwise.
DEFAULT_RECIPE = "erp"

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?"
                       r"\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


def parse_duration(text):
    """Seconds in a duration such as ``'45m'``, ``'1h30m'``, ``'90s'`` or ``'2.5h'``.

    Parameters
    ----------
    text : str | float
        Hours (``h``), minutes (``m`` or ``min``) and seconds (``s``), or a
        plain number of seconds.

    Returns
    -------
    float
        Seconds (> 0).

    Raises
    ------
    ValueError
        Not a duration, or not positive.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        check_type(text, str, "time")
        match = _DURATION.match(text)
        if text.strip().replace(".", "", 1).isdigit():
            seconds = float(text)
        elif match is None or not any(match.groups()):
            raise ValueError(f"time must be a duration such as '45m', '1h30m' or '90s', "
                             f"got {text!r}")
        else:
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = 3600 * h + 60 * m + s
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"time must be a positive duration, got {text!r}")
    return seconds


def get_recipe(name):
    """The recipe called ``name`` (ValueError naming the known ones otherwise)."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}, "
                         f"got {name!r}")
    return RECIPES[name]


#: A polish with time for fewer CMA-ES generations than this is left out: its
#: averaged mean (over the later half of its generations) would rest on one
#: generation, little more than its start.
MIN_POLISH_GENERATIONS = 3
#: A refinement with time for fewer polls of every direction than this is
#: left out (a pattern search moves only after a full poll).
MIN_REFINE_SWEEPS = 1


def phases_left_out(recipe, time_left, trial_seconds, n_jobs, n_params, generation_size):
    """The local phases of ``recipe`` that its time cannot make worth running.

    Parameters
    ----------
    recipe : Recipe
    time_left : float
        Seconds for the phases (the budget less the check's).
    trial_seconds : float
        Seconds of one trial at the search's step, run alone.
    n_jobs : int
        Evaluations run at once.
    n_params : int
        Parameters the local phases fit.
    generation_size : int | None
        Points per CMA-ES generation of the polish (the solver's own count,
        :attr:`~hnnfit.fit.solvers.CmaSolver.generation_size`).

    Returns
    -------
    dict
        ``{phase name: why}`` of the phases to leave out, the last ones
        first: a polish with time for fewer than
        :data:`MIN_POLISH_GENERATIONS` generations, a refinement with time
        for fewer than :data:`MIN_REFINE_SWEEPS` polls. The phases kept
        share their time.
    """
    kept = list(recipe.phases)
    out = {}
    for phase in reversed(recipe.phases):
        if phase.name not in ("polish", "refine"):
            continue
        share = phase.share / sum(p.share for p in kept)
        seconds = time_left * share
        one_eval = trial_seconds * phase.n_trials
        if phase.name == "polish":
            unit, need, what = generation_size, MIN_POLISH_GENERATIONS, \
                "CMA-ES generation(s)"
        else:
            unit, need, what = 2 * n_params, MIN_REFINE_SWEEPS, "poll(s) of every direction"
        need = need if phase.min_rounds is None else phase.min_rounds
        fits = seconds / (math.ceil(unit / n_jobs) * one_eval)
        if fits < need:
            out[phase.name] = (f"its share ({seconds / 60:.1f} min) has time for "
                               f"{fits:.1f} {what}; it needs {need}")
            kept.remove(phase)
    return out


def split_time(total, phases, elapsed, reserve=0.0):
    """The time allotted to each phase still to run.

    Parameters
    ----------
    total : float
        The recipe's budget (s).
    phases : sequence of Phase
    elapsed : dict
        ``{phase name: (seconds used, done)}`` of the phases that have run.
    reserve : float
        Seconds set aside for the final check.

    Returns
    -------
    dict
        ``{phase name: seconds}`` for each phase not done: the time left
        (the budget less the reserve and the time every phase has used)
        shared in proportion to these phases' shares, plus what each has
        already used. A phase past its time gets what it used.
    """
    total = check_number(total, "total", low=0.0)
    used = sum(e[0] for e in elapsed.values())
    left = max(0.0, total - reserve - used)
    todo = [p for p in phases if not elapsed.get(p.name, (0.0, False))[1]]
    shares = sum(p.share for p in todo)
    return {p.name: elapsed.get(p.name, (0.0, False))[0] + left * p.share / shares
            for p in todo}


def with_structure_search(recipe, rounds=1):
    """``recipe`` with a structure search of up to ``rounds`` rounds after its search.

    The first round gets :data:`STRUCTURE_SHARE` of the time and each
    further round :data:`STRUCTURE_ROUND_SHARE`; the other phases keep
    their proportions in the rest. A round that does not run (the one
    before kept no drive) leaves its time to the phases after it.
    """
    if any(structure_round(p.name) for p in recipe.phases):
        return recipe
    if not (isinstance(rounds, int) and 1 <= rounds <= MAX_NEW_DRIVES):
        raise ValueError(f"rounds must be an integer from 1 to {MAX_NEW_DRIVES}, "
                         f"got {rounds!r}")
    shares = [STRUCTURE_SHARE] + [STRUCTURE_ROUND_SHARE] * (rounds - 1)
    rest = sum(p.share for p in recipe.phases)
    phases = []
    for p in recipe.phases:
        phases.append(Phase(p.name, p.share / rest * (1 - sum(shares)), p.options,
                            p.n_trials, p.min_rounds))
        if p.name == "search":
            phases.extend(Phase(structure_phase_name(r + 1), share)
                          for r, share in enumerate(shares))
    return Recipe(recipe.name, recipe.summary, tuple(phases), recipe.search_dt,
                  recipe.check_trials)
