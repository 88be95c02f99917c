"""Ask/tell solvers on analytic functions (no simulation)."""
import math
import sys

import numpy as np
import pytest

from hnnfit.fit.solvers import SOLVERS, make_solver, solver_from_settings
from hnnfit.fit.space import Parameter, ParameterSpace

# the optimum (mu=131, sigma=4.5) is inside bounds of very different widths
SPACE = ParameterSpace([Parameter("evprox2.mu", 100.0, 150.0),
                        Parameter("evprox2.sigma", 1.0, 20.0)])


def quadratic(p):
    return ((p["evprox2.mu"] - 131.0) / 10.0) ** 2 + ((p["evprox2.sigma"] - 4.5) / 2.0) ** 2


def _run(solver, f, n_evals, batch=1):
    points, values = [], []
    while len(points) < n_evals and not solver.is_done:
        asked = solver.ask(min(batch, n_evals - len(points)))
        if not asked:
            break
        vals = [f(p) for p in asked]
        solver.tell(asked, vals)
        points.extend(asked)
        values.extend(vals)
    return points, values


def _inside(space, points):
    for p in points:
        for par in space:
            assert par.low <= p[par.name] <= par.high, (par.name, p[par.name])


@pytest.mark.parametrize("name, n_evals, batch, tol, opts", [
    ("cobyla", 60, 1, 1e-3, {}),
    ("bayesian", 20, 2, 0.3, {"n_initial_points": 6, "acq_optimizer": "sampling"}),
])
def test_solvers_stay_in_bounds_and_improve(name, n_evals, batch, tol, opts):
    x0 = {"evprox2.mu": 105.0, "evprox2.sigma": 18.0}
    solver = make_solver(name, SPACE, x0=x0, seed=1, **opts)
    points, values = _run(solver, quadratic, n_evals, batch)
    assert points[0] == x0  # the start point is evaluated first
    _inside(SPACE, points)
    assert min(values) < values[0] / 20
    assert min(values) < tol
    best = points[int(np.argmin(values))]
    assert abs(best["evprox2.mu"] - 131.0) < 10 * math.sqrt(tol) * 1.5


def test_cobyla_respects_bounds_when_optimum_outside():
    # the unconstrained minimum lies beyond both upper bounds
    def f(p):
        return (p["evprox2.mu"] - 400.0) ** 2 / 100 + (p["evprox2.sigma"] - 60.0) ** 2

    points, values = _run(make_solver("cobyla", SPACE, seed=0), f, 80)
    _inside(SPACE, points)
    best = points[int(np.argmin(values))]
    assert best["evprox2.mu"] == pytest.approx(150.0, abs=0.1)
    assert best["evprox2.sigma"] == pytest.approx(20.0, abs=0.05)


def test_cobyla_steps_are_relative_to_each_range():
    x0 = {"evprox2.mu": 120.0, "evprox2.sigma": 10.0}
    solver = make_solver("cobyla", SPACE, x0=x0, rhobeg=0.2)
    points, _ = _run(solver, quadratic, 3)
    # the first moves are rhobeg times each parameter's own range
    steps = [abs(points[1]["evprox2.mu"] - 120.0), abs(points[2]["evprox2.sigma"] - 10.0)]
    assert steps == pytest.approx([0.2 * 50.0, 0.2 * 19.0])


def test_cobyla_replay_matches_uninterrupted_scipy_run():
    from scipy.optimize import minimize

    seen = []

    def f_unit(u):
        u = np.clip(u, 0, 1)
        p = SPACE.from_unit(u)
        seen.append(p)
        return quadratic(p)

    x0 = {"evprox2.mu": 140.0, "evprox2.sigma": 2.0}
    minimize(f_unit, SPACE.to_unit(x0), method="COBYLA", bounds=[(0, 1)] * 2,
             options={"rhobeg": 0.25, "tol": 1e-3, "maxiter": 100000})
    # distinct points in scipy's own order
    expected = []
    for p in seen:
        if p not in expected:
            expected.append(p)
    solver = make_solver("cobyla", SPACE, x0=x0, rhobeg=0.25, rhoend=1e-3)
    points, _ = _run(solver, quadratic, 10 ** 4)
    assert solver.is_done
    assert points == expected
    assert solver.ask(1) == []


def test_cobyla_resume_by_replay_is_identical():
    full = make_solver("cobyla", SPACE, seed=0)
    ref_points, ref_values = _run(full, quadratic, 25)
    # a new solver told the first 12 results proposes the 13th point
    part = solver_from_settings(SPACE, full.settings())
    for p, v in zip(ref_points[:12], ref_values[:12]):
        asked = part.ask(1)
        assert asked == [p]
        part.tell(asked, [v])
    assert part.ask(1) == [ref_points[12]]


@pytest.mark.parametrize("name", ["bayesian", "cobyla"])
def test_seeded_runs_repeat_exactly(name):
    opts = ({"n_initial_points": 4, "acq_optimizer": "sampling", "n_points": 1000}
            if name == "bayesian" else {})
    a, va = _run(make_solver(name, SPACE, seed=7, **opts), quadratic, 8, batch=2)
    b, vb = _run(make_solver(name, SPACE, seed=7, **opts), quadratic, 8, batch=2)
    assert a == b and va == vb


def test_bayesian_seed_changes_proposals():
    a, _ = _run(make_solver("bayesian", SPACE, seed=1), quadratic, 6, batch=2)
    b, _ = _run(make_solver("bayesian", SPACE, seed=2), quadratic, 6, batch=2)
    assert a[0] == b[0]  # both start at the centre
    assert a[1:] != b[1:]


def test_integer_and_log_parameters():
    space = ParameterSpace([Parameter("d.n", 1, 5, integer=True),
                            Parameter("d.w", 1e-4, 1.0, log=True)])

    def f(p):
        return (p["d.n"] - 3) ** 2 + (math.log10(p["d.w"]) + 2.0) ** 2

    for name, opts in (("bayesian", {"n_initial_points": 5, "acq_optimizer": "sampling"}),
                       ("cobyla", {})):
        points, values = _run(make_solver(name, space, seed=3, **opts), f, 14)
        _inside(space, points)
        assert all(isinstance(p["d.n"], int) for p in points)
        best = points[int(np.argmin(values))]
        assert best["d.n"] == 3
        assert 1e-3 < best["d.w"] < 1e-1


def test_start_point_outside_bounds_is_clipped():
    solver = make_solver("cobyla", SPACE, x0={"evprox2.mu": 200.0, "evprox2.sigma": 0.5})
    assert solver.ask(1) == [{"evprox2.mu": 150.0, "evprox2.sigma": 1.0}]


def test_errors():
    with pytest.raises(ValueError,
                       match="solver must be one of 'bayesian', 'cobyla', 'cma', 'pattern'"):
        make_solver("nelder-mead", SPACE)
    assert SOLVERS == ("bayesian", "cobyla", "cma", "pattern")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        make_solver("bayesian", SPACE, seed=-1)
    with pytest.raises(ValueError, match="x0 must give a value for every parameter"):
        make_solver("cobyla", SPACE, x0={"evprox2.mu": 120.0})
    solver = make_solver("cobyla", SPACE)
    with pytest.raises(ValueError, match="must be points it asked for"):
        solver.tell([{"evprox2.mu": 120.0, "evprox2.sigma": 3.0}], [1.0])
    asked = solver.ask(1)
    with pytest.raises(ValueError, match="one entry per point"):
        solver.tell(asked, [1.0, 2.0])


def test_cma_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cma", None)  # makes `import cma` fail
    with pytest.raises(ImportError, match=r"pip install hnnfit\[cma\]"):
        make_solver("cma", SPACE)


def test_cma_stays_in_bounds_improves_and_repeats():
    # the optional CMA-ES solver (the [cma] extra, installed by CI)
    x0 = {"evprox2.mu": 105.0, "evprox2.sigma": 18.0}
    runs = []
    for _ in range(2):
        solver = make_solver("cma", SPACE, x0=x0, seed=3, popsize=6)
        runs.append(_run(solver, quadratic, 90, batch=6))
    points, values = runs[0]
    _inside(SPACE, points)
    assert min(values) < 0.05
    assert runs[0] == runs[1]  # seeded runs repeat exactly


def test_cma_generation_means():
    solver = make_solver("cma", SPACE, x0={"evprox2.mu": 105.0, "evprox2.sigma": 18.0},
                         seed=3, popsize=6)
    assert solver.generation_size == 6
    assert solver.mean == pytest.approx({"evprox2.mu": 105.0, "evprox2.sigma": 18.0})
    for no_generation_yet in (solver.averaged_mean, solver.averaging_window):
        with pytest.raises(ValueError, match="needs at least one completed generation"):
            no_generation_yet()
    # a generation half told is not one: no mean recorded yet
    asked = solver.ask(3)
    solver.tell(asked, [quadratic(p) for p in asked])
    assert solver.means == []
    _run(solver, quadratic, 87, batch=3)
    means = solver.means
    assert len(means) == 15 and means[-1] == solver.mean
    # the mean moves from the start (quadratic 52) near the optimum, and it is
    # the point CMA-ES reports as its estimate
    assert quadratic(solver.mean) < 0.5
    assert solver.mean == pytest.approx(
        SPACE.from_unit(np.clip(solver._es.result.xfavorite, 0.0, 1.0)))
    # averages on the unit cube, over the last k generations (default: half)
    assert solver.averaged_mean(1) == solver.mean
    assert solver.averaging_window() == 7
    half = np.mean([SPACE.to_unit(m) for m in means[-7:]], axis=0)
    assert solver.averaged_mean() == pytest.approx(SPACE.from_unit(half))
    whole = np.mean([SPACE.to_unit(m) for m in means], axis=0)
    assert solver.averaged_mean(15) == pytest.approx(SPACE.from_unit(whole))
    with pytest.raises(ValueError, match="last must be >= 1, got 0"):
        solver.averaged_mean(0)
    # more generations than were run: an error, not a silent average of all
    with pytest.raises(ValueError, match="last must be <= 15, got 16"):
        solver.averaged_mean(16)


def _pipelined(seed, n_evals=10):
    # two evaluations in flight: each new point is asked while the previous
    # one is still pending, as the pipelined driver does
    solver = make_solver("bayesian", SPACE, seed=seed, n_initial_points=3,
                         acq_optimizer="sampling", n_points=500)
    points, values, pending = [], [], []
    while len(points) < n_evals:
        lie = min(values) if values else 0.0
        p = solver.ask_with_pending(list(pending), lie)
        pending.append(p)
        if len(pending) == 2 or len(points) + len(pending) == n_evals:
            done = pending.pop(0)
            solver.tell([done], [quadratic(done)])
            points.append(done)
            values.append(quadratic(done))
    while pending:
        done = pending.pop(0)
        solver.tell([done], [quadratic(done)])
        points.append(done)
        values.append(quadratic(done))
    return solver, points, values


def test_bayesian_ask_with_pending():
    solver, points, values = _pipelined(seed=3)
    _inside(SPACE, points)
    assert points[0] == SPACE.midpoint()                 # the start point first
    assert len({tuple(p.values()) for p in points}) == len(points)
    assert solver.n_told == len(points)                  # the lies were not learnt
    assert solver.n_open == 0                            # every asked point was told
    solver.ask()
    assert solver.n_open == 1
    assert min(values) < 0.5 * values[0]
    # a deterministic function of the calls: the same sequence repeats exactly
    assert _pipelined(seed=3)[1] == points
    assert _pipelined(seed=4)[1][1:] != points[1:]
    with pytest.raises(ValueError, match="lie must be"):
        solver.ask_with_pending([points[0]], float("nan"))


def test_pattern_converges_in_bounds_with_batches():
    x0 = {"evprox2.mu": 105.0, "evprox2.sigma": 18.0}
    solver = make_solver("pattern", SPACE, x0=x0, step=0.1)
    points, values = _run(solver, quadratic, 200, batch=2)
    assert points[0] == x0  # the first stencil starts with its centre
    _inside(SPACE, points)
    assert solver.is_done  # the step fell below min_step within the budget
    assert solver.centre_value == min(values) < 1e-4
    assert solver.centre_value == quadratic(solver.centre)
    assert abs(solver.centre["evprox2.mu"] - 131.0) < 0.1
    assert abs(solver.centre["evprox2.sigma"] - 4.5) < 0.05
    assert solver.ask(2) == []


def test_pattern_iteration_is_stencil_then_line_search():
    solver = make_solver("pattern", SPACE, x0={"evprox2.mu": 125.0, "evprox2.sigma": 10.5},
                         step=0.1, line=(1.0, 3.0))
    first = solver.ask(10)
    # the centre, then one step (a tenth of each range) either side of each parameter
    got = np.array([(p["evprox2.mu"], p["evprox2.sigma"]) for p in first])
    np.testing.assert_allclose(got, [(125.0, 10.5), (130.0, 10.5), (120.0, 10.5),
                                     (125.0, 12.4), (125.0, 8.6)])
    solver.tell(first, [quadratic(p) for p in first])
    line = solver.ask(10)
    # the gradient's largest component (sigma, in unit-cube terms) moves by
    # 1 and 3 steps; mu moves in proportion
    g = np.array([(quadratic(first[1]) - quadratic(first[2])) / 0.2,
                  (quadratic(first[3]) - quadratic(first[4])) / 0.2])
    d = -g / np.abs(g).max()
    for p, m in zip(line, (1.0, 3.0)):
        assert p["evprox2.mu"] == pytest.approx(125.0 + 50.0 * 0.1 * m * d[0])
        assert p["evprox2.sigma"] == pytest.approx(10.5 + 19.0 * 0.1 * m * d[1])
    solver.tell(line, [quadratic(p) for p in line])
    # the best of the stencil and the line becomes the centre; the next
    # stencil does not evaluate it again
    told = first[1:] + line
    best = min(told, key=quadratic)
    assert solver.centre == pytest.approx(best)
    assert solver.ask(10)[0] != solver.centre
    assert solver.step == 0.1


def test_pattern_shrinks_the_step_at_a_minimum_and_stops():
    x0 = {"evprox2.mu": 131.0, "evprox2.sigma": 4.5}
    solver = make_solver("pattern", SPACE, x0=x0, step=0.2, shrink=0.25, min_step=0.01)
    points, _ = _run(solver, quadratic, 100, batch=3)
    # every stencil and line search fails at the optimum, so the step goes
    # 0.2, 0.05, 0.0125, 0.003125 and the method stops
    assert [s for _, s in solver.history] == [0.05, 0.0125, 0.003125]
    assert 5 + 4 + 4 <= len(points) <= 5 + 4 + 4 + 3 * 3
    assert solver.centre == x0 and solver.is_done


def test_pattern_at_a_bound_uses_one_sided_steps():
    x0 = {"evprox2.mu": 150.0, "evprox2.sigma": 1.0}
    solver = make_solver("pattern", SPACE, x0=x0, step=0.1)
    first = solver.ask(10)
    assert len(first) == 3  # the centre and one step inside along each parameter
    _inside(SPACE, first)
    solver.tell(first, [quadratic(p) for p in first])
    _inside(SPACE, solver.ask(10))


def test_pattern_repeats_and_replays_from_settings():
    x0 = {"evprox2.mu": 105.0, "evprox2.sigma": 18.0}
    a = make_solver("pattern", SPACE, x0=x0, step=0.05, line=[2.0])
    pa, va = _run(a, quadratic, 40, batch=2)
    b = solver_from_settings(SPACE, a.settings())
    pb, vb = _run(b, quadratic, 40, batch=2)
    assert pa == pb and va == vb
    assert a.settings()["options"] == {"step": 0.05, "shrink": 0.5, "min_step": 1e-3,
                                       "line": [2.0]}


@pytest.mark.parametrize("opts, err, match", [
    ({"step": 0.0}, ValueError, "step must be > 0"),
    ({"step": 0.8}, ValueError, "step must be <= 0.5"),
    ({"shrink": 1.0}, ValueError, "shrink must be < 1"),
    ({"min_step": 0.2, "step": 0.1}, ValueError, "min_step must be <= 0.1"),
    ({"line": 2.0}, TypeError, "line must be a sequence of step multiples, got 2.0"),
    ({"line": [1.0, -2.0]}, ValueError, "line multiple must be > 0"),
])
def test_pattern_bad_options(opts, err, match):
    with pytest.raises(err, match=match):
        make_solver("pattern", SPACE, **opts)


@pytest.mark.parametrize("name, options, message", [
    ("bayesian", {"n_initial": 3},
     "options must be options of the 'bayesian' solver (n_initial_points, initial_design, "
     "acq_func, acq_optimizer, n_points, trust_region, transform), got 'n_initial'; did "
     "you mean "
     "'n_initial_points'?"),
    ("cma", {"sigma0": 0.2, "pop": 4},
     "options must be options of the 'cma' solver (sigma0, popsize), got 'pop'; "
     "did you mean 'popsize'?"),
    ("cobyla", {"tolerance": 1e-3}, "got 'tolerance'")])
def test_an_unknown_solver_option_is_named_with_the_solver_s_own(name, options, message):
    with pytest.raises(ValueError) as info:
        make_solver(name, SPACE, **options)
    assert message in str(info.value)


def test_a_log_transform_models_log_values_and_is_recorded_only_when_used():
    plain = make_solver("bayesian", SPACE, seed=3, n_points=500)
    logged = make_solver("bayesian", SPACE, seed=3, n_points=500, transform="log")
    assert "transform" not in plain.settings()["options"]
    assert logged.settings()["options"]["transform"] == "log"
    values = [3.0, 24.0, 0.0]
    for solver in (plain, logged):
        points = solver.ask(3)
        solver.tell(points, values)
    assert plain._opt.yi == values
    np.testing.assert_allclose(logged._opt.yi, np.log1p(values))
    # rebuilt from its settings, it models the same values
    again = solver_from_settings(SPACE, logged.settings())
    again.tell(again.ask(1), [8.0])
    assert again._opt.yi == [pytest.approx(math.log(9.0))]
    with pytest.raises(ValueError, match="objective values must be > -1 with "
                                         "transform='log', got -1.5"):
        logged.tell(logged.ask(1), [-1.5])
    with pytest.raises(ValueError, match="transform must be one of"):
        make_solver("bayesian", SPACE, transform="sqrt")
