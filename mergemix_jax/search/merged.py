"""A SearchProblem on real experts: the merged model base + sum_k w_k (expert_k - base), scored by
the evaluation suite (mergemix_jax.eval), so every search method runs on the merge engine.

objective(w_K): sum_m weight_m * metric_m(w) over the chosen smooth, lower-is-better metrics
(held-out losses, ce/...), differentiable through the merge; score(W_BxK): every metric of each
mixture by batched merged evaluation (accuracy included); utility: the same weights, with the sign
of each metric's direction.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval.batched import (
    MergeFn,
    make_chunk_scorer,
    replicate,
    score_mixtures,
    score_one,
    shard_expert_stack,
)
from mergemix_jax.eval.suite import LOWER_IS_BETTER_PREFIXES, SMOOTH_PREFIXES, EvalSuite, evaluate, metric_names
from mergemix_jax.merge.operators import merge
from mergemix_jax.merge.stack import ExpertStack
from mergemix_jax.search.grouped import grouped_linear_merge, leaf_groups
from mergemix_jax.search.objective import DataObjective
from mergemix_jax.search.problem import SearchProblem
from mergemix_jax.search.utility import weighted_utility


def metric_direction(name: str) -> str:
    """"min" for losses and cross-entropies, "max" for accuracies and exact match."""
    return "min" if name.startswith(LOWER_IS_BETTER_PREFIXES) else "max"


def parse_metric_weights(spec: str) -> dict[str, float]:
    """'loss/mean' or 'loss/web=0.5,acc/qa=1' -> {metric: weight} (weight 1 when omitted)."""
    weights = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value) if value else 1.0
        except ValueError:
            raise ValueError(f"metric weight {part!r}: expected name=number, e.g. loss/web=0.5") from None
    if not weights:
        raise ValueError(f"no metric in {spec!r}; e.g. loss/mean or loss/web=0.5,acc/qa=1")
    return weights


def merged_problem(
    model_cfg: ModelConfig,
    stack: ExpertStack,
    suite: EvalSuite,
    metric_weights: Mapping[str, float],
    merge_fn: MergeFn = merge,
    prior: np.ndarray | None = None,
    caps: np.ndarray | None = None,
    tokens: np.ndarray | None = None,
    mixtures_per_device: int = 4,
    mesh: jax.sharding.Mesh | None = None,
    groups: str = "",
    merge_scale: float = 1.0,
    shard_experts: bool = False,
    mixtures_per_step: int = 1,
) -> SearchProblem:
    """The mixture-search problem over the stack's K experts, named by `stack.names`.

    On a `mesh` the stack and suite are placed once: replicated (the scorer splits mixtures over the
    devices) or, with `shard_experts`, sharded like the model's parameters. The objective is a
    `DataObjective` whose data (stack, suite) jitted search steps take as arguments.

    groups="layer" or "module" gives the objective per-group weights [G, K] (a linear merge per
    leaf group with coefficient `merge_scale`, see search.grouped); the scorer keeps one mixture
    per row, shared by all groups.

    The differentiable objective uses only the smooth metrics among `metric_weights`; a problem
    whose weighted metrics are all non-smooth (accuracy) has no objective and suits the black-box
    methods only. Errors name unknown metrics and list the suite's.
    """
    known = metric_names(suite)
    unknown = [m for m in metric_weights if m not in known]
    if unknown:
        raise ValueError(f"metrics {unknown} are not in the evaluation suite; it has {known}")
    smooth = {m: w for m, w in metric_weights.items() if m.startswith(SMOOTH_PREFIXES)}
    shard = shard_experts and mesh is not None
    stack = shard_expert_stack(model_cfg, stack, mesh) if shard else replicate(stack, mesh)
    suite = replicate(suite, mesh)
    objective, n_groups, group_names = None, 0, ()
    if smooth and groups:
        group_ids, group_names = leaf_groups(stack.base, groups)
        n_groups = len(group_names)

        def grouped(weights_GxK: jax.Array, data: tuple[ExpertStack, EvalSuite]) -> jax.Array:
            scores = evaluate(model_cfg, grouped_linear_merge(data[0], weights_GxK, group_ids, merge_scale), data[1])
            return sum(w * scores[m] for m, w in smooth.items())

        objective = DataObjective(grouped, (stack, suite))
    elif smooth:

        def merged(weights_K: jax.Array, data: tuple[ExpertStack, EvalSuite]) -> jax.Array:
            scores = score_one(model_cfg, data[0], weights_K, data[1], merge_fn)
            return sum(w * scores[m] for m, w in smooth.items())

        objective = DataObjective(merged, (stack, suite))

    chunk_scorer = make_chunk_scorer(model_cfg, merge_fn, mesh, shard, mixtures_per_step)  # compiled once, reused by every call

    def score(weights_BxK: np.ndarray) -> dict[str, np.ndarray]:
        w = np.asarray(weights_BxK, np.float32)
        metrics = score_mixtures(
            model_cfg, stack, w, suite, mixtures_per_device=mixtures_per_device, merge_fn=merge_fn, mesh=mesh, scorer=chunk_scorer,
            shard_experts=shard,
        )  # fmt: skip
        return {name: np.asarray(values, np.float64) for name, values in metrics.items()}

    utility = weighted_utility(dict(metric_weights), {m: metric_direction(m) for m in metric_weights})
    return SearchProblem(
        domains=tuple(stack.names),
        objective=objective,
        score=score,
        utility=utility,
        prior=prior,
        caps=caps,
        tokens=tokens,
        n_groups=n_groups,
        description={
            "merged": list(stack.names),
            "metric_weights": dict(metric_weights),
            "smooth": sorted(smooth),
            "groups": list(group_names),
        },
    )

