"""Fitting recipes: durations, how a time budget is split among phases, a
recipe run within its time on an analytic objective, and a recipe resumed in
the middle of a phase."""
import json
import math
import time

import numpy as np
import pytest

from hnnfit.config import FitSetup, SolverConfig
from hnnfit.fit import DipoleObjective, Parameter, ParameterSpace, Study, Target
from hnnfit.fit.recipe_runner import (RECIPE_KEY, TREND_GENERATIONS, RecipeReport,
                                      recipe_record, run_recipe)
from hnnfit.fit.recipes import (MAX_NEW_DRIVES, MIN_POLISH_GENERATIONS, RECIPES,
                                STRUCTURE_ROUND_SHARE, STRUCTURE_SHARE, Phase, Recipe,
                                get_recipe, new_drive_limit,
                                parse_duration, phases_left_out, split_time,
                                structure_round, with_structure_search)
from hnnfit.network import jones_2009_model

TIMES = np.arange(0.0, 170.0 + 1e-9, 0.5)


# -- durations and the split of a budget ---------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    ("45m", 2700.0), ("1h30m", 5400.0), ("90s", 90.0), ("2.5h", 9000.0),
    ("1h 5m 3s", 3903.0), ("20min", 1200.0), ("120", 120.0), (60, 60.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "10 days", "-5m", "0s", "m", float("nan"), True])
def test_parse_duration_refuses_what_is_not_a_positive_duration(bad):
    with pytest.raises((ValueError, TypeError), match="time must be"):
        parse_duration(bad)


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match=r"recipe must be one of 'erp', .* got 'fast'"):
        get_recipe("fast")


PHASES = (Phase("search", 0.5), Phase("polish", 0.3), Phase("refine", 0.2))


def test_split_time_shares_the_budget_after_the_reserve():
    got = split_time(1000.0, PHASES, {}, reserve=100.0)
    assert got == pytest.approx({"search": 450.0, "polish": 270.0, "refine": 180.0})


def test_split_time_gives_a_phase_that_ended_early_its_time_to_the_next():
    # the search used 300 s of its 450: the 600 s left go 60:40 to the others
    got = split_time(1000.0, PHASES, {"search": (300.0, True)}, reserve=100.0)
    assert got == pytest.approx({"polish": 360.0, "refine": 240.0})
    assert sum(got.values()) + 300.0 + 100.0 == pytest.approx(1000.0)


def test_split_time_of_a_phase_in_progress_counts_what_it_used():
    # interrupted after 100 s of the polish: it gets its used time plus its share
    got = split_time(1000.0, PHASES, {"search": (450.0, True), "polish": (100.0, False)},
                     reserve=100.0)
    assert got == pytest.approx({"polish": 100.0 + 350.0 * 0.6, "refine": 350.0 * 0.4})


def test_split_time_past_the_budget_leaves_nothing_more():
    got = split_time(100.0, PHASES, {"search": (150.0, True)})
    assert got == {"polish": 0.0, "refine": 0.0}


# -- a recipe on an analytic objective ------------------------------------------------
# The objective is replaced by a smooth function of the drive parameters that
# takes EVAL_S seconds, so the recipe's clock, budgets and resume are exercised
# without NEURON.
OPTIMUM = {"evprox1.mu": 28.0, "evdist1.mu": 60.0, "evprox2.mu": 125.0}
EVAL_S = 0.05
CALLS = []


def _fake_call(self, params, seeds=None):
    vals = self.space.check_values(params)
    time.sleep(EVAL_S)
    CALLS.append({"params": dict(vals), "seeds": list(seeds or self.seeds),
                  "dt": self.dt})
    polish_calls = [c for c in CALLS if 1000 <= c["seeds"][0] < 2000]
    if _fake_call.interrupt_at is not None and len(polish_calls) == _fake_call.interrupt_at:
        raise KeyboardInterrupt
    value = sum(((vals[n] - OPTIMUM[n]) / 10.0) ** 2 for n in OPTIMUM if n in vals)
    # trial noise: each seed moves the value a little
    value += 0.01 * sum(math.sin(s) for s in (seeds or self.seeds))
    return {"value": float(value), "scale": 1.0, "seeds": list(seeds or self.seeds),
            "n_trials": len(seeds or self.seeds), "sim_s": EVAL_S,
            "dipole": np.zeros(len(self.target.times))}


def _fake_budget(self, params, seeds, k=None, n_jobs=1):
    vals = self.space.check_values(params)
    CALLS.append({"params": dict(vals), "seeds": list(seeds), "dt": self.dt,
                  "check": True})
    rng = np.random.default_rng(len(seeds))
    trials = rng.normal(0.0, 1.0, (len(seeds), len(self.target.times)))
    return {"expected": 1.0, "bias2": 0.5, "var": 1.5, "k": k, "trials": trials,
            "group_rmse": np.ones(3)}


@pytest.fixture
def fake_objective(monkeypatch):
    # the solvers' libraries load before the clock starts: a budget of
    # seconds here stands for one of minutes, where loading them is nothing
    import cma  # noqa: F401
    import skopt  # noqa: F401

    CALLS.clear()
    _fake_call.interrupt_at = None
    monkeypatch.setattr(DipoleObjective, "__call__", _fake_call)
    monkeypatch.setattr(DipoleObjective, "error_budget", _fake_budget)
    return CALLS


def _setup():
    net = jones_2009_model(mesh_shape=(3, 3))
    for name, mu, loc in (("evprox1", 26.0, "proximal"), ("evdist1", 63.0, "distal"),
                          ("evprox2", 120.0, "proximal")):
        net.add_evoked_drive(name, mu=mu, sigma=3.0, numspikes=1, location=loc,
                             weights_ampa={"L2_pyramidal": 0.02, "L5_pyramidal": 0.02},
                             synaptic_delays=1.0, event_seed=4)
    space = ParameterSpace([Parameter("evprox1.mu", 18.0, 36.0),
                            Parameter("evdist1.mu", 50.0, 75.0),
                            Parameter("evprox2.mu", 100.0, 140.0)])
    return FitSetup(net=net, target=Target(TIMES, np.zeros_like(TIMES)), space=space,
                    objective={"smooth_window": 20.0, "n_trials": 1, "seeds": [0]},
                    solver=SolverConfig(seed=0))


# every phase runs however short its time (min_rounds=0): these tests follow
# the mechanics of each phase on budgets of seconds
TEST_RECIPE = Recipe("erp-refine", "test", (
    Phase("search", 0.5), Phase("polish", 0.3, {"sigma0": 0.1}, min_rounds=0),
    Phase("refine", 0.2, {"step": 0.05}, n_trials=6, min_rounds=0)), check_trials=6)


def test_a_recipe_runs_its_phases_within_its_time(tmp_path, fake_objective):
    budget = 8.0
    t0 = time.monotonic()
    report = run_recipe(_setup(), tmp_path / "fit.sqlite", TEST_RECIPE, budget,
                        progress=False, out=lambda line: None)
    wall = time.monotonic() - t0
    assert [p["name"] for p in report.phases] == ["search", "polish", "refine"]
    # within its time, give or take one batch of evaluations and the start
    # measurement (two evaluations)
    assert wall < budget + 1.5
    assert wall > 0.6 * budget
    record = recipe_record(Study.load(tmp_path / "fit.sqlite", readonly=True).storage)
    used = sum(p["seconds"] for p in record["phases"].values())
    assert used + record["check"]["seconds"] < budget + 1.0
    # every phase had time and used it: each at least a quarter of its share
    shares = {p.name: p.share for p in TEST_RECIPE.phases}
    for ph in report.phases:
        assert ph["n_evals"] >= 2
        assert ph["seconds"] > 0.25 * shares[ph["name"]] * (budget - 6 * 2 * EVAL_S)
    # the search ran at the coarse step, the check at the fit's own
    search_dts = {c["dt"] for c in CALLS[:2]}
    assert search_dts == {0.05}
    check = [c for c in CALLS if c.get("check")]
    assert len(check) == 1 and check[0]["dt"] == 0.025
    assert check[0]["seeds"] == list(range(100, 106))
    # the polish ran on new trials each generation, the refinement on fixed ones
    polish = Study.load(tmp_path / "fit_polish.sqlite", readonly=True)
    seeds = polish.evaluations["seeds"].map(tuple)
    assert seeds.nunique() == polish.evaluations["batch"].nunique() > 1
    refine = Study.load(tmp_path / "fit_refine.sqlite", readonly=True)
    assert refine.evaluations["seeds"].map(tuple).nunique() == 1
    # the polish's generation means, one per batch, in order
    done = polish.evaluations[polish.evaluations["status"] == "complete"]
    by_batch = done.groupby("batch")["value"].mean()
    (polish_phase,) = [p for p in report.phases if p["name"] == "polish"]
    assert polish_phase["generation_means"] == pytest.approx(list(by_batch.values))
    assert "generation_means" not in report.phases[0]
    # the report: the point kept, each phase's numbers, the held-out split
    assert set(report.params) == set(_setup().space.names)
    assert report.expected == 1.0 and report.bias2 == 0.5 and report.var == 1.5
    assert len(report.group_rmse) == 2 and report.held_out == report.group_rmse[0]
    text = "\n".join(report.lines())
    assert "expected RMSE of a 3-trial average: 1.000" in text
    for name in ("search", "polish", "refine"):
        assert name in text


def test_the_report_compares_a_polish_s_first_and_last_generations():
    def report(means):
        return RecipeReport(recipe="erp", time_budget=60.0, params={}, phases=[
            {"name": "polish", "study": "p.sqlite", "n_evals": 6 * len(means),
             "seconds": 30.0, "best_value": 1.0, "generation_means": means}])

    # 20 generations: a quarter (5) at each end
    means = [20.0 - i for i in range(20)]
    (line,) = [t for t in report(means).lines() if "mean score of a generation" in t]
    assert line == ("polish: mean score of a generation, first 5: 18.000, last 5: 3.000 "
                    "nAm (of 20; each on new trials)")
    # 8 generations: at least TREND_GENERATIONS at each end
    (line,) = [t for t in report(means[:8]).lines() if "mean score" in t]
    assert f"first {TREND_GENERATIONS}: 18.500, last {TREND_GENERATIONS}: 14.500" in line
    # fewer: no trend to show
    assert not [t for t in report(means[:7]).lines() if "mean score" in t]


def test_a_longer_budget_buys_more_evaluations(tmp_path, fake_objective):
    short = run_recipe(_setup(), tmp_path / "a.sqlite", TEST_RECIPE, 5.0,
                       progress=False, out=lambda line: None)
    long = run_recipe(_setup(), tmp_path / "b.sqlite", TEST_RECIPE, 10.0,
                      progress=False, out=lambda line: None)
    n_short = sum(p["n_evals"] for p in short.phases)
    n_long = sum(p["n_evals"] for p in long.phases)
    assert n_long > 1.4 * n_short


def test_a_recipe_resumes_in_the_middle_of_a_phase(tmp_path, fake_objective):
    path = tmp_path / "fit.sqlite"
    setup = _setup()
    run = _runs_until_interrupted(setup, path)
    polish_path = tmp_path / "fit_polish.sqlite"
    before = Study.load(polish_path, readonly=True).evaluations
    n_search = len(Study.load(path, readonly=True).evaluations)
    record = recipe_record(Study.load(path, readonly=True).storage)
    assert record["phases"]["search"]["done"]
    assert not record["phases"]["polish"]["done"]
    used_before = record["phases"]["polish"]["seconds"]
    assert used_before > 0
    CALLS.clear()
    report = run_recipe(setup, path, TEST_RECIPE, 8.0, progress=False,
                        out=lambda line: None)
    # the search is not run again, and neither is what the polish finished
    assert len(Study.load(path, readonly=True).evaluations) == n_search
    after = Study.load(polish_path, readonly=True).evaluations
    done_before = before[before["status"] == "complete"]
    assert len(after) > len(done_before)
    # the replayed polish goes on exactly where it was: same points, same seeds
    assert len(done_before) == 2
    assert (after["seeds"].iloc[:len(done_before)].tolist()
            == done_before["seeds"].tolist())
    names = setup.space.names
    np.testing.assert_array_equal(after[names].iloc[:len(done_before)].to_numpy(),
                                  done_before[names].to_numpy())
    first_new = CALLS[0]
    pending = before[before["status"] != "complete"]
    # the evaluation interrupted is the first one run again
    if len(pending):
        assert first_new["params"] == pytest.approx(
            {n: pending[n].iloc[0] for n in names})
    record = recipe_record(Study.load(path, readonly=True).storage)
    assert record["phases"]["polish"]["seconds"] > used_before
    assert record["phases"]["polish"]["done"] and record["phases"]["refine"]["done"]
    assert [p["name"] for p in report.phases] == ["search", "polish", "refine"]
    assert run == "interrupted"


def _runs_until_interrupted(setup, path):
    """Run the recipe with an interruption at the polish's third evaluation."""
    _fake_call.interrupt_at = 3
    with pytest.raises(KeyboardInterrupt):
        run_recipe(setup, path, TEST_RECIPE, 8.0, progress=False, out=lambda line: None)
    _fake_call.interrupt_at = None
    return "interrupted"


def test_a_recipe_study_refuses_another_recipe(tmp_path, fake_objective):
    path = tmp_path / "fit.sqlite"
    run_recipe(_setup(), path, Recipe("search", "test", (Phase("search", 1.0),),
                                      check_trials=6), 2.0,
               progress=False, out=lambda line: None)
    from hnnfit.exceptions import StudyError

    with pytest.raises(StudyError, match="fitted with the recipe 'search'"):
        run_recipe(_setup(), path, TEST_RECIPE, 2.0, progress=False,
                   out=lambda line: None)
    raw = Study.load(path, readonly=True).storage.get_metadata(RECIPE_KEY)
    assert json.loads(raw)["name"] == "search"


def test_the_named_recipes_are_well_formed():
    assert "erp" in RECIPES
    for name, recipe in RECIPES.items():
        assert recipe.name == name and recipe.summary
        assert recipe.phases[0].name == "search"
        assert all(p.share > 0 for p in recipe.phases)


# -- structure search rounds ------------------------------------------------------------
def test_structure_rounds_follow_the_search_with_their_shares():
    erp = RECIPES["erp"]
    one = with_structure_search(erp)
    assert [p.name for p in one.phases] == ["search", "structure", "polish"]
    two = with_structure_search(erp, 2)
    assert [p.name for p in two.phases] == ["search", "structure", "structure-2", "polish"]
    shares = {p.name: p.share for p in two.phases}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["structure"] == STRUCTURE_SHARE
    assert shares["structure-2"] == STRUCTURE_ROUND_SHARE
    # the recipe's own phases keep their proportions in the rest
    assert shares["search"] / shares["polish"] == pytest.approx(
        erp.phases[0].share / erp.phases[1].share)
    assert [structure_round(p.name) for p in two.phases] == [None, 1, 2, None]
    # adding a structure search twice changes nothing
    assert with_structure_search(two, 2) == two
    with pytest.raises(ValueError, match=f"rounds must be an integer from 1 to "
                                         f"{MAX_NEW_DRIVES}, got 4"):
        with_structure_search(erp, MAX_NEW_DRIVES + 1)


def test_a_round_that_does_not_run_leaves_its_time_to_the_polish():
    two = with_structure_search(RECIPES["erp"], 2).phases
    elapsed = {"search": (400.0, True), "structure": (300.0, True),
               "structure-2": (1.0, True)}
    allotted = split_time(1000.0, two, elapsed)
    assert allotted == {"polish": pytest.approx(299.0)}


@pytest.mark.parametrize("value, limit", [("none", 0), ("auto", 1), (2, 2), ("3", 3),
                                          (0, 0)])
def test_new_drive_limit(value, limit):
    assert new_drive_limit(value) == limit


@pytest.mark.parametrize("bad", ["many", 4, -1, True, 1.5, "2 drives"])
def test_new_drive_limit_names_a_bad_value(bad):
    with pytest.raises(ValueError, match=f"add_drives must be 'auto', 'none' or a number "
                                         f"of drives from 0 to 3, got {bad!r}"):
        new_drive_limit(bad)


def test_run_recipe_refuses_more_drives_than_allowed(tmp_path):
    with pytest.raises(ValueError, match="add_drives must be <= 3, got 4"):
        run_recipe(_setup(), tmp_path / "x.sqlite", TEST_RECIPE, 2.0, progress=False,
                   out=lambda line: None, add_drives=4)
    assert not (tmp_path / "x.sqlite").exists()


# -- phases the time cannot pay for ------------------------------------------------------
def test_a_polish_without_time_for_its_generations_is_left_out():
    recipe = Recipe("r", "test", (Phase("search", 0.6), Phase("polish", 0.4)))
    assert MIN_POLISH_GENERATIONS == 3
    # 12 points on 2 jobs: 6 rounds of a 3-trial evaluation of 3 s = 54 s a
    # generation; the polish's 40% of 300 s makes 2.2 of them
    left = phases_left_out(recipe, 300.0, 3.0, 2, 20, 12)
    assert list(left) == ["polish"]
    assert "has time for 2.2 CMA-ES generation(s); it needs 3" in left["polish"]
    # 3 generations fit in 40% of 405 s or more
    assert phases_left_out(recipe, 410.0, 3.0, 2, 20, 12) == {}
    assert phases_left_out(recipe, 400.0, 3.0, 2, 20, 12).keys() == {"polish"}
    # min_rounds=0 always runs it; a larger one asks for more
    keep = Recipe("k", "t", (Phase("search", 0.6), Phase("polish", 0.4, min_rounds=0)))
    assert phases_left_out(keep, 10.0, 3.0, 2, 20, 12) == {}
    more = Recipe("m", "t", (Phase("search", 0.6), Phase("polish", 0.4, min_rounds=10)))
    assert phases_left_out(more, 1340.0, 3.0, 2, 20, 12).keys() == {"polish"}
    assert phases_left_out(more, 1360.0, 3.0, 2, 20, 12) == {}


def test_the_polish_is_judged_by_its_own_generation_size(tmp_path, fake_objective):
    # on 3 parameters CMA-ES draws 7 points a generation: 3 generations of
    # 3-trial evaluations of 0.05 s take 3.15 s, more than the polish's 40% of
    # the roughly 4.3 s left of 5 s; 2 points a generation take 0.9 s
    def left_out(options, path):
        recipe = Recipe("erp", "test", (Phase("search", 0.6),
                                        Phase("polish", 0.4, options)), check_trials=6)
        return run_recipe(_setup(), path, recipe, 5.0, progress=False,
                          out=lambda line: None).left_out

    assert list(left_out({}, tmp_path / "a.sqlite")) == ["polish"]
    assert left_out({"popsize": 2}, tmp_path / "b.sqlite") == {}


class _MemoryStorage:
    """Metadata kept in memory: what a recipe's record needs of a storage."""

    path = "memory"

    def __init__(self):
        self.meta = {}

    def get_metadata(self, key):
        return self.meta.get(key)

    def set_metadata(self, key, value):
        self.meta[key] = value


def test_a_kept_drive_judges_the_polish_again_on_the_widened_space():
    from hnnfit.fit.recipe_runner import _left_out_after_structure, _Record

    recipe = Recipe("erp", "t", (Phase("search", 0.5), Phase("structure", 0.2),
                                 Phase("polish", 0.3)))
    polish = recipe.phases[-1]
    search = [Parameter("evprox1.mu", 18.0, 36.0), Parameter("evdist1.mu", 50.0, 75.0),
              Parameter("evprox2.mu", 100.0, 140.0)]
    drive = [Parameter(f"evprox3.{n}", 1.0, 2.0) for n in
             ("mu", "sigma", "ampa.L2_pyramidal", "ampa.L5_pyramidal", "ampa.L2_basket")]

    def record(total):
        # 3 s a trial, 2 jobs, 3 trials an evaluation: 9 s a round; 120 s left
        rec = _Record(_MemoryStorage(), recipe, total, 2)
        rec.data.update(eval_seconds=9.0, search_trials=3, left_out={})
        rec.data["phases"] = {"search": {"seconds": 300.0, "done": True},
                              "structure": {"seconds": 180.0, "done": True}}
        return rec

    # on the search's 3 parameters CMA-ES draws 7 points (4 rounds, 36 s): 3.3
    # generations fit; with the drive's 5 more it draws 10 (5 rounds, 45 s): 2.7
    assert phases_left_out(Recipe("p", "t", (polish,)), 120.0, 3.0, 2, 3, 7) == {}
    rec = record(620.0)
    assert _left_out_after_structure(recipe, polish, rec, 620.0, 20.0, 2, search,
                                     grown=False) is None
    why = _left_out_after_structure(recipe, polish, rec, 620.0, 20.0, 2, search + drive,
                                    grown=True)
    assert "has time for 2.7 CMA-ES generation(s); it needs 3" in why
    # recorded with the first decision, so that a resumed recipe leaves it out
    saved = json.loads(rec.storage.meta[RECIPE_KEY])
    assert saved["left_out"] == {"polish": why}
    # judged once: a decision to run it stands when the time is later shorter
    rec = record(720.0)
    assert _left_out_after_structure(recipe, polish, rec, 720.0, 20.0, 2, search + drive,
                                     grown=True) is None
    assert _left_out_after_structure(recipe, polish, rec, 320.0, 20.0, 2, search + drive,
                                     grown=True) is None
    assert rec.data["left_out"] == {}


def test_a_refinement_left_out_gives_its_time_to_the_polish():
    recipe = RECIPES["erp-refine"]     # search 0.5, polish 0.3, refine 0.2 on 12 trials
    # one poll of 20 parameters: 40 evaluations of 12 trials of 3 s on 2 jobs =
    # 720 s, more than the refinement's 20% of 3000 s; without it the polish
    # has 0.3 / 0.8 of the time: 1125 s, 20.8 generations of 54 s
    left = phases_left_out(recipe, 3000.0, 3.0, 2, 20, 12)
    assert list(left) == ["refine"]
    assert "poll(s) of every direction; it needs 1" in left["refine"]
    assert phases_left_out(recipe, 3700.0, 3.0, 2, 20, 12) == {}


def test_a_short_budget_runs_the_search_alone_and_says_why(tmp_path, fake_objective):
    lines = []
    recipe = Recipe("erp", "test", (Phase("search", 0.6), Phase("polish", 0.4)),
                    check_trials=6)
    report = run_recipe(_setup(), tmp_path / "fit.sqlite", recipe, 4.0, progress=False,
                        out=lines.append)
    assert [p["name"] for p in report.phases] == ["search"]
    assert list(report.left_out) == ["polish"]
    assert not (tmp_path / "fit_polish.sqlite").exists()
    assert any(line.startswith("polish: left out, its share") for line in lines)
    assert any(line.startswith("polish   ") and "left out" in line
               for line in report.lines())
    # the search had the whole time: well over the 60% it would share
    assert report.phases[0]["seconds"] > 0.7 * (4.0 - 6 * EVAL_S)
    # the decision is kept: resumed with a longer budget, it still runs alone
    again = run_recipe(_setup(), tmp_path / "fit.sqlite", recipe, 60.0, progress=False,
                       out=lambda line: None)
    assert list(again.left_out) == ["polish"]
