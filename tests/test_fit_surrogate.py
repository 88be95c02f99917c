"""The pooled waveform model (no simulation): known quadratic waveforms plus
noise shared by the points of a batch, as resampled CMA-ES batches have."""
import numpy as np
import pytest

from hnnfit.fit.surrogate import WaveformSurrogate

TIMES = np.linspace(0.0, 1.0, 40)
TRUE_X = np.array([0.55, 0.35, 0.7])


def expected_waveform(X):
    """A waveform whose shape moves smoothly (and non-linearly) with 3 parameters."""
    X = np.atleast_2d(X)
    t = TIMES[None, :]
    a, b, c = X[:, :1], X[:, 1:2], X[:, 2:3]
    return (10.0 * np.sin(2 * np.pi * (t + 0.3 * a)) + 6.0 * b * t
            + 4.0 * (c - 0.2) ** 2 * np.cos(3 * np.pi * t))


def batches(n_batches=40, size=8, shared=3.0, own=0.3, seed=0):
    """Points around a centre drifting to the truth; each batch's noise shared."""
    rng = np.random.default_rng(seed)
    X, W, groups = [], [], []
    start = np.array([0.3, 0.6, 0.45])
    for b in range(n_batches):
        centre = start + (TRUE_X - start) * min(1.0, b / (0.6 * n_batches))
        pts = np.clip(centre + rng.normal(scale=0.04, size=(size, 3)), 0, 1)
        noise = shared * rng.normal(size=len(TIMES))        # this batch's trials
        W.append(expected_waveform(pts) + noise + own * rng.normal(size=(size, len(TIMES))))
        X.append(pts)
        groups += [b] * size
    return np.vstack(X), np.vstack(W), np.array(groups)


def true_rmse(x, target):
    return float(np.sqrt(np.mean((expected_waveform(x)[0] - target) ** 2)))


def test_pooled_model_finds_a_better_point_than_any_evaluation():
    target = expected_waveform(TRUE_X)[0]
    X, W, groups = batches()
    model = WaveformSurrogate(ridge=1.0).fit(X, W, groups)
    assert model.n_groups_ == 40
    point, predicted = model.minimize(target, radius=3.0)
    # the evaluation with the lowest value was lucky in its batch's trials;
    # the model's minimum is nearer the truth than the best evaluations
    values = np.sqrt(np.mean((W - target) ** 2, axis=1))
    best_rows = np.argsort(values)[:5]
    assert true_rmse(point, target) < min(true_rmse(X[i], target) for i in best_rows)
    assert np.abs(point - TRUE_X).max() < 0.05
    assert predicted == pytest.approx(
        np.sqrt(np.mean((model.predict(point)[0] - target) ** 2)))
    # the model's level averages trial sets: near the truth it predicts the
    # expected waveform, not one batch's
    near = np.abs(X - TRUE_X).max(axis=1) < 0.08
    err_model = np.sqrt(np.mean((model.predict(X[near]) - expected_waveform(X[near])) ** 2))
    err_rows = np.sqrt(np.mean((W[near] - expected_waveform(X[near])) ** 2))
    assert err_model < err_rows / 3


def test_trust_region_and_weights():
    target = expected_waveform(TRUE_X)[0]
    X, W, groups = batches()
    model = WaveformSurrogate().fit(X, W, groups)
    for radius in (0.2, 1.0):
        point, _ = model.minimize(target, radius=radius)
        z = (point - model.center_) / model.spread_
        assert np.linalg.norm(z) <= radius * (1 + 1e-6)
        assert ((point >= 0) & (point <= 1)).all()
    # weights: only the first half of the times counts
    w = (TIMES < 0.5).astype(float)
    point, rmse = model.minimize(target, radius=3.0, weights=w)
    pred = model.predict(point)[0]
    assert rmse == pytest.approx(np.sqrt(np.sum(w * (pred - target) ** 2) / w.sum()))


def test_refusals():
    X, W, groups = batches(n_batches=3, size=4)
    with pytest.raises(ValueError, match="needs more than 9 evaluations beyond one per "
                                         "group, got 9"):
        WaveformSurrogate().fit(X, W, groups)
    X, W, groups = batches()
    with pytest.raises(ValueError, match="W must have one waveform per point"):
        WaveformSurrogate().fit(X, W[:-1], groups)
    with pytest.raises(ValueError, match="groups must have one label per point"):
        WaveformSurrogate().fit(X, W, groups[:-1])
    flat = X.copy()
    flat[:, 1] = 0.5
    with pytest.raises(ValueError, match=r"columns \[1\] do not"):
        WaveformSurrogate().fit(flat, W, groups)
    with pytest.raises(ValueError, match="ridge"):
        WaveformSurrogate(ridge=0.0).fit(X, W, groups)
    model = WaveformSurrogate().fit(X, W, groups)
    with pytest.raises(ValueError, match="target must have 40 values, got 3"):
        model.minimize(np.zeros(3))
    with pytest.raises(ValueError, match="radius"):
        model.minimize(np.zeros(40), radius=-1.0)
