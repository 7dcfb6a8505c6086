"""Per-metric regressors from mixture weights to a metric: LightGBM, or ridge/GP when data is scarce.

MergeMix and DeMix fit LightGBM on (mixture, score) pairs. With few samples a tree ensemble is
coarse, so `auto` falls back to ridge regression on quadratic features (exact for a quadratic
response) below `min_lightgbm_samples`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

REGRESSORS = ("auto", "lightgbm", "ridge", "gp")
Predictor = Callable[[np.ndarray], np.ndarray]


def _lightgbm(x: np.ndarray, y: np.ndarray, seed: int) -> Predictor:
    import lightgbm

    model = lightgbm.LGBMRegressor(
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=max(3, len(x) // 25),
        subsample=0.9,
        subsample_freq=1,
        random_state=seed,
        verbose=-1,
        n_jobs=1,
    )
    model.fit(x, y)
    return model.predict


def _ridge(x: np.ndarray, y: np.ndarray, seed: int) -> Predictor:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    model = make_pipeline(PolynomialFeatures(degree=2, include_bias=False), RidgeCV(alphas=np.logspace(-8, 2, 11)))
    model.fit(x, y)
    return model.predict


def _gp(x: np.ndarray, y: np.ndarray, seed: int) -> Predictor:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel() * RBF(length_scale=0.5) + WhiteKernel(1e-6, noise_level_bounds=(1e-10, 1e-1))
    model = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)
    with warnings.catch_warnings():  # hyper-parameters at their bounds are expected on tiny data
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model.predict


def fit_regressor(kind: str, x_NxK: np.ndarray, y_N: np.ndarray, seed: int = 0, min_lightgbm_samples: int = 64) -> tuple[str, Predictor]:
    """Fit one metric's regressor; returns (kind actually used, predict: [M, K] -> [M])."""
    if kind not in REGRESSORS:
        raise ValueError(f"regressor must be one of {REGRESSORS}, got {kind!r}")
    if len(x_NxK) < 3:
        raise ValueError(f"a surrogate needs at least 3 scored mixtures, got {len(x_NxK)}")
    if kind == "auto":
        kind = "lightgbm" if len(x_NxK) >= min_lightgbm_samples else "ridge"
    fit = {"lightgbm": _lightgbm, "ridge": _ridge, "gp": _gp}[kind]
    return kind, fit(np.asarray(x_NxK, np.float64), np.asarray(y_N, np.float64), seed)
