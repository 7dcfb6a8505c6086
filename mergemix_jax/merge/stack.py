"""K experts stored once, stacked `[K, ...]` per leaf next to their shared base.

The task vectors (deltas) `expert_k - base` are formed in float32 inside the merge, where they fuse
into the weighted sum, rather than stored: a stored float32 delta is rounded, so
`base + delta_k` would not give back expert k bit for bit, while the merge written as
`(1 - s*sum(w)) * base + s * sum_k w_k expert_k` (the same function of w) reproduces an expert
exactly at a one-hot w and the base exactly at w = 0. Memory is the same as stored deltas.

Building the stack checks, before any compute, that every expert has the base's tree structure,
leaf shapes and dtypes; an error names the expert and the leaf path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from mergemix_jax.merge.dilution import Dilution, merge_coefficients


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ExpertStack:
    """base: params pytree; experts: the same tree with each leaf stacked as [K, *leaf.shape].

    `names` (static) labels the K experts, e.g. by domain. `dilution` (static) says the experts were
    trained with a share of general data (DeMix components, merge/dilution.py); every merge operator
    then turns a target mixture into corrected merge weights with `coefficients`.
    """

    base: dict
    experts: dict
    names: tuple[str, ...] = field(default=(), metadata={"static": True})
    dilution: Dilution | None = field(default=None, metadata={"static": True})

    @property
    def num_experts(self) -> int:
        return len(self.names)

    def coefficients(self, weights_K: jax.Array) -> jax.Array:
        """The merge weights for target mixture(s) [..., K]: unchanged for pure-domain experts,
        dilution-corrected (clipped, renormalised) for diluted ones."""
        return merge_coefficients(weights_K, self.dilution)


def _leaf_paths(tree) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def check_same_structure(base: Mapping, expert: Mapping, expert_name: str) -> None:
    """Raise ValueError naming `expert_name` and the leaf path when `expert` differs from `base`."""
    base_paths, expert_paths = _leaf_paths(base), _leaf_paths(expert)
    if base_paths != expert_paths:
        missing = sorted(set(base_paths) - set(expert_paths))
        extra = sorted(set(expert_paths) - set(base_paths))
        raise ValueError(
            f"expert {expert_name!r} has a different parameter tree from the base: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}; "
            "experts must be fine-tuned from the same base architecture"
        )
    for path, b, e in zip(base_paths, jax.tree.leaves(base), jax.tree.leaves(expert), strict=True):
        if tuple(b.shape) != tuple(e.shape):
            raise ValueError(f"expert {expert_name!r} leaf {path} has shape {tuple(e.shape)}, the base has {tuple(b.shape)}")
        if jnp.dtype(b.dtype) != jnp.dtype(e.dtype):
            raise ValueError(
                f"expert {expert_name!r} leaf {path} has dtype {jnp.dtype(e.dtype).name}, the base has "
                f"{jnp.dtype(b.dtype).name}; cast the expert (mergemix_jax.model.cast_params) before merging"
            )
        if not jnp.issubdtype(b.dtype, jnp.floating):
            raise ValueError(f"leaf {path} has non-float dtype {jnp.dtype(b.dtype).name}; only float parameters can be merged")


@jax.jit
def _stack(experts: Sequence[dict]) -> dict:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *experts)


def deltas_f32(stack: ExpertStack) -> dict:
    """Task vectors `expert_k - base` in float32, [K, ...] per leaf (formed on the fly under jit)."""
    return jax.tree.map(lambda b, e: e.astype(jnp.float32) - b.astype(jnp.float32)[None], stack.base, stack.experts)


def build_expert_stack(base: Mapping, experts: Sequence[Mapping], names: Sequence[str] | None = None) -> ExpertStack:
    """Stack K experts fine-tuned from `base` as `[K, ...]` leaves (checked first, see module doc)."""
    if len(experts) == 0:
        raise ValueError("build_expert_stack needs at least one expert, got none")
    names = tuple(names) if names is not None else tuple(f"expert{k}" for k in range(len(experts)))
    if len(names) != len(experts):
        raise ValueError(f"{len(names)} expert names for {len(experts)} experts")
    if len(set(names)) != len(names):
        raise ValueError(f"expert names must be unique, got {list(names)}")
    for name, expert in zip(names, experts, strict=True):
        check_same_structure(base, expert, name)
    base = jax.tree.map(jnp.asarray, dict(base))
    return ExpertStack(base=base, experts=_stack([jax.tree.map(jnp.asarray, dict(e)) for e in experts]), names=names)


def num_params(stack: ExpertStack) -> int:
    """Scalars in one model (the base)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(stack.base)))
