"""Combine per-mixture metrics into one utility (higher is better), with a direction per metric."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mergemix_jax.search.types import Utility

DIRECTIONS = ("min", "max")


def weighted_utility(metric_weights: Mapping[str, float], directions: Mapping[str, str]) -> Utility:
    """utility = sum_m weight_m * sign_m * metric_m, sign = -1 for "min" metrics (losses), +1 for "max".

    Raises at construction when a metric has no direction, and at call time when the scorer did
    not return a metric the utility needs, naming it.
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
