"""Fitting recipes: named pipelines of the fitting parts, run within a wall-time budget.

A recipe runs its phases one after the other, each an ordinary study file:

``search``
    a staged Bayesian fit (:mod:`hnnfit.fit.staging`): one stage per group
    of evoked drives on the part of the waveform it shapes, then every
    parameter on the whole waveform; at a coarse time step (0.05 ms) when
    the fit's own is finer, which halves the cost of an evaluation;
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
until their time is used up or their solver stops. What was decided and the
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
           "split_time", "with_structure_search", "STRUCTURE_SHARE"]

#: Share of the time a structure search takes from a recipe's others.
STRUCTURE_SHARE = 0.35


@dataclass(frozen=True)
class Phase:
    """One phase of a recipe.

    Attributes
    ----------
    name : {'search', 'polish', 'refine'}
        What the phase does (see the module's description).
    share : float
        Its share of the time (> 0), relative to the other phases'.
    options : dict
        Solver options (CMA-ES' ``sigma0``, the pattern search's ``step``).
    n_trials : int
        Trials per evaluation (the polish's and refinement's are averaged in
        groups of 3).
    """

    name: str
    share: float
    options: dict = field(default_factory=dict)
    n_trials: int = 3


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
        (Phase("search", 0.6), Phase("polish", 0.4, {"sigma0": 0.08}))),
    "erp-refine": Recipe(
        "erp-refine", "as 'erp', then a pattern search on 12 fixed trials from the "
        "polished point (for budgets of an hour or more)",
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


def with_structure_search(recipe):
    """``recipe`` with a structure search after its search.

    The structure phase gets :data:`STRUCTURE_SHARE` of the time; the other
    phases keep their proportions in the rest.
    """
    if any(p.name == "structure" for p in recipe.phases):
        return recipe
    rest = sum(p.share for p in recipe.phases)
    phases = []
    for p in recipe.phases:
        phases.append(Phase(p.name, p.share / rest * (1 - STRUCTURE_SHARE), p.options,
                            p.n_trials))
        if p.name == "search":
            phases.append(Phase("structure", STRUCTURE_SHARE))
    return Recipe(recipe.name, recipe.summary, tuple(phases), recipe.search_dt,
                  recipe.check_trials)
