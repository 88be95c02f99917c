"""A quadratic model of the expected waveform, pooled from a study's evaluations.

A noisy objective scores each point on a few trials; the value of any one
evaluation carries that trial set's noise, which is of the size of the
differences a fit chooses between. But every evaluation also stores its
waveform, and neighbouring evaluations share most of their waveform. A
regression of the waveforms on the parameters (linear and quadratic terms,
per time point) pools hundreds of evaluations into one estimate of how the
expected waveform moves with the parameters; its minimum distance to the
target is a point no single evaluation chose.

Evaluations run on the same trials share their noise. With ``groups`` (the
batch of each evaluation: a resampled run gives each batch its own trials)
the model is fitted within groups, each group's own level being removed, so
that the shared noise does not pass for an effect of the parameters; the
model's level is then the average over groups, i.e. over trial sets.

The model is only trusted near the evaluations: its minimum is searched
within ``radius`` standard deviations (of the evaluated points, per
parameter, on the unit cube) of their mean.
"""
from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np

from ..validation import check_finite_array, check_int, check_positive


class WaveformSurrogate:
    """Quadratic regression of waveforms on parameters (unit-cube coordinates).

    Parameters
    ----------
    ridge : float
        Ridge penalty on the coefficients of the standardized features
        (> 0), which keeps the quadratic terms tame where few evaluations
        inform them.

    Attributes
    ----------
    center_, spread_ : ndarray, shape (n_params,)
        Mean and standard deviation of the evaluated points (unit cube).
    coef_ : ndarray, shape (n_features, n_times)
    level_ : ndarray, shape (n_times,)
        The waveform at ``center_`` (averaged over groups).
    n_groups_ : int
    """

    def __init__(self, ridge=1.0):
        self.ridge = ridge

    def _features(self, X):
        z = (np.atleast_2d(X) - self.center_) / self.spread_
        k = z.shape[1]
        quad = [z[:, i] * z[:, j] for i, j in combinations_with_replacement(range(k), 2)]
        return np.column_stack([z] + quad)

    def fit(self, X, W, groups=None):
        """Fit the model.

        Parameters
        ----------
        X : array, shape (n, n_params)
            Evaluated points on the unit cube.
        W : array, shape (n, n_times)
            Their waveforms (nAm), on the target's times.
        groups : array of int, shape (n,) | None
            Evaluations sharing their trials (e.g. their batch); None: all
            evaluations are independent draws.

        Returns
        -------
        self
        """
        ridge = check_positive(self.ridge, "ridge")
        X = check_finite_array(X, "X", ndim=2)
        W = check_finite_array(W, "W", ndim=2)
        n, k = X.shape
        if W.shape[0] != n:
            raise ValueError(f"W must have one waveform per point ({n}), got {W.shape[0]}")
        groups = np.arange(n) if groups is None else np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one label per point ({n}), got shape "
                             f"{groups.shape}")
        n_feat = k + k * (k + 1) // 2
        labels, inverse = np.unique(groups, return_inverse=True)
        n_groups = len(labels)
        if n_groups == n:
            # independent draws: one common level for all of them
            inverse = np.zeros(n, dtype=int)
        n_levels = int(inverse.max()) + 1
        dof = n - n_levels
        if dof <= n_feat:
            raise ValueError(f"a quadratic model of {k} parameters needs more than {n_feat} "
                             f"evaluations beyond one per group, got {dof}")
        self.center_ = X.mean(axis=0)
        self.spread_ = X.std(axis=0)
        if not (self.spread_ > 0).all():
            flat = [int(i) for i in np.flatnonzero(self.spread_ <= 0)]
            raise ValueError(f"every parameter must vary among the points; those of "
                             f"columns {flat} do not")
        counts = np.bincount(inverse)[:, None]

        def group_means(A):
            out = np.zeros((n_levels, A.shape[1]))
            np.add.at(out, inverse, A)
            return out / counts

        P = self._features(X)
        # within groups: a group's trials move all its waveforms alike
        Pd, Wd = P - group_means(P)[inverse], W - group_means(W)[inverse]
        A = Pd.T @ Pd + ridge * np.eye(P.shape[1])
        self.coef_ = np.linalg.solve(A, Pd.T @ Wd)
        # each trial set counts once, however many points it scored
        self.level_ = group_means(W - P @ self.coef_).mean(axis=0)
        self.n_groups_ = n_groups
        return self

    def predict(self, X):
        """Expected waveforms at points ``X`` (unit cube), shape (m, n_times)."""
        return self.level_ + self._features(X) @ self.coef_

    def minimize(self, target, radius=2.0, weights=None, n_starts=10, seed=0):
        """The point whose predicted waveform is nearest ``target``.

        Parameters
        ----------
        target : array, shape (n_times,)
        radius : float
            Trust region: at most this many ``spread_`` from ``center_``
            (a ball in standardized coordinates), and inside the unit cube.
        weights : array | None
            Time weights of the squared error (default: equal).
        n_starts : int
            Local searches, from the centre and from random points.
        seed : int

        Returns
        -------
        point : ndarray, shape (n_params,)
            On the unit cube.
        rmse : float
            Predicted (weighted) RMS distance to ``target``.
        """
        from scipy.optimize import minimize

        radius = check_positive(radius, "radius")
        n_starts = check_int(n_starts, "n_starts", low=1)
        target = check_finite_array(target, "target", ndim=1)
        if target.shape[0] != self.level_.shape[0]:
            raise ValueError(f"target must have {self.level_.shape[0]} values, got "
                             f"{target.shape[0]}")
        w = np.ones_like(target) if weights is None else \
            check_finite_array(weights, "weights", ndim=1)
        w = w / w.sum()
        k = len(self.center_)
        # the cube [0, 1] in standardized coordinates
        lo, hi = -self.center_ / self.spread_, (1.0 - self.center_) / self.spread_

        def loss(z):
            pred = self.predict(self.center_ + z * self.spread_)[0]
            return float(np.sum(w * (pred - target) ** 2))

        rng = np.random.default_rng(seed)
        starts = [np.zeros(k)] + [rng.normal(size=k) * radius / np.sqrt(k)
                                  for _ in range(n_starts - 1)]
        ball = {"type": "ineq", "fun": lambda z: radius ** 2 - z @ z}
        best = None
        for z0 in starts:
            z0 = np.clip(z0, lo, hi)
            res = minimize(loss, z0, method="SLSQP", bounds=list(zip(lo, hi)),
                           constraints=[ball])
            if best is None or res.fun < best.fun:
                best = res
        z = best.x
        norm = np.linalg.norm(z)
        if norm > radius:   # SLSQP meets constraints to a tolerance only
            z = z * (radius / norm)
        point = np.clip(self.center_ + z * self.spread_, 0.0, 1.0)
        return point, float(np.sqrt(max(loss((point - self.center_) / self.spread_), 0.0)))
