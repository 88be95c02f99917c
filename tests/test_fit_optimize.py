"""The driver loop on analytic objectives: failures, interruption, resume, parallel."""
import math
import random
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hnnfit.exceptions import StudyError
from hnnfit.fit.optimize import failure_penalty, replay_solver, run_optimization
from hnnfit.fit.solvers import make_solver
from hnnfit.fit.space import Parameter, ParameterSpace
from hnnfit.fit.storage import StudyStorage as Study
from hnnfit.fit.targets import read_target

SPACE = ParameterSpace([Parameter("evprox2.mu", 100.0, 150.0),
                        Parameter("evprox2.sigma", 1.0, 20.0)])
# cheap settings for the Gaussian process so that tests stay fast
FAST_BAYES = {"n_initial_points": 4, "acq_optimizer": "sampling", "n_points": 500}


def quadratic(params, seeds):
    value = ((params["evprox2.mu"] - 131.0) / 10.0) ** 2 \
        + ((params["evprox2.sigma"] - 4.5) / 2.0) ** 2
    return {"value": value, "scale": 2.0 + seeds[0], "rmse": math.sqrt(value)}


def flaky(params, seeds):
    """Fails (raises) for mu > 140 and returns NaN for sigma > 15."""
    if params["evprox2.mu"] > 140.0:
        raise RuntimeError(f"simulated crash at mu={params['evprox2.mu']:.3f}")
    if params["evprox2.sigma"] > 15.0:
        return float("nan")
    return quadratic(params, seeds)["value"]


class InterruptAt:
    """Objective ``fn`` that raises KeyboardInterrupt on its n-th call (sequential runs)."""

    def __init__(self, n, fn=None):
        self.n = n
        self.fn = quadratic if fn is None else fn
        self.calls = 0

    def __call__(self, params, seeds):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.fn(params, seeds)


@pytest.fixture(scope="module")
def target():
    t = np.arange(0.0, 50.0, 1.0)
    return read_target(np.c_[t, np.cos(t / 8.0)])


def _new_study(path, target, solver):
    return Study.create(path, target=target, space=SPACE, objective={"kind": "test"},
                        solver=solver.settings())


def _log(study):
    """(batch, position, status, params, value) of finished rows, in solver order."""
    rows = study.rows(status=("complete", "failed"))
    out = sorted((r["batch"], r["position"], r["status"], r["params"], r["value"])
                 for r in rows)
    keys = [(b, p) for b, p, *_ in out]
    assert len(keys) == len(set(keys)), "a batch position was evaluated twice"
    return out

def _as_schema_1(path, drop_keys=()):
    """Turn a study file into what schema version 1 wrote (no process identity
    columns), without the metadata ``drop_keys``."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE hnnfit_schema SET version = 1")
        conn.execute("ALTER TABLE evaluations DROP COLUMN pid_start")
        conn.execute("ALTER TABLE evaluations DROP COLUMN boot_id")
        conn.executemany("DELETE FROM metadata WHERE key = ?", [(k,) for k in drop_keys])
    conn.close()


def _reference_log(path, target, solver, n_evals, **kwargs):
    """Log of an uninterrupted run of ``solver`` on ``quadratic``: what an
    interrupted and resumed run must reproduce."""
    with _new_study(path, target, solver) as ref:
        run_optimization(ref, solver, quadratic, n_evals, **kwargs)
        return _log(ref)



def test_failed_evaluations_are_recorded_and_the_loop_goes_on(tmp_path, target):
    # COBYLA's first steps (+12.5 in mu, +4.75 in sigma) land in both failing regions
    solver = make_solver("cobyla", SPACE, x0={"evprox2.mu": 135.0, "evprox2.sigma": 12.0})
    with _new_study(tmp_path / "f.db", target, solver) as st:
        summary = run_optimization(st, solver, flaky, 25, seeds=[0])
        rows = st.rows()
        assert len(rows) == 25 and summary.n_complete + summary.n_failed == 25
        failed = [r for r in rows if r["status"] == "failed"]
        assert [r["status"] for r in rows[:3]] == ["complete", "failed", "failed"]
        for r in failed:
            if r["params"]["evprox2.mu"] > 140.0:
                assert r["error"].startswith("RuntimeError: simulated crash")
            else:
                assert r["params"]["evprox2.sigma"] > 15.0
                assert "non-finite value nan" in r["error"]
            assert r["value"] is None
        assert {r["error"][:12] for r in failed} == {"RuntimeError", "objective re"}
        complete = [r for r in rows if r["status"] == "complete"]
        assert all(r["params"]["evprox2.mu"] <= 140.0 for r in complete)
        # the solver moved away from the failing region and improved
        assert summary.best_value < 0.5
        assert summary.best_value == min(r["value"] for r in complete)


def test_failure_penalty_rule():
    assert failure_penalty([]) == 1e6
    assert failure_penalty([1.0, 3.0]) == pytest.approx(3.2)
    assert failure_penalty([2.0]) == pytest.approx(2.002)
    assert failure_penalty([0.0]) == 1.0
    assert failure_penalty([1.0, 3.0], failure_value=50) == 50.0


def test_rows_carry_scale_seeds_and_extra_outputs(tmp_path, target):
    solver = make_solver("cobyla", SPACE)
    with _new_study(tmp_path / "r.db", target, solver) as st:
        run_optimization(st, solver, quadratic, 4, seeds=[5], n_trials=3)
        df = st.trials
        assert (df["scale"] == 7.0).all()
        assert (df["n_trials"] == 3).all()
        assert all(r["seeds"] == [5] for r in st.rows())
        np.testing.assert_allclose([i["rmse"] for i in df["info"]], np.sqrt(df["value"]))
        assert (df["sim_seconds"] >= 0).all()


def test_budget_and_resume_with_a_larger_budget(tmp_path, target):
    ref_log = _reference_log(tmp_path / "ref.db", target,
                             make_solver("bayesian", SPACE, seed=2, **FAST_BAYES),
                             9)
    solver = make_solver("bayesian", SPACE, seed=2, **FAST_BAYES)
    with _new_study(tmp_path / "two.db", target, solver) as st:
        first = run_optimization(st, solver, quadratic, 5)
        assert first.n_complete == 5 and first.n_evaluated == 5
        again = run_optimization(st, make_solver("bayesian", SPACE, seed=2, **FAST_BAYES),
                                 quadratic, 9)
        assert again.n_replayed == 5 and again.n_evaluated == 4
        assert _log(st) == ref_log
        # the budget is met: nothing more is evaluated
        third = run_optimization(st, make_solver("bayesian", SPACE, seed=2, **FAST_BAYES),
                                 quadratic, 9)
        assert third.n_evaluated == 0 and len(st.rows()) == 9


def test_keyboard_interrupt_then_resume(tmp_path, target):
    ref_log = _reference_log(tmp_path / "ref.db", target,
                             make_solver("cobyla", SPACE, seed=0),
                             12)
    solver = make_solver("cobyla", SPACE, seed=0)
    with _new_study(tmp_path / "int.db", target, solver) as st:
        summary = run_optimization(st, solver, InterruptAt(6), 12)
        assert summary.interrupted
        assert st.counts() == {"running": 0, "complete": 5, "failed": 0, "abandoned": 1}
        resumed = run_optimization(st, make_solver("cobyla", SPACE, seed=0), quadratic, 12)
        assert not resumed.interrupted
        assert resumed.n_replayed == 5 and resumed.n_evaluated == 7
        assert _log(st) == ref_log
        # the abandoned point was proposed again and evaluated once
        abandoned = st.rows(status="abandoned")[0]
        again = [r for r in st.rows(status="complete")
                 if (r["batch"], r["position"]) == (abandoned["batch"], abandoned["position"])]
        assert len(again) == 1 and again[0]["params"] == abandoned["params"]


def test_parallel_loky_matches_sequential(tmp_path, target):
    logs = []
    for backend in ("sequential", "loky"):
        solver = make_solver("bayesian", SPACE, seed=5, **FAST_BAYES)
        with _new_study(tmp_path / f"{backend}.db", target, solver) as st:
            summary = run_optimization(st, solver, quadratic, 7, n_jobs=2, backend=backend)
            assert summary.n_complete == 7
            logs.append(_log(st))
            assert st.metadata["schedule"] == "pipelined"
            # one point per proposal; after the first, one point is pending
            # when the next is proposed
            rows = sorted(st.rows(), key=lambda r: r["batch"])
            assert [(r["batch"], r["position"]) for r in rows] == \
                [(0, 0)] + [(k, 1) for k in range(1, 7)]
            points = [tuple(r["params"].values()) for r in rows]
            assert len(set(points)) == 7
    assert logs[0] == logs[1]


class Sleepy:
    """Quadratic objective that takes ``delay`` seconds."""

    def __init__(self, delay):
        self.delay = delay

    def __call__(self, params, seeds):
        time.sleep(self.delay)
        return quadratic(params, seeds)


def test_pipelined_keeps_n_jobs_evaluations_in_flight(tmp_path, target):
    solver = make_solver("bayesian", SPACE, seed=3, **FAST_BAYES)
    with _new_study(tmp_path / "p.db", target, solver) as st:
        run_optimization(st, solver, Sleepy(0.4), 8, n_jobs=2, backend="loky")
        rows = sorted(st.rows(), key=lambda r: r["batch"])
        assert [r["status"] for r in rows] == ["complete"] * 8
        # every evaluation after the first two started while the one before
        # it was still running (no waiting for a whole batch)
        for prev, row in zip(rows[1:], rows[2:]):
            assert row["start_time"] < prev["end_time"]
        # both workers were used
        assert len({r["info"]["worker_pid"] for r in rows}) == 2


def test_pipelined_interrupt_then_resume_with_other_n_jobs(tmp_path, target):
    ref_log = _reference_log(tmp_path / "ref.db", target,
                             make_solver("bayesian", SPACE, seed=6, **FAST_BAYES),
                             10, n_jobs=2, backend="sequential")
    solver = make_solver("bayesian", SPACE, seed=6, **FAST_BAYES)
    with _new_study(tmp_path / "int.db", target, solver) as st:
        summary = run_optimization(st, solver, InterruptAt(6), 10, n_jobs=2,
                                   backend="sequential")
        assert summary.interrupted
        # the interrupted point and the one proposed after it are abandoned
        assert st.counts() == {"running": 0, "complete": 5, "failed": 0, "abandoned": 2}
        resumed = run_optimization(st, make_solver("bayesian", SPACE, seed=6, **FAST_BAYES),
                                   quadratic, 10, n_jobs=2, backend="sequential")
        assert resumed.n_replayed == 5 and resumed.n_evaluated == 5
        assert _log(st) == ref_log
    # a stage begun with one job and continued with three: nothing evaluated
    # twice or lost, and the points pending at each proposal grow one by one
    solver = make_solver("bayesian", SPACE, seed=6, **FAST_BAYES)
    with _new_study(tmp_path / "grow.db", target, solver) as st:
        run_optimization(st, solver, quadratic, 4, n_jobs=1)
        first = _log(st)
        run_optimization(st, make_solver("bayesian", SPACE, seed=6, **FAST_BAYES),
                         quadratic, 10, n_jobs=3, backend="loky")
        log = _log(st)
        assert len(log) == 10 and log[:4] == first
        assert [p for _, p, *_ in log] == [0, 0, 0, 0, 1, 2, 2, 2, 2, 2]
        # replaying the whole log proposes the recorded points again
        again = run_optimization(st, make_solver("bayesian", SPACE, seed=6, **FAST_BAYES),
                                 quadratic, 10, n_jobs=3, backend="loky")
        assert again.n_replayed == 10 and again.n_evaluated == 0


def test_ctrl_c_in_the_driver_with_workers_busy(tmp_path, target):
    def stop_after_three(row):
        stop_after_three.n += 1
        if stop_after_three.n == 3:
            raise KeyboardInterrupt

    stop_after_three.n = 0
    ref_log = _reference_log(tmp_path / "ref.db", target,
                             make_solver("bayesian", SPACE, seed=8, **FAST_BAYES),
                             8, n_jobs=2, backend="sequential")
    solver = make_solver("bayesian", SPACE, seed=8, **FAST_BAYES)
    with _new_study(tmp_path / "c.db", target, solver) as st:
        t0 = time.perf_counter()
        summary = run_optimization(st, solver, Sleepy(5.0), 8, n_jobs=2, backend="loky",
                                   callback=stop_after_three)
        # the evaluation still running in a worker was not waited for
        assert time.perf_counter() - t0 < 5.0 * 3
        assert summary.interrupted
        assert st.counts() == {"running": 0, "complete": 3, "failed": 0, "abandoned": 1}
        resumed = run_optimization(st, make_solver("bayesian", SPACE, seed=8, **FAST_BAYES),
                                   quadratic, 8, n_jobs=2, backend="loky")
        assert resumed.n_replayed == 3 and resumed.n_evaluated == 5
        assert _log(st) == ref_log


def test_studies_run_in_batches_resume_in_batches(tmp_path, target):
    logs = []
    for name, budgets in (("ref", [9]), ("two", [4, 9])):
        solver = make_solver("bayesian", SPACE, seed=1, **FAST_BAYES)
        with _new_study(tmp_path / f"{name}.db", target, solver) as st:
            # as a study written before pipelined scheduling existed
            st.set_metadata("schedule", "batches")
            for n in budgets:
                run_optimization(st, make_solver("bayesian", SPACE, seed=1, **FAST_BAYES),
                                 quadratic, n, n_jobs=2)
            logs.append(_log(st))
    assert [b for b, *_ in logs[0]] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert logs[0] == logs[1]


def test_dask_backend(tmp_path, target):
    from distributed import Client

    solver = make_solver("bayesian", SPACE, seed=5, **FAST_BAYES)
    with _new_study(tmp_path / "nodask.db", target, solver) as st:
        with pytest.raises(ValueError, match="needs a running dask.distributed Client"):
            run_optimization(st, solver, quadratic, 4, n_jobs=2, backend="dask")
    logs = []
    with Client(processes=False, n_workers=1, threads_per_worker=2,
                dashboard_address=None):
        for backend in ("sequential", "dask"):
            solver = make_solver("bayesian", SPACE, seed=5, **FAST_BAYES)
            with _new_study(tmp_path / f"d_{backend}.db", target, solver) as st:
                run_optimization(st, solver, quadratic, 5, n_jobs=2, backend=backend)
                logs.append(_log(st))
    assert len(logs[1]) == 5 and logs[0] == logs[1]


def test_cobyla_stops_on_its_own(tmp_path, target):
    solver = make_solver("cobyla", SPACE, rhoend=1e-2)
    with _new_study(tmp_path / "c.db", target, solver) as st:
        summary = run_optimization(st, solver, quadratic, 500)
        assert summary.solver_done
        assert summary.n_complete < 500
        assert summary.best_value < 1e-2


def test_refusals(tmp_path, target):
    solver = make_solver("cobyla", SPACE, seed=0)
    with _new_study(tmp_path / "x.db", target, solver) as st:
        run_optimization(st, solver, quadratic, 3)
        with pytest.raises(ValueError, match="solver must be fresh"):
            run_optimization(st, solver, quadratic, 4)
        with pytest.raises(StudyError, match="different solver settings"):
            run_optimization(st, make_solver("cobyla", SPACE, seed=0, rhobeg=0.1),
                             quadratic, 4)
        other = ParameterSpace([Parameter("evprox2.mu", 90.0, 150.0),
                                Parameter("evprox2.sigma", 1.0, 20.0)])
        with pytest.raises(StudyError, match="different parameter space"):
            run_optimization(st, make_solver("cobyla", other), quadratic, 4)
        with pytest.raises(StudyError, match=r"was run with seeds \[0\], got \[1\]"):
            run_optimization(st, make_solver("cobyla", SPACE, seed=0), quadratic, 4,
                             seeds=[1])
        with pytest.raises(ValueError, match="backend must be one of"):
            run_optimization(st, make_solver("cobyla", SPACE), quadratic, 4, backend="mpi")
        # a log that does not replay is refused instead of being silently extended
        st.conn.execute("UPDATE evaluations SET params=? WHERE id=2",
                        ('{"evprox2.mu":101.0,"evprox2.sigma":2.0}',))
        with pytest.raises(StudyError, match="replaying study"):
            run_optimization(st, make_solver("cobyla", SPACE, seed=0), quadratic, 4)


# --- resume after SIGKILL ---------------------------------------------------

DRIVER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from hnnfit.fit.optimize import run_optimization
    from hnnfit.fit.solvers import make_solver
    from hnnfit.fit.space import Parameter, ParameterSpace
    from hnnfit.fit.storage import StudyStorage as Study
    from hnnfit.fit.targets import read_target

    path, name, n_evals, n_jobs, delay = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                          int(sys.argv[4]), float(sys.argv[5]))
    SPACE = ParameterSpace([Parameter("evprox2.mu", 100.0, 150.0),
                            Parameter("evprox2.sigma", 1.0, 20.0)])

    def evaluate(params, seeds):
        time.sleep(delay)  # a slow "simulation"
        if params["evprox2.mu"] > 147.0:
            raise RuntimeError("simulated crash")
        return {"value": ((params["evprox2.mu"] - 131.0) / 10.0) ** 2
                         + ((params["evprox2.sigma"] - 4.5) / 2.0) ** 2, "scale": 1.0}

    opts = ({"n_initial_points": 4, "acq_optimizer": "sampling", "n_points": 500}
            if name == "bayesian" else {})
    solver = make_solver(name, SPACE, seed=7 if name == "bayesian" else 4,
                         x0={"evprox2.mu": 140.0, "evprox2.sigma": 10.0}, **opts)
    t = np.arange(0.0, 20.0)
    study = Study.create(path, target=read_target(np.c_[t, np.sin(t)]), space=SPACE,
                         objective={"kind": "test"}, solver=solver.settings(),
                         exist_ok=True)
    run_optimization(study, solver, evaluate, n_evals, n_jobs=n_jobs,
                     backend="sequential", seeds=[1])
    study.close()
""")


def _n_finished(path):
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM evaluations WHERE status IN "
                               "('complete', 'failed')").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0  # still being created


@pytest.mark.parametrize("name, n_evals, n_jobs", [("cobyla", 14, 1), ("bayesian", 10, 2)])
def test_resume_after_sigkill(tmp_path, name, n_evals, n_jobs):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)

    def driver(path, delay):
        return subprocess.Popen([sys.executable, str(script), str(path), name,
                                 str(n_evals), str(n_jobs), str(delay)])

    ref_path = tmp_path / "ref.db"
    assert driver(ref_path, 0.0).wait(timeout=300) == 0

    path = tmp_path / "killed.db"
    rng = random.Random(20261123)
    n_kills = 0
    for _ in range(12):
        before = _n_finished(path)
        if n_kills == 4 or before >= n_evals - 1:
            break
        proc = driver(path, 0.15)
        deadline = time.monotonic() + 120
        # let the run make progress, then kill it at a random moment
        while (proc.poll() is None and _n_finished(path) <= before
               and time.monotonic() < deadline):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.kill()
            n_kills += 1
        elif proc.returncode == 0:
            break  # it finished before the kill
        else:
            pytest.fail(f"the driver failed with exit code {proc.returncode}")
        proc.wait()
    assert n_kills >= 2
    assert _n_finished(path) < n_evals  # the kills did interrupt the run
    assert driver(path, 0.0).wait(timeout=300) == 0

    with Study.load(ref_path) as ref, Study.load(path) as st:
        ref_log, log = _log(ref), _log(st)
        assert len(log) == n_evals  # budget honoured, nothing evaluated twice
        assert log == ref_log       # same points, same order, same results
        counts = st.counts()
        assert counts["running"] == 0
        assert counts["complete"] + counts["failed"] == n_evals
        assert any(status == "failed" for _, _, status, _, _ in log)
        # every row the killed drivers left unfinished is marked abandoned
        assert len(st.rows()) == n_evals + counts["abandoned"]


def _ripple(mu, seed):
    # one trial set's noise: a slow ripple in mu of random phase
    phase = random.Random(seed).uniform(0.0, 2.0 * math.pi)
    return math.sin(mu / 6.0 + phase)


def noisy_quadratic(params, seeds):
    """``quadratic`` plus noise fixed by the seeds: a different landscape for
    each seed, whose average over seeds is the smooth quadratic.

    With amplitude 1 and a period of about 38 ms, one seed's ripple moves
    the minimum by about 3 ms in mu, as one set of trials can move a fitted
    drive time.
    """
    noise = sum(_ripple(params["evprox2.mu"], s) for s in seeds) / len(seeds)
    return quadratic(params, seeds)["value"] + noise


def test_resample_gives_each_generation_its_own_seeds(tmp_path, target):
    cma_opts = {"sigma0": 0.2, "popsize": 6}
    solver = make_solver("cma", SPACE, seed=3, **cma_opts)
    with _new_study(tmp_path / "ref.db", target, solver) as st:
        summary = run_optimization(st, solver, noisy_quadratic, 30, n_jobs=2,
                                   seeds=[10, 11], resample=True)
        ref_log = _log(st)
        rows = st.rows(status="complete")
    assert summary.n_complete == 30
    # one batch per CMA-ES generation (popsize 6, not n_jobs), the points of a
    # batch sharing its seeds, each batch on new ones
    by_batch = {}
    for r in rows:
        by_batch.setdefault(r["batch"], []).append(r)
    assert sorted(by_batch) == [0, 1, 2, 3, 4]
    for b, batch in by_batch.items():
        assert len(batch) == 6
        assert all(r["seeds"] == [10 + 2 * b, 11 + 2 * b] for r in batch)
        for r in batch:
            assert r["value"] == pytest.approx(noisy_quadratic(r["params"], r["seeds"]))
    assert len(solver.means) == 5 and solver.means[-1] == solver.mean

    # interrupted in the third generation and resumed: the same points on the
    # same seeds, and what was recorded is not evaluated again
    solver = make_solver("cma", SPACE, seed=3, **cma_opts)
    with _new_study(tmp_path / "int.db", target, solver) as st:
        assert run_optimization(st, solver, InterruptAt(15, noisy_quadratic), 30, seeds=[10, 11],
                                resample=True).interrupted
        resumed = run_optimization(st, make_solver("cma", SPACE, seed=3, **cma_opts),
                                   noisy_quadratic, 30, seeds=[10, 11], resample=True)
        assert resumed.n_replayed == 14 and resumed.n_evaluated == 16
        assert _log(st) == ref_log
        # resuming it without resampling would change the trials: refused
        with pytest.raises(StudyError, match=r"was run with seeds \[12, 13\], got \[10, 11\]"):
            run_optimization(st, make_solver("cma", SPACE, seed=3, **cma_opts),
                             noisy_quadratic, 36, seeds=[10, 11])


def test_resampled_stages_do_not_reuse_earlier_stages_seeds(tmp_path, target):
    # two resampled stages in one study, as a staged fit runs them: the second
    # starts after every seed the first used, and keeps that start on resume
    opts = {"sigma0": 0.2, "popsize": 2}

    def cma():
        return make_solver("cma", SPACE, seed=1, **opts)

    def seeds_of(st, stage):
        return sorted({tuple(r["seeds"]) for r in st.rows(stage=stage, status="complete")})

    with _new_study(tmp_path / "staged.db", target, cma()) as st:
        run_optimization(st, cma(), noisy_quadratic, 6, seeds=[10, 11], stage="a",
                         resample=True)
        assert seeds_of(st, "a") == [(10, 11), (12, 13), (14, 15)]
        assert run_optimization(st, cma(), InterruptAt(3, noisy_quadratic), 6, seeds=[10, 11], stage="b",
                                resample=True).interrupted
        assert seeds_of(st, "b") == [(16, 17)]
        # resumed: stage b's own seeds now count as used, yet its start holds
        resumed = run_optimization(st, cma(), noisy_quadratic, 6, seeds=[10, 11],
                                   stage="b", resample=True)
        assert resumed.n_replayed == 2 and resumed.n_evaluated == 4
        assert seeds_of(st, "b") == [(16, 17), (18, 19), (20, 21)]
        for r in st.rows(stage="b", status="complete"):
            assert r["value"] == pytest.approx(noisy_quadratic(r["params"], r["seeds"]))
        # seeds above the study's (a first stage run on seeds 30-31) start at 0
        run_optimization(st, cma(), noisy_quadratic, 2, seeds=[30, 31], stage="c",
                         resample=True)
        assert seeds_of(st, "c") == [(30, 31)]

    # a stage of a schema-1 file recorded before stages were shifted (rows, no
    # recorded start) resumes on the seeds it began with: the migration
    # records its start
    with _new_study(tmp_path / "old.db", target, cma()) as st:
        run_optimization(st, cma(), noisy_quadratic, 2, seeds=[10, 11], stage="a",
                         resample=True)
        st.set_metadata("seed_offset[b]", "0")
        assert run_optimization(st, cma(), InterruptAt(3, noisy_quadratic), 6, seeds=[10, 11], stage="b",
                                resample=True).interrupted
    _as_schema_1(tmp_path / "old.db", drop_keys=["seed_offset[b]"])
    with Study.load(tmp_path / "old.db") as st:
        assert st.stage_seed_offset("b") == 0
        resumed = run_optimization(st, cma(), noisy_quadratic, 6, seeds=[10, 11],
                                   stage="b", resample=True)
        assert resumed.n_replayed == 2 and resumed.n_evaluated == 4
        assert seeds_of(st, "b") == [(10, 11), (12, 13), (14, 15)]


@pytest.mark.parametrize("solver_seed", [0, 1, 2])
def test_resample_keeps_the_search_off_one_trial_set_s_noise(tmp_path, target,
                                                           solver_seed):
    # the same budget with fixed seeds and with resampling, judged on the
    # smooth quadratic (the objective averaged over all seeds; minimum 0 at
    # mu 131, sigma 4.5). With fixed seeds CMA-ES converges to the minimum of
    # its one seed's landscape, 3 ms off in mu. With new seeds per generation
    # its mean wanders with each generation's noise, and the mean averaged
    # over the run's second half lands near the smooth minimum.
    def true_value(p):
        return quadratic(p, [0])["value"]

    out = {}
    for resample in (False, True):
        solver = make_solver("cma", SPACE, seed=solver_seed, sigma0=0.2, popsize=8)
        with _new_study(tmp_path / f"r{resample}.db", target, solver) as st:
            run_optimization(st, solver, noisy_quadratic, 480, seeds=[1],
                             resample=resample)
            out[resample] = (true_value(solver.averaged_mean()),
                             true_value(st.best()["params"]), solver)
    fixed_mean, fixed_best, fixed = out[False]
    resampled_mean, _, resampled = out[True]
    assert abs(fixed.mean["evprox2.mu"] - 131.0) > 2.0
    assert min(fixed_mean, fixed_best) > 0.05
    assert resampled_mean < 0.05
    # one mean per generation; the average is taken on the unit cube
    assert len(resampled.means) == 60
    last = resampled.averaged_mean(last=1)
    assert last == resampled.mean
    mid = resampled.averaged_mean()
    assert mid == resampled.space.from_unit(np.mean(
        [resampled.space.to_unit(m) for m in resampled.means[30:]], axis=0))


def test_resample_refusals(tmp_path, target):
    solver = make_solver("bayesian", SPACE, seed=0, **FAST_BAYES)
    with _new_study(tmp_path / "b.db", target, solver) as st:
        with pytest.raises(ValueError, match="resample=True needs seeds"):
            run_optimization(st, solver, quadratic, 2, seeds=None, resample=True)
        with pytest.raises(TypeError, match="resample"):
            run_optimization(st, solver, quadratic, 2, resample="yes")
        # Bayesian optimisation runs in batches when resampling (a batch owns its seeds)
        run_optimization(st, solver, quadratic, 4, n_jobs=2, seeds=[5], resample=True)
        assert st.metadata["schedule"] == "batches"
        assert sorted({tuple(r["seeds"]) for r in st.rows()}) == [(5,), (6,)]
    solver = make_solver("bayesian", SPACE, seed=0, **FAST_BAYES)
    with _new_study(tmp_path / "p.db", target, solver) as st:
        run_optimization(st, solver, quadratic, 2, n_jobs=2)
        assert st.metadata["schedule"] == "pipelined"
        with pytest.raises(StudyError, match="resume it with resample=False"):
            run_optimization(st, make_solver("bayesian", SPACE, seed=0, **FAST_BAYES),
                             quadratic, 4, n_jobs=2, resample=True)


def test_replay_solver_rebuilds_the_run_s_solver_without_writing(tmp_path, target):
    opts = {"sigma0": 0.3, "popsize": 6}
    solver = make_solver("cma", SPACE, seed=4, **opts)
    with _new_study(tmp_path / "cma.db", target, solver) as st:
        # failures included: they are told at the penalty of their moment
        run_optimization(st, solver, flaky, 30, n_jobs=2, seeds=[3], resample=True)
        assert st.counts()["failed"] > 0
        rows, meta = st.rows(), st.metadata
        again = replay_solver(st, make_solver("cma", SPACE, seed=4, **opts))
        assert again.means == solver.means and len(again.means) == 5
        assert again.averaged_mean() == solver.averaged_mean()
        # the whole search state, not just the means
        assert again._es.sigma == solver._es.sigma
        assert np.array_equal(again._es.C, solver._es.C)
        assert again.n_told == solver.n_told == 30
        assert st.rows() == rows and st.metadata == meta
        with pytest.raises(ValueError, match="solver must be fresh"):
            replay_solver(st, again)
        # another solver does not reproduce the log
        with pytest.raises(StudyError, match="proposed other points than it recorded"):
            replay_solver(st, make_solver("cma", SPACE, seed=5, **opts))
    solver = make_solver("bayesian", SPACE, seed=0, **FAST_BAYES)
    with _new_study(tmp_path / "bayes.db", target, solver) as st:
        run_optimization(st, solver, quadratic, 2, n_jobs=2)
        with pytest.raises(StudyError, match="ran pipelined"):
            replay_solver(st, make_solver("bayesian", SPACE, seed=0, **FAST_BAYES))
