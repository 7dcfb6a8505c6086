"""Per-layer / per-module merge weights: each parameter leaf belongs to a group g and is merged with
its own mixture w_g, so an objective of weights [G, K] can be searched (gradient search handles
any leading shape). With every row equal this is exactly the linear merge with that row.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from mergemix_jax.merge.stack import ExpertStack

GROUPINGS = ("layer", "module")
_BLOCK = re.compile(r"\['blocks'\]\[(\d+)\]")


def _group_name(path: str, by: str) -> str:
    block = _BLOCK.search(path)
    if by == "layer":
        return f"layer{int(block.group(1)):03d}" if block else ("embed" if "embed" in path else "head")
    if "['attn']" in path:
        return "attn"
    if "['mlp']" in path:
        return "mlp"
    return "embed" if "embed" in path else "norm"


def leaf_groups(params: dict, by: str = "layer") -> tuple[dict, tuple[str, ...]]:
    """(tree of int group ids shaped like `params`, group names in id order).

    by="layer": one group per transformer block, plus "embed" and "head" (final norm/unembedding);
    by="module": "attn", "mlp", "embed", "norm".
    """
    if by not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {by!r}")
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names = [_group_name(jax.tree_util.keystr(path), by) for path, _ in leaves]
    order = tuple(sorted(set(names)))
    ids = [order.index(n) for n in names]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), ids), order


def grouped_linear_merge(stack: ExpertStack, weights_GxK: jax.Array, group_ids: dict, scale: float = 1.0) -> dict:
    """base + scale * sum_k w[g, k] (expert_k - base) with g each leaf's group (float32 accumulate);
    each row is a target mixture, dilution-corrected for diluted experts (ExpertStack.coefficients)."""
    w_GxK = jnp.asarray(stack.coefficients(weights_GxK), jnp.float32)

    def leaf(group, b, e_K):
        w = scale * w_GxK[group]
        mixed = jnp.tensordot(w, e_K.astype(jnp.float32), axes=1)
        return ((1.0 - w.sum()) * b.astype(jnp.float32) + mixed).astype(b.dtype)

    return jax.tree.map(leaf, group_ids, stack.base, stack.experts)
