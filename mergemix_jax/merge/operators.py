"""Merge operators: pure functions (ExpertStack, weights [K]) -> params, jit/vmap/grad friendly.

All accumulate in float32 and cast each leaf back to the base's storage dtype. `scale` is the
task-arithmetic coefficient: merged = base + scale * sum_k w_k (expert_k - base).

`MERGE_OPERATORS` (end of file) is the one registry: `eval.merge` names an entry, its `options`
reads the operator's settings from the eval section, its `settings` names those eval fields (they
are recorded beside every score, so a results file scored with other values is not reused).
Adding an operator = its function + one entry (+ an EvalConfig field per new option).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from mergemix_jax.merge.stack import ExpertStack, deltas_f32


def linear_merge(stack: ExpertStack, weights_K: jax.Array, scale: float | jax.Array = 1.0) -> dict:
    """base + scale * sum_k w_k (expert_k - base), written as (1 - scale*sum w) base + scale * sum_k w_k expert_k.

    The second form is the same function of w but exact at the corners: a one-hot w with
    scale 1 returns expert k bit for bit and w = 0 returns the base.
    """
    w = jnp.asarray(weights_K, jnp.float32)
    base_coef = 1.0 - scale * w.sum()

    def leaf(b, e_K):
        mixed = jnp.tensordot(scale * w, e_K.astype(jnp.float32), axes=1)
        return (base_coef * b.astype(jnp.float32) + mixed).astype(b.dtype)

    return jax.tree.map(leaf, stack.base, stack.experts)


def _merge_deltas(stack: ExpertStack, merged_delta_fn) -> dict:
    deltas = deltas_f32(stack)
    return jax.tree.map(lambda b, d: (b.astype(jnp.float32) + merged_delta_fn(d)).astype(b.dtype), stack.base, deltas)


def ties_merge(stack: ExpertStack, weights_K: jax.Array, density: float = 0.2, scale: float | jax.Array = 1.0) -> dict:
    """TIES-merging (Yadav et al. 2023) per leaf: keep each task vector's top `density` fraction by
    magnitude, elect each entry's sign from the weighted sum, average the agreeing entries (weighted).
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"TIES density must be in (0, 1], got {density}")
    w = jnp.asarray(weights_K, jnp.float32)

    def merged_delta(d_K):
        flat = jnp.abs(d_K.reshape(d_K.shape[0], -1))
        threshold_K = jnp.quantile(flat, 1.0 - density, axis=1)
        kept = jnp.where(jnp.abs(d_K) >= threshold_K.reshape((-1,) + (1,) * (d_K.ndim - 1)), d_K, 0.0)
        w_b = w.reshape((-1,) + (1,) * (d_K.ndim - 1))
        sign = jnp.sign(jnp.sum(w_b * kept, axis=0))
        agree = (jnp.sign(kept) == sign[None]) & (kept != 0)
        weight_sum = jnp.sum(jnp.where(agree, w_b, 0.0), axis=0)
        total = jnp.sum(jnp.where(agree, w_b * kept, 0.0), axis=0)
        return scale * jnp.where(weight_sum > 0, total / jnp.where(weight_sum > 0, weight_sum, 1.0), 0.0)

    return _merge_deltas(stack, merged_delta)


def dare_merge(
    stack: ExpertStack, weights_K: jax.Array, drop_rate: float = 0.9, seed: int = 0, scale: float | jax.Array = 1.0
) -> dict:
    """DARE (Yu et al. 2024): drop each task-vector entry with prob `drop_rate`, rescale the rest by
    1/(1-drop_rate), then merge linearly. The drop mask depends only on `seed`, so every mixture
    sees the same mask (common random numbers)."""
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"DARE drop_rate must be in [0, 1), got {drop_rate}")
    w = jnp.asarray(weights_K, jnp.float32)
    deltas = deltas_f32(stack)
    leaves, treedef = jax.tree.flatten(deltas)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    kept = [jnp.where(jax.random.bernoulli(key, 1.0 - drop_rate, d.shape), d / (1.0 - drop_rate), 0.0) for key, d in zip(keys, leaves, strict=True)]
    kept_tree = jax.tree.unflatten(treedef, kept)
    return jax.tree.map(
        lambda b, d: (b.astype(jnp.float32) + scale * jnp.tensordot(w, d, axes=1)).astype(b.dtype), stack.base, kept_tree
    )


@dataclass(frozen=True)
class MergeOperator:
    """fn(stack, weights [K], scale=..., **options) -> params; options(eval config) -> its keyword
    options; settings: the eval config fields those options are read from (eval.results records them)."""

    fn: Callable[..., dict]
    options: Callable[[Any], dict[str, Any]] = lambda eval_cfg: {}
    settings: tuple[str, ...] = ()


MERGE_OPERATORS: dict[str, MergeOperator] = {
    "linear": MergeOperator(linear_merge),
    "ties": MergeOperator(ties_merge, lambda e: {"density": e.ties_density}, ("ties_density",)),
    "dare": MergeOperator(dare_merge, lambda e: {"drop_rate": e.dare_drop_rate, "seed": e.merge_seed}, ("dare_drop_rate", "merge_seed")),
}
MERGE_METHODS = tuple(MERGE_OPERATORS)


def merge(stack: ExpertStack, weights_K: jax.Array, method: str = "linear", scale: float = 1.0, **options) -> dict:
    """Dispatch to a registered merge operator by name (see MERGE_OPERATORS); options go to the operator.

    `weights_K` is a target mixture: for a stack of diluted experts the operator gets the
    dilution-corrected weights (`ExpertStack.coefficients`, merge/dilution.py), the one place a
    mixture becomes merge coefficients."""
    operator = MERGE_OPERATORS.get(method)
    if operator is None:
        raise ValueError(f"unknown merge method {method!r}; choose one of {MERGE_METHODS}")
    if method == "linear" and options:
        raise ValueError(f"linear merge takes no options, got {sorted(options)}")
    return operator.fn(stack, stack.coefficients(weights_K), scale=scale, **options)
