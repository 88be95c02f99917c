"""Staged evoked fits: stage plans (groups, windows, weights, budgets), the
automatic parameter space, best-point carry-over, resume in the middle of a
stage, and one small real staged fit (3x3 network)."""
import math

import numpy as np
import pytest
from scipy.stats import norm

from hnnfit.exceptions import StudyError
from hnnfit.fit import DipoleObjective, Parameter, ParameterSpace, Study, Target
from hnnfit.fit.space import evoked_space
from hnnfit.fit.staging import (FINAL, WEIGHT_FLOOR, Stage, group_evoked_drives,
                                plan_evoked_stages, split_budget, stage_sim_end)
from hnnfit.network import jones_2009_model

PROX = {"L2_basket": 0.1, "L2_pyramidal": 0.1, "L5_basket": 1.0, "L5_pyramidal": 1.0}
TIMES = np.arange(0.0, 170.0 + 1e-9, 0.5)


def _net(extra_early=False):
    """3x3 network with three evoked drives (ERP-like timing)."""
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=26.0, sigma=2.5, numspikes=1, location="proximal",
                         weights_ampa={"L2_pyramidal": 0.02, "L5_pyramidal": 0.01,
                                       "L2_basket": 0.0},
                         synaptic_delays=1.0, event_seed=4)
    net.add_evoked_drive("evdist1", mu=63.0, sigma=4.0, numspikes=1, location="distal",
                         weights_ampa={"L2_pyramidal": 0.01, "L5_pyramidal": 0.02},
                         weights_nmda={"L2_pyramidal": 0.004},
                         synaptic_delays=0.1, event_seed=5)
    net.add_evoked_drive("evprox2", mu=120.0, sigma=8.0, numspikes=1, location="proximal",
                         weights_ampa={"L2_pyramidal": 0.5, "L5_pyramidal": 0.3},
                         synaptic_delays=1.0, event_seed=6)
    if extra_early:
        # overlaps evprox1 (26 +- 7.5 ms): the two form one group
        net.add_evoked_drive("evprox1b", mu=30.0, sigma=1.0, numspikes=1,
                             location="proximal", weights_ampa={"L5_pyramidal": 0.01},
                             synaptic_delays=1.0, event_seed=7)
    return net


# -- plans --------------------------------------------------------------------
def test_groups_follow_time_and_merge_overlaps():
    assert [g.drives for g in group_evoked_drives(_net())] == [
        ["evprox1"], ["evdist1"], ["evprox2"]]
    assert [g.drives for g in group_evoked_drives(_net(extra_early=True))] == [
        ["evprox1", "evprox1b"], ["evdist1"], ["evprox2"]]


def test_stage_windows_and_weights_for_known_drives():
    net = _net()
    space = evoked_space(net, tstop=170.0)
    stages = plan_evoked_stages(net, space, TIMES, smooth_window=20.0)
    assert [s.name for s in stages] == ["evprox1", "evdist1", "evprox2", FINAL]
    p1, d1, p2, final = stages
    # each stage fits its own drive's parameters, the final stage all of them
    assert set(p1.params) == {n for n in space.names if n.startswith("evprox1.")}
    assert set(d1.params) == {n for n in space.names if n.startswith("evdist1.")}
    assert final.params == tuple(space.names)
    # rising edge: half weight one sigma before the drive's mean; falling
    # edge: half weight at the next drive's mean
    assert p1.rise == (23.5, 2.5) and p1.fall == (63.0, 4.0)
    assert d1.rise == (59.0, 4.0) and d1.fall == (120.0, 8.0)
    assert p2.rise == (112.0, 8.0) and p2.fall is None
    t = np.array([23.5, 40.0, 63.0, 100.0])
    expected = norm.cdf((t - 23.5) / 2.5) * norm.sf((t - 63.0) / 4.0)
    np.testing.assert_allclose(p1.weights(t), expected, rtol=1e-12)
    assert p1.weights([23.5])[0] == pytest.approx(0.5, abs=1e-6)
    assert p1.weights([63.0])[0] == pytest.approx(0.5, abs=1e-3)
    assert p2.weights([170.0])[0] == pytest.approx(1.0)
    # windows: where the weight is at least WEIGHT_FLOOR, on the target's times
    for st in (p1, d1, p2):
        w = st.weights(TIMES)
        inside = TIMES[w >= WEIGHT_FLOOR]
        assert (st.t_start, st.t_end) == (inside[0], inside[-1])
    # 1% of a normal edge is 2.33 of its scales away from its centre
    assert p1.t_start == pytest.approx(23.5 - 2.326 * 2.5, abs=0.5)
    assert p1.t_end == pytest.approx(63.0 + 2.326 * 4.0, abs=0.5)
    assert p2.t_end == 170.0 and final.t_end == 170.0 and final.weights(TIMES).min() == 1.0
    # simulations stop half a smoothing window after the window
    assert stage_sim_end(p1, TIMES, 20.0) == pytest.approx(p1.t_end + 10.0, abs=0.5)
    assert stage_sim_end(p2, TIMES, 20.0) == 170.0
    # the plan survives a round trip through the study file's JSON
    assert [Stage.from_dict(s.to_dict()) for s in stages] == stages


def test_parameters_outside_evoked_drives_wait_for_the_final_stage():
    net = _net()
    net.add_poisson_drive("pois", rate_constant={"L5_pyramidal": 10.0},
                          weights_ampa={"L5_pyramidal": 0.001}, location="proximal",
                          synaptic_delays={"L5_pyramidal": 1.0}, event_seed=9)
    space = ParameterSpace([Parameter("evprox1.mu", 20, 30),
                            Parameter("pois.rate_constant.L5_pyramidal", 1, 20),
                            Parameter("evprox2.mu", 110, 130)])
    stages = plan_evoked_stages(net, space, TIMES)
    # evdist1 has no fitted parameter: no stage of its own
    assert [(s.name, s.params) for s in stages] == [
        ("evprox1", ("evprox1.mu",)), ("evprox2", ("evprox2.mu",)),
        (FINAL, tuple(space.names))]


def test_one_group_means_one_stage():
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=20.0, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa={"L5_pyramidal": 0.01},
                         synaptic_delays=1.0, event_seed=4)
    stages = plan_evoked_stages(net, evoked_space(net), TIMES)
    assert [s.name for s in stages] == [FINAL]


def test_split_budget():
    stages = [Stage("a", params=("x", "y")), Stage("b", params=("z", "w")),
              Stage(FINAL, params=("x", "y", "z", "w"))]
    b = split_budget(100, stages)
    assert b == {"a": 30, "b": 30, FINAL: 40}
    # finished stages keep their count; the rest is shared by the others
    b = split_budget(100, stages, frozen={"a": 12})
    assert b["a"] == 12 and b["b"] + b[FINAL] == 88 and b[FINAL] >= 0.4 * 88 - 1
    assert sum(split_budget(7, stages).values()) == 7


# -- automatic space ------------------------------------------------------------
def test_evoked_space_ranges_and_overrides():
    net = _net()
    space = evoked_space(net, tstop=170.0)
    names = space.names
    # drives in time order; zero weights (absent synapses) are not fitted
    assert names[0] == "evprox1.mu" and "evprox1.ampa.L2_basket" not in names
    assert "evdist1.nmda.L2_pyramidal" in names
    assert (space["evprox1.mu"].low, space["evprox1.mu"].high) == (16.0, 36.0)  # +-10 ms
    assert (space["evprox2.mu"].low, space["evprox2.mu"].high) == (96.0, 144.0)  # +-3 sigma
    assert space["evprox1.sigma"].low == pytest.approx(2.5 / 3)
    assert space["evprox1.sigma"].high == pytest.approx(7.5)
    w = space["evprox1.ampa.L5_pyramidal"]
    assert w.log and (w.low, w.high) == pytest.approx((0.001, 0.1))
    w = space["evprox2.ampa.L2_pyramidal"]             # capped at max(1 uS, 2 w)
    assert (w.low, w.high) == pytest.approx((0.05, 1.0))
    # every current value lies inside its range
    current = space.current_values(net)
    assert all(space[n].low <= v <= space[n].high for n, v in current.items())
    # tstop caps the timing range
    assert evoked_space(net, tstop=130.0)["evprox2.mu"].high == 130.0
    over = evoked_space(net, overrides={"evprox1.mu": (20.0, 30.0),
                                        "evprox1.sigma": None,
                                        "evprox1.ampa.L2_basket": (0.001, 0.1, {"log": True}),
                                        "evdist1.delay.L5_pyramidal": (0.1, 5.0)})
    assert (over["evprox1.mu"].low, over["evprox1.mu"].high) == (20.0, 30.0)
    assert "evprox1.sigma" not in over
    assert over["evprox1.ampa.L2_basket"].log
    assert "evdist1.delay.L5_pyramidal" in over
    only = evoked_space(net, drives=["evdist1"])
    assert all(n.startswith("evdist1.") for n in only.names)


def test_evoked_space_errors():
    net = _net()
    with pytest.raises(ValueError, match="drives must name evoked drives.*'nope'"):
        evoked_space(net, drives=["nope"])
    with pytest.raises(ValueError, match="override 'evprox1.bogus' must name a parameter"):
        evoked_space(net, overrides={"evprox1.bogus": None})
    with pytest.raises(ValueError, match="must be \\(low, high\\)"):
        evoked_space(net, overrides={"evprox1.mu": (1.0,)})
    with pytest.raises(ValueError, match="must have at least one evoked drive"):
        evoked_space(jones_2009_model(mesh_shape=(3, 3)))


# -- staged studies on an analytic objective ------------------------------------
# The objective is replaced by a smooth function of the network's drive
# parameters, so the stage logic is exercised without NEURON. It records the
# full point each evaluation saw and the weights/window it was scored with.
OPTIMUM = {"evprox1.mu": 28.0, "evdist1.mu": 60.0, "evprox2.mu": 125.0}
CALLS = []


def _fake_call(self, params, seeds=None):
    vals = self.space.check_values(params)
    value = sum(((vals[n] - OPTIMUM[n]) / 10.0) ** 2 for n in OPTIMUM if n in vals)
    value += sum((math.log(v) + 4.0) ** 2 for n, v in vals.items() if ".ampa." in n)
    CALLS.append({"params": dict(vals), "t_end": float(self.target.times[-1]),
                  "weighted": self.metric == "weighted_rmse", "interrupt": False})
    if _fake_call.interrupt_at is not None and len(CALLS) == _fake_call.interrupt_at:
        raise KeyboardInterrupt
    if len(CALLS) in _fake_call.worse:
        value += 100.0
    return {"value": float(value), "scale": 1.0, "seeds": list(seeds or self.seeds),
            "n_trials": 1, "sim_s": 0.0, "dipole": np.zeros(len(self.target.times))}


@pytest.fixture
def fake_objective(monkeypatch):
    CALLS.clear()
    _fake_call.interrupt_at = None
    _fake_call.worse = set()
    monkeypatch.setattr(DipoleObjective, "__call__", _fake_call)
    return CALLS


def _space():
    return ParameterSpace([
        Parameter("evprox1.mu", 18.0, 36.0), Parameter("evprox1.ampa.L5_pyramidal",
                                                       0.001, 0.1, log=True),
        Parameter("evdist1.mu", 50.0, 75.0), Parameter("evprox2.mu", 100.0, 140.0)])


def _create(path, solver="cobyla", **kw):
    return Study.create(path, _net(), Target(TIMES, np.zeros_like(TIMES)), _space(),
                        objective={"smooth_window": 20.0}, solver=solver, stages="evoked",
                        **kw)


def test_stages_carry_the_best_point_forward(tmp_path, fake_objective):
    study = _create(tmp_path / "s.sqlite")
    _fake_call.worse = {8}     # the first stage's last evaluation: its worst
    budgets = {"evprox1": 8, "evdist1": 6, "evprox2": 6, FINAL: 6}
    summary = study.optimize(26, progress=False, stage_evals=budgets)
    assert set(summary.stages) == set(budgets)
    df = study.evaluations
    assert df.groupby("stage").size().to_dict() == budgets
    x0 = study.space.clip(study.x0)
    names = [s.name for s in study.stages]
    by_stage = {n: [c for c, st in zip(CALLS, df["stage"]) if st == n] for n in names}
    for k, st in enumerate(study.stages):
        calls = by_stage[st.name]
        carried = study.stage_point(names[k - 1]) if k else x0
        # the stage starts from the best point of the stages before it ...
        assert {n: calls[0]["params"][n] for n in st.params} == pytest.approx(
            {n: carried[n] for n in st.params})
        for c in calls:
            # ... and holds every parameter it does not fit there
            for n in study.space.names:
                if n not in st.params:
                    assert c["params"][n] == pytest.approx(carried[n])
            assert c["weighted"] == (not st.is_final)
            assert c["t_end"] == pytest.approx(
                170.0 if st.is_final else stage_sim_end(st, TIMES, 20.0))
    # the best point, not the last one
    first = df[df["stage"] == "evprox1"]
    best_row = first.loc[first["value"].idxmin()]
    assert study.stage_point("evprox1")["evprox1.mu"] == best_row["evprox1.mu"]
    assert best_row.name != first.index[-1]
    # the study's best is the final stage's
    final = df[df["stage"] == FINAL]
    assert study.best_value == final["value"].min()
    assert study.best_params == study.stage_point()
    assert summary.best_value == study.best_value


def test_staged_study_resumes_mid_stage(tmp_path, fake_objective):
    budgets = {"evprox1": 6, "evdist1": 6, "evprox2": 5, FINAL: 6}
    ref = _create(tmp_path / "ref.sqlite", solver="bayesian",
                  solver_options={"n_initial_points": 3, "acq_optimizer": "sampling",
                                  "n_points": 500})
    ref.optimize(23, progress=False, stage_evals=budgets)
    expected = ref.evaluations[["stage", "value"] + ref.space.names]

    CALLS.clear()
    _fake_call.interrupt_at = 9          # the 3rd evaluation of stage evdist1
    study = _create(tmp_path / "s.sqlite", solver="bayesian",
                    solver_options={"n_initial_points": 3, "acq_optimizer": "sampling",
                                    "n_points": 500})
    summary = study.optimize(23, progress=False, stage_evals=budgets)
    assert summary.interrupted
    path = study.path
    study.close()
    counts = Study.load(path).evaluations.query("status == 'complete'").groupby("stage").size()
    assert counts.to_dict() == {"evprox1": 6, "evdist1": 2}

    _fake_call.interrupt_at = None
    CALLS.clear()
    again = Study.load(path)
    assert [s.name for s in again.stages] == [s.name for s in ref.stages]
    again.optimize(23, progress=False, stage_evals=budgets)
    # only what was missing ran: the interrupted evaluation and what follows
    assert len(CALLS) == 23 - 8
    got = again.evaluations.query("status == 'complete'")[
        ["stage", "value"] + again.space.names].reset_index(drop=True)
    np.testing.assert_array_equal(got["stage"], expected["stage"])
    for col in ["value"] + again.space.names:
        np.testing.assert_allclose(got[col].astype(float), expected[col].astype(float),
                                   rtol=1e-12, equal_nan=True)
    assert again.best_value == ref.best_value


def test_resampled_stages_each_run_on_new_trials(tmp_path, fake_objective):
    # CMA-ES generations of 2, two seeds each: every stage walks seeds of its
    # own, after the ones the stages before it used
    study = Study.create(tmp_path / "r.sqlite", _net(), Target(TIMES, np.zeros_like(TIMES)),
                         _space(), objective={"smooth_window": 20.0, "n_trials": 2,
                                              "seeds": [0, 1], "resample": True},
                         solver="cma", solver_options={"popsize": 2, "sigma0": 0.1},
                         stages="evoked")
    budgets = {"evprox1": 4, "evdist1": 2, "evprox2": 2, FINAL: 4}
    study.optimize(12, progress=False, stage_evals=budgets)
    df = study.evaluations
    seeds = {st.name: sorted({tuple(x) for x in df[df["stage"] == st.name]["seeds"]})
             for st in study.stages}
    assert seeds == {"evprox1": [(0, 1), (2, 3)], "evdist1": [(4, 5)],
                     "evprox2": [(6, 7)], FINAL: [(8, 9), (10, 11)]}
    assert study.used_seeds() == list(range(12))


def test_staged_progress_and_callback_per_stage(tmp_path, fake_objective, capsys):
    # one progress line per evaluation under each stage's header; the
    # callback sees every row with its stage, the way an unstaged run does
    study = _create(tmp_path / "s.sqlite")
    seen = []
    study.optimize(8, stage_evals={"evprox1": 2, "evdist1": 2, "evprox2": 2, FINAL: 2},
                   callback=seen.append)
    names = [st.name for st in study.stages]
    assert [r["stage"] for r in seen] == [n for n in names for _ in range(2)]
    assert [r["id"] for r in seen] == [r["id"] for r in study.storage.rows()]
    err = capsys.readouterr().err.splitlines()
    headers = [line for line in err if line.startswith("stage ")]
    assert [h.split()[2].rstrip(":") for h in headers] == names
    assert headers[0].startswith("stage 1/4 evprox1: 2 parameters, ")
    assert headers[-1] == f"stage 4/4 {FINAL}: 4 parameters, whole waveform, 2 evaluations"
    assert [line.split("]")[1].split()[0] for line in err if line.startswith("[")] == \
        ["1/2", "2/2"] * 4
    # at its budget the run writes no line and calls nothing
    study.optimize(8, callback=seen.append)
    assert capsys.readouterr().err == "" and len(seen) == 8


def test_staged_study_refuses_mismatches(tmp_path, fake_objective):
    path = tmp_path / "s.sqlite"
    _create(path).close()
    with pytest.raises(StudyError, match="with stages"):
        Study.create(path, _net(), Target(TIMES, np.zeros_like(TIMES)), _space(),
                     objective={"smooth_window": 20.0}, solver="cobyla", exist_ok=True)
    with pytest.raises(ValueError, match="metric of a staged fit must be"):
        Study.create(tmp_path / "t.sqlite", _net(), Target(TIMES, np.zeros_like(TIMES)),
                     _space(), objective={"metric": "corr"}, stages="evoked")
    with pytest.raises(ValueError, match="stages must be None or 'evoked'"):
        Study.create(tmp_path / "u.sqlite", _net(), Target(TIMES, np.zeros_like(TIMES)),
                     _space(), stages="all")
    study = Study.load(path)
    with pytest.raises(ValueError, match="stage_evals keys must be stage names"):
        study.optimize(10, progress=False, stage_evals={"evprox9": 3})
    with pytest.raises(StudyError, match="no complete evaluation"):
        study.best_value


# -- a real staged fit (NEURON, 3x3 network, 80 ms) ---------------------------------
def test_small_staged_fit_simulates_each_window(tmp_path):
    times = np.arange(0.0, 80.0 + 1e-9, 0.5)
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=15.0, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa={"L2_pyramidal": 0.02, "L5_pyramidal": 0.05},
                         synaptic_delays=1.0, event_seed=4)
    net.add_evoked_drive("evdist1", mu=45.0, sigma=3.0, numspikes=1, location="distal",
                         weights_ampa={"L2_pyramidal": 0.03, "L5_pyramidal": 0.05},
                         synaptic_delays=0.1, event_seed=5)
    space = ParameterSpace([Parameter("evprox1.mu", 10.0, 22.0),
                            Parameter("evdist1.mu", 38.0, 52.0)])
    truth = {"evprox1.mu": 18.0, "evdist1.mu": 42.0}
    probe = DipoleObjective(net, Target(times, np.zeros_like(times)), space,
                            smooth_window=5.0, scale=100.0)
    target = Target(times, probe(truth)["dipole"])
    study = Study.create(tmp_path / "s.sqlite", net, target, space, solver="cobyla",
                         objective={"smooth_window": 5.0, "scale": 100.0}, stages="evoked")
    study.optimize(12, progress=False,
                   stage_evals={"evprox1": 4, "evdist1": 4, FINAL: 4})
    df = study.evaluations
    assert (df["status"] == "complete").all()
    for st in study.stages:
        rows = study.storage.rows(stage=st.name)
        n_samples = {len(r["info"]["dipole"]) for r in rows}
        end = 80.0 if st.is_final else stage_sim_end(st, times, 5.0)
        assert n_samples == {int(np.sum(times <= end))}
    # the first stage stops well before the end of the target
    assert stage_sim_end(study.stages[0], times, 5.0) < 60.0
    # the stages improve on the start point, scored on the whole waveform
    start = study.objective(study.space.clip(study.x0))["value"]
    assert study.best_value < start
    with pytest.raises(ValueError, match="one solver per stage"):
        study.replay_solver()


def test_staged_study_plots_and_best_net(tmp_path, fake_objective):
    import matplotlib
    matplotlib.use("Agg")
    study = _create(tmp_path / "s.sqlite")
    study.optimize(8, progress=False,
                   stage_evals={"evprox1": 2, "evdist1": 2, "evprox2": 2, FINAL: 2})
    # rows of drive stages lack the other drives' parameters: plots cope
    for fig in (study.plot_params(show=False), study.plot_convergence(show=False)):
        assert len(fig.axes) >= 1
    # the best network holds every stage's best values
    best, net = study.best_params, study.best_net()
    for drive in ("evprox1", "evdist1", "evprox2"):
        assert net.external_drives[drive]["dynamics"]["mu"] == best[f"{drive}.mu"]
