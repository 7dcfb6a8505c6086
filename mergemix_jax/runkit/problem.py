"""The pipeline's utility: the configured metric weights, checked against the suite, and the utility
of a table of metrics (metric directions from search.merged). The search problem itself is built by
runkit.engine (`Engine.search_problem`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mergemix_jax.search.merged import metric_direction
from mergemix_jax.search.types import Utility
from mergemix_jax.search.utility import weighted_utility

DEFAULT_UTILITY = {"loss/mean": 1.0}


def utility_weights(utility_cfg: Mapping[str, float], available: list[str]) -> dict[str, float]:
    """The configured metric weights ({} = mean held-out loss), checked against the suite's metrics."""
    from mergemix_jax.config import ConfigError

    weights = dict(utility_cfg) or dict(DEFAULT_UTILITY)
    unknown = sorted(set(weights) - set(available))
    if unknown:
        families = sorted({m.split("/", 1)[0] + "/" for m in available})
        raise ConfigError(
            f"key 'pipeline.utility' names metric(s) {unknown} the evaluation suite does not produce; it produces the families {families}: "
            f"{_listing(available)}"
        )
    return weights


def _listing(names: list[str], limit: int = 12) -> str:
    """`names` joined, the tail cut to a count beyond `limit`."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def make_utility(weights: Mapping[str, float]) -> Utility:
    """utility = sum_m w_m * (+-) metric_m, higher is better (losses enter negated)."""
    return weighted_utility(weights, {m: metric_direction(m) for m in weights})


def utility_of(weights: Mapping[str, float], metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    """The utility [B] of a table of metrics {name: [B]}."""
    return make_utility(weights)({k: np.asarray(v, np.float64) for k, v in metrics.items()})

