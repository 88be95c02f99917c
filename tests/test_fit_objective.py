"""The objective's preprocessing and metrics (no simulation), and a fit on a
Dask cluster that logs to a study (small simulations)."""
import numpy as np
import pytest

from hnnfit import jones_2009_model
from hnnfit.dipole import Dipole
from hnnfit.fit import DipoleObjective, ParameterSpace, read_target


def _net():
    net = jones_2009_model(mesh_shape=(3, 3))
    net.add_evoked_drive("evprox1", mu=12.0, sigma=2.0, numspikes=1, location="proximal",
                         weights_ampa={"L2_pyramidal": 0.02, "L5_pyramidal": 0.04},
                         event_seed=4)
    return net


SPACE = ParameterSpace([("evprox1.mu", 8.0, 20.0)])


def _target(values, times):
    return read_target(np.c_[times, values])


def _dipole(times, values):
    return Dipole(times, {"agg": values, "L2": np.zeros_like(values), "L5": values})


@pytest.fixture
def signals():
    times = np.arange(0.0, 40.0 + 1e-9, 0.025)
    sim = np.sin(2 * np.pi * times / 40.0) * np.exp(-times / 30.0)
    target_times = np.arange(0.0, 40.0 + 1e-9, 1.0)
    target = 2.5 * np.interp(target_times, times, sim) + 0.01 * np.cos(target_times)
    return times, sim, target_times, target


def test_metrics_by_hand(signals):
    times, sim, ttimes, target = signals
    dpl = _dipole(times, sim)
    sim_on_t = np.interp(ttimes, times, sim)
    common = dict(smooth_window=0.0, scale=2.0)

    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="rmse", **common)
    value, scale, out = obj.score_dipole(dpl)
    assert scale == 2.0
    np.testing.assert_allclose(out, 2.0 * sim_on_t)
    assert value == pytest.approx(np.sqrt(np.mean((2 * sim_on_t - target) ** 2)))

    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="nrmse", **common)
    assert obj.score_dipole(dpl)[0] == pytest.approx(
        np.sqrt(np.mean((2 * sim_on_t - target) ** 2)) / np.ptp(target))

    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="corr", **common)
    assert obj.score_dipole(dpl)[0] == pytest.approx(
        1 - np.corrcoef(sim_on_t, target)[0, 1])

    w = np.where(ttimes < 20, 3.0, 1.0)
    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="weighted_rmse",
                          weights=w, **common)
    assert obj.score_dipole(dpl)[0] == pytest.approx(
        np.sqrt(np.sum(w * (2 * sim_on_t - target) ** 2) / np.sum(w)))

    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE,
                          metric=lambda s, t, tt: float(np.max(np.abs(s - t))), **common)
    assert obj.score_dipole(dpl)[0] == pytest.approx(np.max(np.abs(2 * sim_on_t - target)))


def test_hnn_rmse_resamples_like_hnn_core(signals):
    from scipy.signal import resample

    times, sim, ttimes, target = signals
    dpl = _dipole(times, sim)
    common = dict(smooth_window=0.0, scale=2.0)
    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="hnn_rmse",
                          **common)
    value, scale, out = obj.score_dipole(dpl)
    # by hand: both series over [0, 40) ms (the last sample left out), the
    # simulated one (1600 samples) Fourier-resampled to the target's 40
    a = resample(sim[:1600], 40)
    assert value == pytest.approx(np.sqrt(np.mean((2.0 * a - target[:40]) ** 2)), rel=1e-12)
    # the dipole kept for plots is still the one on the target's times
    np.testing.assert_allclose(out, 2.0 * np.interp(ttimes, times, sim))
    # on a smooth waveform it is close to the interpolated RMSE, not equal:
    # the two resamplings differ by up to 0.011 here and the RMSEs by 1.25%
    plain = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="rmse",
                            **common).score_dipole(dpl)[0]
    assert plain == pytest.approx(np.sqrt(np.mean((2 * np.interp(ttimes, times, sim)
                                                   - target) ** 2)), rel=1e-12)
    assert 0.005 < (value - plain) / plain < 0.03
    fitted = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="hnn_rmse",
                             smooth_window=0.0, scale="fit").score_dipole(dpl)
    assert fitted[1] == pytest.approx(float(a @ target[:40] / (a @ a)))
    with pytest.raises(ValueError, match="'hnn_rmse' takes no weights"):
        DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="hnn_rmse",
                        weights=np.ones(len(ttimes)))


def test_fitted_scale_and_smoothing(signals):
    times, sim, ttimes, target = signals
    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, smooth_window=5.0,
                          scale="fit")
    value, scale, out = obj.score_dipole(_dipole(times, sim))
    smoothed = np.interp(ttimes, times, _dipole(times, sim).smooth(5.0).data["agg"])
    # the fitted factor minimises the RMSE: nudging it either way is worse
    rmse = lambda s: np.sqrt(np.mean((s * smoothed - target) ** 2))  # noqa: E731
    assert value == pytest.approx(rmse(scale))
    assert rmse(scale * 1.01) > value and rmse(scale * 0.99) > value
    # a signal anti-correlated with the target gets the non-negative bound
    _, neg_scale, _ = obj.score_dipole(_dipole(times, -sim))
    assert neg_scale == 0.0


def test_psd_band_metric_prefers_the_right_rhythm():
    ttimes = np.arange(0.0, 500.0, 1.0)
    target = np.sin(2 * np.pi * 20.0 * ttimes / 1000.0)
    times = np.arange(0.0, 500.0, 0.025)
    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="psd_band",
                          band=(10.0, 30.0), smooth_window=0.0, scale=1.0)
    same = obj.score_dipole(_dipole(times, np.sin(2 * np.pi * 20.0 * times / 1000.0)))[0]
    other = obj.score_dipole(_dipole(times, np.sin(2 * np.pi * 12.0 * times / 1000.0)))[0]
    assert same < other


@pytest.mark.parametrize("kwargs, match", [
    (dict(metric="mse"), "metric"),
    (dict(scale="auto"), "scale must be a positive number or 'fit', got 'auto'"),
    (dict(scale=-1.0), "scale"),
    (dict(smooth_window=-5.0), "smooth_window"),
    (dict(metric="weighted_rmse"), "weights"),
    (dict(metric="psd_band"), "band"),
    (dict(n_trials=2, seeds=[0]), "seeds"),
    (dict(n_trials=2, seeds=[0, 0]), r"seeds must be distinct .* got 0 more than once in \[0, 0\]"),
    (dict(layer="L6"), "layer"),
])
def test_bad_objective_settings(signals, kwargs, match):
    _, _, ttimes, target = signals
    with pytest.raises((ValueError, TypeError), match=match):
        DipoleObjective(_net(), _target(target, ttimes), SPACE, **kwargs)


def test_repeated_held_out_seeds_are_refused_before_simulating(signals):
    _, _, ttimes, target = signals
    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE)
    with pytest.raises(ValueError, match=r"got 3 more than once in \[3, 4, 3\]"):
        obj.score_held_out(obj.space.midpoint(), [3, 4, 3])


def test_with_settings_copies_all_but_the_changed_settings(signals):
    _, _, ttimes, target = signals
    w = np.linspace(0.0, 1.0, len(ttimes))
    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, n_trials=2, seeds=[7, 9],
                          group_size=2, smooth_window=12.0, scale=1500.0,
                          metric="weighted_rmse", weights=w, layer="L5", timeout=30.0)
    fine = obj.with_settings(dt=0.05)
    assert fine.dt == 0.05 and obj.dt == 0.025
    assert (fine.net, fine.target, fine.space) == (obj.net, obj.target, obj.space)
    assert {**fine.settings(), "dt": 0.025} == obj.settings()
    # new seeds set the trial count; a new count without seeds starts at 0
    assert fine.with_settings(seeds=[3, 4, 5, 6]).n_trials == 4
    assert obj.with_settings(n_trials=4).seeds == [0, 1, 2, 3]
    # the copy is checked as the constructor checks
    with pytest.raises(ValueError, match="dt"):
        obj.with_settings(dt=-1.0)
    with pytest.raises(ValueError, match="got mesh_shape"):
        obj.with_settings(mesh_shape=(2, 2))


def test_unknown_parameter_is_refused_before_simulating(signals):
    _, _, ttimes, target = signals
    with pytest.raises(ValueError, match="evprox9"):
        DipoleObjective(_net(), _target(target, ttimes),
                        ParameterSpace([("evprox9.mu", 1.0, 2.0)]))


def test_dask_local_cluster_fit_logs_to_a_study(tmp_path):
    """A few evaluations on a Dask LocalCluster (worker processes running
    NEURON), addressed by its scheduler address, written to a study."""
    import distributed  # the [dask] extra, installed by CI

    import hnnfit

    net = _net()
    obj = DipoleObjective(net, _target(np.zeros(31), np.arange(0.0, 31.0)), SPACE,
                          smooth_window=0.0, scale=1.0)
    truth = obj({"evprox1.mu": 14.0})["dipole"]
    target = _target(truth, np.arange(0.0, 31.0))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        study = hnnfit.Study.create(tmp_path / "dask.sqlite", net, target, SPACE,
                                    objective=dict(smooth_window=0.0, scale=1.0),
                                    solver="bayesian", seed=1,
                                    solver_options=dict(n_initial_points=2))
        summary = study.optimize(4, n_jobs=2, backend="dask", progress=False,
                                 scheduler=cluster.scheduler_address)
    assert summary.n_complete == 4
    trials = hnnfit.Study.load(tmp_path / "dask.sqlite").evaluations
    assert len(trials) == 4 and (trials["status"] == "complete").all()
    # rows were written by this (driving) process, evaluated by the workers
    import os
    assert set(trials["pid"]) == {os.getpid()}
    assert trials["worker_pid"].notna().all()
    assert os.getpid() not in set(trials["worker_pid"])


def test_time_out_is_a_failed_row_and_the_study_goes_on(tmp_path):
    import hnnfit
    from hnnfit.exceptions import SimulationError

    net = _net()
    target = _target(np.zeros(31), np.arange(0.0, 31.0))
    slow = DipoleObjective(net, target, SPACE, smooth_window=0.0, scale=1.0, timeout=1e-6)
    with pytest.raises(SimulationError, match="time-out"):
        slow({"evprox1.mu": 12.0})
    # the same point without a limit still simulates (the kept model was released)
    fine = DipoleObjective(net, target, SPACE, smooth_window=0.0, scale=1.0)
    assert np.isfinite(fine({"evprox1.mu": 12.0})["value"])

    study = hnnfit.Study.create(tmp_path / "t.sqlite", net, target, SPACE,
                                objective=dict(smooth_window=0.0, scale=1.0, timeout=1e-6),
                                solver="cobyla")
    summary = study.optimize(3, progress=False)
    assert summary.n_failed == 3 and summary.n_complete == 0
    errors = study.evaluations["error"].tolist()
    assert all("time-out" in e for e in errors)


def _fake_trials(obj, times, base):
    """Replace the simulation: trial ``s`` is ``base`` scaled by ``1 + 0.2 (s - 1.5)``
    plus a seed-specific ripple, so groups of trials differ."""
    def fake(params, seeds, n_jobs=1):
        seeds = obj.seeds if seeds is None else list(seeds)
        return [_dipole(times, base * (1 + 0.2 * (s - 1.5)) + 0.05 * np.sin(times * (s + 1)))
                for s in seeds]
    obj._simulate_trials = fake
    return fake


@pytest.mark.parametrize("scale", [2.0, "fit"])
def test_group_size_scores_the_mean_of_group_averages(signals, scale):
    from hnnfit.dipole import average_dipoles

    times, sim, ttimes, target = signals
    tgt = _target(target, ttimes)
    common = dict(n_trials=4, smooth_window=0.0, scale=scale)
    grouped = DipoleObjective(_net(), tgt, SPACE, group_size=2, **common)
    plain = DipoleObjective(_net(), tgt, SPACE, **common)
    fake = _fake_trials(grouped, times, sim)
    _fake_trials(plain, times, sim)

    out = grouped({"evprox1.mu": 12.0})
    ref = plain({"evprox1.mu": 12.0})
    # the dipole and the scale are those of all four trials' average
    np.testing.assert_allclose(out["dipole"], ref["dipole"])
    assert out["scale"] == ref["scale"]
    # by hand: each pair of consecutive seeds averaged, scored with that scale
    dpls = fake(None, None)
    by_hand = []
    for pair in (dpls[:2], dpls[2:]):
        avg = np.interp(ttimes, times, average_dipoles(pair).data["agg"])
        by_hand.append(np.sqrt(np.mean((out["scale"] * avg - target) ** 2)))
    np.testing.assert_allclose(out["group_values"], by_hand)
    assert out["value"] == pytest.approx(np.mean(by_hand))
    # the groups' mean is never below the score of the average of them all
    # (triangle inequality); here the groups differ, so it is above it
    assert out["value"] > ref["value"]
    assert "group_values" not in ref
    assert grouped.settings()["group_size"] == 2 and plain.settings()["group_size"] is None


def test_group_size_on_held_out_seeds(signals):
    times, sim, ttimes, target = signals
    tgt = _target(target, ttimes)
    obj = DipoleObjective(_net(), tgt, SPACE, n_trials=4, group_size=2, smooth_window=0.0)
    _fake_trials(obj, times, sim)
    # one group of held-out seeds: the plain score of their average
    one = obj.score_held_out({"evprox1.mu": 12.0}, [7, 8])
    assert "group_values" not in one and one["n_trials"] == 2
    with pytest.raises(ValueError, match=r"multiple of group_size \(2\), got 3"):
        obj.score_held_out({"evprox1.mu": 12.0}, [7, 8, 9])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_trials=6, group_size=4), r"n_trials must be a multiple of group_size \(4\), got 6"),
    (dict(n_trials=2, group_size=0), "group_size"),
    (dict(n_trials=2, group_size=1.5), "group_size must be an integer"),
])
def test_bad_group_size(signals, kwargs, match):
    _, _, ttimes, target = signals
    with pytest.raises((ValueError, TypeError), match=match):
        DipoleObjective(_net(), _target(target, ttimes), SPACE, **kwargs)


def test_error_budget_recovers_known_bias_and_noise():
    from hnnfit.fit import error_budget

    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 100.0, 60)
    target = 50.0 * np.sin(t / 15.0)
    offset = 3.0 * np.cos(t / 7.0)          # the model's mean misses by this
    sd = 4.0 + 2.0 * (t > 50.0)             # and single trials scatter by this
    trials = target + offset + sd * rng.standard_normal((4000, len(t)))
    out = error_budget(trials, target, k=3)
    assert out["n_trials"] == 4000 and out["k"] == 3
    # Tolerances are about three standard errors of the estimates from 4000
    # trials (measured with this seed: bias2 -0.82%, var +0.25%, expected
    # -0.29% against the groups and -0.06% against the formula, largest
    # deviation of the mean 2.2 standard errors)
    assert out["bias2"] == pytest.approx(np.mean(offset ** 2), rel=0.03)
    assert out["var"] == pytest.approx(np.mean(sd ** 2), rel=0.01)
    assert np.all(np.abs(out["mean"] - (target + offset)) < 4 * sd / np.sqrt(4000))
    # the expected RMSE of a 3-trial average: sqrt(bias^2 + sigma^2 / 3) ...
    assert out["expected"] == pytest.approx(
        np.sqrt(np.mean(offset ** 2) + np.mean(sd ** 2) / 3), rel=0.01)
    # ... and what 3-trial averages actually score, on average over many of them
    groups = trials.reshape(-1, 4, len(t))[:, :3].mean(axis=1)
    msq = np.mean((groups - target) ** 2, axis=1).mean()
    assert out["expected"] == pytest.approx(np.sqrt(msq), rel=0.01)

    # with exactly k trials it is the RMSE of their average
    few = trials[:3]
    exact = np.sqrt(np.mean((few.mean(axis=0) - target) ** 2))
    assert error_budget(few, target, k=3)["expected"] == pytest.approx(exact, rel=1e-12)
    one = error_budget(few, target, k=3)
    np.testing.assert_allclose(one["group_rmse"], [exact], rtol=1e-12)
    np.testing.assert_allclose(one["trial_rmse"],
                               np.sqrt(np.mean((few - target) ** 2, axis=1)), rtol=1e-12)
    assert len(error_budget(few, target, k=4)["group_rmse"]) == 0
    with pytest.raises(ValueError, match=r"at least 2 trials .* got shape \(1, 60\)"):
        error_budget(trials[:1], target)
    with pytest.raises(ValueError, match=r"one value per time point \(60\), got shape \(59,\)"):
        error_budget(trials[:5], target[:-1])
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        error_budget(trials[:5], target, k=0)
    with pytest.raises(ValueError, match="max_groups must be >= 1, got 0"):
        error_budget(trials[:5], target, max_groups=0)


def test_error_budget_group_distribution():
    """The k-trial groups' RMSEs: every group when few, a fixed sample when many."""
    from hnnfit.fit import error_budget

    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 100.0, 40)
    target = 30.0 * np.sin(t / 20.0)
    trials = target + 2.0 + 5.0 * rng.standard_normal((12, len(t)))
    out = error_budget(trials, target, k=3)
    # all C(12, 3) = 220 groups, each the RMSE of its own average
    assert len(out["group_rmse"]) == 220
    by_hand = sorted(np.sqrt(np.mean((trials[[a, b, c]].mean(axis=0) - target) ** 2))
                     for a in range(12) for b in range(a + 1, 12) for c in range(b + 1, 12))
    np.testing.assert_allclose(np.sort(out["group_rmse"]), by_hand, rtol=1e-12)
    # the groups' mean square error is the U-statistic that `expected` estimates
    assert np.mean(out["group_rmse"] ** 2) == pytest.approx(out["expected"] ** 2, rel=1e-9)

    # too many groups: a fixed sample of distinct-trial groups from the same distribution
    many = target + 2.0 + 5.0 * rng.standard_normal((40, len(t)))
    a = error_budget(many, target, k=3, max_groups=500)
    b = error_budget(many, target, k=3, max_groups=500)
    assert len(a["group_rmse"]) == 500
    np.testing.assert_array_equal(a["group_rmse"], b["group_rmse"])
    full = error_budget(many, target, k=3)["group_rmse"]
    assert len(full) == 9880
    # the median of 500 sampled groups has a standard error of ~0.55% of the
    # full median here (measured difference 0.22%)
    assert np.median(a["group_rmse"]) == pytest.approx(np.median(full), rel=0.02)


@pytest.mark.parametrize("scale", [2.0, "fit"])
def test_objective_error_budget_processes_each_trial(signals, scale):
    times, sim, ttimes, target = signals
    obj = DipoleObjective(_net(), _target(target, ttimes), SPACE, n_trials=4, group_size=2,
                          smooth_window=3.0, scale=scale)
    _fake_trials(obj, times, sim)
    point = {"evprox1.mu": 12.0}
    out = obj.error_budget(point, [0, 1, 2, 3])
    assert out["k"] == 2 and out["seeds"] == [0, 1, 2, 3]
    # the mean of the processed trials is the processed mean (smoothing is
    # linear), scored with the same scale
    ref = obj.score_held_out(point, [0, 1, 2, 3])
    assert out["scale"] == ref["scale"]
    np.testing.assert_allclose(out["mean"], ref["dipole"], rtol=1e-12, atol=1e-12)
    # four trials in averages of four: exactly their average's RMSE
    plain = DipoleObjective(_net(), _target(target, ttimes), SPACE, n_trials=4,
                            smooth_window=3.0, scale=scale)
    _fake_trials(plain, times, sim)
    assert obj.error_budget(point, [0, 1, 2, 3], k=4)["expected"] == pytest.approx(
        plain(point)["value"], rel=1e-10)
    with pytest.raises(ValueError, match="at least 2 seeds, got 1"):
        obj.error_budget(point, [5])
    corr = DipoleObjective(_net(), _target(target, ttimes), SPACE, metric="corr")
    with pytest.raises(ValueError, match="metric must be 'rmse' for an error budget, got 'corr'"):
        corr.error_budget(point, [0, 1])
