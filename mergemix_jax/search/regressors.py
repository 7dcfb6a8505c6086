"""Per-metric regressors from mixture weights to a metric: LightGBM, or ridge/GP when data is scarce.

MergeMix, DeMix and RegMix fit LightGBM on (mixture, score) pairs; the anchors' hyperparameters
are named presets (`demix`: learning rate 0.01, 300 trees; `regmix`: learning rate 0.01, up to
1000 iterations with early stopping on held-out rows), every other LightGBM setting at its
library default. With few samples a tree ensemble is coarse, so `auto` falls back to ridge
regression on quadratic features (exact for a quadratic response) below `min_lightgbm_samples`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mergemix_jax.config.schema import REGRESSORS

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LightGBMParams:
    """LightGBM settings of one surrogate fit."""

    learning_rate: float = 0.01
    n_estimators: int = 300  # trees (boosting iterations); with early stopping, the upper bound
    num_leaves: int = 31  # LightGBM's default
    early_stopping_rounds: int = 0  # > 0: hold out rows and stop when their l2 has not improved for this many trees
    validation_fraction: float = 0.1  # share of rows held out for early stopping (RegMix: 128 of 1000)


PRESETS = {
    "demix": LightGBMParams(learning_rate=0.01, n_estimators=300),
    "regmix": LightGBMParams(learning_rate=0.01, n_estimators=1000, early_stopping_rounds=3),
}


def lightgbm_params(preset: str = "demix", learning_rate: float = 0.0, n_estimators: int = 0, num_leaves: int = 0) -> LightGBMParams:
    """The preset's parameters with any override > 0 applied."""
    if preset not in PRESETS:
        raise ValueError(f"LightGBM preset must be one of {tuple(PRESETS)}, got {preset!r}")
    overrides = {k: v for k, v in (("learning_rate", learning_rate), ("n_estimators", n_estimators), ("num_leaves", num_leaves)) if v > 0}
    return dataclasses.replace(PRESETS[preset], **overrides)


def _new_eval_api() -> bool:
    """lightgbm >= 4.7 takes eval_X/eval_y (eval_set is deprecated there); older ones only eval_set."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("lightgbm").split(".")[:2])
    return (major, minor) >= (4, 7)


_NEW_EVAL_API = _new_eval_api()


def _lightgbm(x: np.ndarray, y: np.ndarray, seed: int, params: LightGBMParams) -> Predictor:
    import lightgbm

    model = lightgbm.LGBMRegressor(
        n_estimators=params.n_estimators, learning_rate=params.learning_rate, num_leaves=params.num_leaves, random_state=seed, verbose=-1, n_jobs=1
    )
    n_val = round(len(x) * params.validation_fraction)
    if params.early_stopping_rounds and n_val >= 2 and len(x) - n_val >= 3:
        order = np.random.default_rng(seed).permutation(len(x))
        val, train = order[:n_val], order[n_val:]
        stop = lightgbm.early_stopping(params.early_stopping_rounds, verbose=False)
        held_out = {"eval_X": (x[val],), "eval_y": (y[val],)} if _NEW_EVAL_API else {"eval_set": [(x[val], y[val])]}
        model.fit(x[train], y[train], eval_metric="l2", callbacks=[stop], **held_out)
    else:
        model.fit(x, y)
    return model.predict


def _ridge(x: np.ndarray, y: np.ndarray, seed: int, params: LightGBMParams) -> Predictor:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    model = make_pipeline(PolynomialFeatures(degree=2, include_bias=False), RidgeCV(alphas=np.logspace(-8, 2, 11)))
    model.fit(x, y)
    return model.predict


def _gp(x: np.ndarray, y: np.ndarray, seed: int, params: LightGBMParams) -> Predictor:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel() * RBF(length_scale=0.5) + WhiteKernel(1e-6, noise_level_bounds=(1e-10, 1e-1))
    model = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)
    with warnings.catch_warnings():  # hyper-parameters at their bounds are expected on tiny data
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model.predict


def resolve_kind(kind: str, n_rows: int, min_lightgbm_samples: int = 64) -> tuple[str, str]:
    """(regressor actually used, a sentence saying why) for `kind` on `n_rows` mixtures."""
    if kind not in REGRESSORS:
        raise ValueError(f"regressor must be one of {REGRESSORS}, got {kind!r}")
    if kind != "auto":
        return kind, f"{kind} as configured ({n_rows} mixtures)"
    if n_rows >= min_lightgbm_samples:
        return "lightgbm", f"auto chose lightgbm: {n_rows} mixtures >= min_lightgbm_samples {min_lightgbm_samples}"
    return "ridge", (
        f"auto chose ridge, not lightgbm: only {n_rows} mixtures < min_lightgbm_samples {min_lightgbm_samples} "
        "(score more seeds, or let the surrogate fit on the probe table: search.surrogate.use_observed)"
    )


def fit_regressor(
    kind: str, x_NxK: np.ndarray, y_N: np.ndarray, seed: int = 0, min_lightgbm_samples: int = 64, params: LightGBMParams | None = None
) -> tuple[str, Predictor]:
    """Fit one metric's regressor; returns (kind actually used, predict: [M, K] -> [M])."""
    if len(x_NxK) < 3:
        raise ValueError(f"a surrogate needs at least 3 scored mixtures, got {len(x_NxK)}")
    kind, _ = resolve_kind(kind, len(x_NxK), min_lightgbm_samples)
    fit = {"lightgbm": _lightgbm, "ridge": _ridge, "gp": _gp}[kind]
    return kind, fit(np.asarray(x_NxK, np.float64), np.asarray(y_N, np.float64), seed, params or PRESETS["demix"])
