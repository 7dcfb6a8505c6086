"""The real search problem: merged experts scored on the evaluation suite (what search/problem.py's
`build_problem` leaves open), plus the utility and metric directions the pipeline uses."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mergemix_jax.config import EvalConfig, ModelConfig
from mergemix_jax.eval import (
    EvalSuite,
    make_chunk_scorer,
    merge_fn_from_config,
    metric_names,
    score_mixtures,
    score_one,
)
from mergemix_jax.eval.suite import LOWER_IS_BETTER_PREFIXES
from mergemix_jax.merge import ExpertStack
from mergemix_jax.search.problem import SearchProblem
from mergemix_jax.search.types import Utility
from mergemix_jax.search.utility import weighted_utility

DEFAULT_UTILITY = {"loss/mean": 1.0}


def direction(metric: str) -> str:
    """"min" for losses and cross-entropies, "max" for accuracies and exact match."""
    return "min" if metric.startswith(LOWER_IS_BETTER_PREFIXES) else "max"


def utility_weights(utility_cfg: Mapping[str, float], available: list[str]) -> dict[str, float]:
    """The configured metric weights ({} = mean held-out loss), checked against the suite's metrics."""
    weights = dict(utility_cfg) or dict(DEFAULT_UTILITY)
    unknown = sorted(set(weights) - set(available))
    if unknown:
        raise ValueError(f"pipeline.utility names metric(s) {unknown} the evaluation suite does not produce; choose from {available}")
    return weights


def make_utility(weights: Mapping[str, float]) -> Utility:
    """utility = sum_m w_m * (+-) metric_m, higher is better (losses enter negated)."""
    return weighted_utility(weights, {m: direction(m) for m in weights})


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
    """A SearchProblem over the merge weights of `stack`.

    objective(w): sum of the smooth (lower-is-better) utility metrics of the merged model, weighted,
    differentiable for gradient search; score(W [B, K]): every metric of each merged model, batched.
    """
    merge_fn = merge_fn_from_config(eval_cfg)
    smooth = {m: w for m, w in weights.items() if direction(m) == "min"}

    def objective(w_K: jax.Array) -> jax.Array:
        scores = score_one(model_cfg, stack, w_K, suite, merge_fn)
        return sum(jnp.float32(w) * scores[m] for m, w in smooth.items()) if smooth else jnp.float32(0.0)

    scorer = make_chunk_scorer(model_cfg, merge_fn)

    def score(weights_BxK: np.ndarray) -> dict[str, np.ndarray]:
        out = score_mixtures(model_cfg, stack, np.asarray(weights_BxK, np.float32), suite, mixtures_per_device=eval_cfg.mixtures_per_device, merge_fn=merge_fn, scorer=scorer)
        return {k: np.asarray(v, np.float64) for k, v in out.items()}

    return SearchProblem(
        domains=stack.names,
        objective=objective if smooth else None,
        score=score,
        utility=make_utility(weights),
        prior=prior,
        description={"proxy": "merged experts", "merge": eval_cfg.merge, "utility": dict(weights), "metrics": metric_names(suite)},
    )
