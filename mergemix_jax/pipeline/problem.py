"""The real search problem: merged experts scored on the evaluation suite (what search/problem.py's
`build_problem` leaves open), plus the utility and metric directions the pipeline uses."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mergemix_jax.config import EvalConfig, ModelConfig
from mergemix_jax.eval import EvalSuite, merge_fn_from_config
from mergemix_jax.merge import ExpertStack
from mergemix_jax.search.merged import merged_problem as search_merged_problem
from mergemix_jax.search.merged import metric_direction
from mergemix_jax.search.problem import SearchProblem
from mergemix_jax.search.types import Utility
from mergemix_jax.search.utility import weighted_utility

DEFAULT_UTILITY = {"loss/mean": 1.0}


def utility_weights(utility_cfg: Mapping[str, float], available: list[str]) -> dict[str, float]:
    """The configured metric weights ({} = mean held-out loss), checked against the suite's metrics."""
    weights = dict(utility_cfg) or dict(DEFAULT_UTILITY)
    unknown = sorted(set(weights) - set(available))
    if unknown:
        raise ValueError(f"pipeline.utility names metric(s) {unknown} the evaluation suite does not produce; choose from {available}")
    return weights


def make_utility(weights: Mapping[str, float]) -> Utility:
    """utility = sum_m w_m * (+-) metric_m, higher is better (losses enter negated)."""
    return weighted_utility(weights, {m: metric_direction(m) for m in weights})


def utility_of(weights: Mapping[str, float], metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    """The utility [B] of a table of metrics {name: [B]}."""
    return make_utility(weights)({k: np.asarray(v, np.float64) for k, v in metrics.items()})


def merged_problem(
    model_cfg: ModelConfig,
    stack: ExpertStack,
    suite: EvalSuite,
    eval_cfg: EvalConfig,
    weights: Mapping[str, float],
    prior: np.ndarray | None = None,
) -> SearchProblem:
    """The search problem over the merge weights of `stack`, with the merge and chunking of `eval_cfg`.

    objective(w): the weighted smooth (lower-is-better) utility metrics of the merged model,
    differentiable for gradient search; score(W [B, K]): every metric of each merged model, batched.
    (The search package's `merged_problem`, configured from the pipeline's eval section.)
    """
    return search_merged_problem(
        model_cfg,
        stack,
        suite,
        weights,
        merge_fn=merge_fn_from_config(eval_cfg),
        prior=prior,
        mixtures_per_device=eval_cfg.mixtures_per_device,
    )
