"""Combine per-mixture metrics into one utility (higher is better), with a direction per metric."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from mergemix_jax.search.types import Utility

DIRECTIONS = ("min", "max")

log = logging.getLogger(__name__)


def weighted_utility(metric_weights: Mapping[str, float], directions: Mapping[str, str]) -> Utility:
    """utility = sum_m weight_m * sign_m * metric_m, sign = -1 for "min" metrics (losses), +1 for "max".

    Raises at construction when a metric has no direction, and at call time when the scorer did
    not return a metric the utility needs, naming it. (Search methods receive it through
    `problem.black_box`, which ranks NaN/inf utilities last: see `flag_non_finite`.)
    """
    if not metric_weights:
        raise ValueError("metric_weights is empty; give at least one metric a weight")
    signs = {}
    for name in metric_weights:
        direction = directions.get(name)
        if direction not in DIRECTIONS:
            raise ValueError(f"metric {name!r} needs a direction in {DIRECTIONS}, got {direction!r}")
        signs[name] = -1.0 if direction == "min" else 1.0

    def utility(metrics: dict[str, np.ndarray]) -> np.ndarray:
        missing = sorted(set(metric_weights) - set(metrics))
        if missing:
            raise KeyError(f"the scorer returned no metric(s) {missing}; it returned {sorted(metrics)}")
        return sum(w * signs[m] * np.asarray(metrics[m], np.float64) for m, w in metric_weights.items())

    return utility


def flag_non_finite(utilities: np.ndarray) -> np.ndarray:
    """Utilities with every NaN/inf replaced by -inf (worst), warning how many mixtures that hit."""
    utilities = np.asarray(utilities, np.float64)
    bad = ~np.isfinite(utilities)
    if bad.any():
        log.warning(
            "%d of %d mixtures scored NaN/inf (rows %s): they rank last; a diverged or broken expert is the usual cause",
            int(bad.sum()), bad.size, np.flatnonzero(bad.reshape(-1))[:10].tolist(),
        )  # fmt: skip
        utilities = np.where(bad, -np.inf, utilities)
    return utilities
