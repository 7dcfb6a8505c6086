"""The ONE table mapping logical axis names to mesh axes, and helpers that apply it.

Parameters carry logical names (`("embed", "mlp")`) from their initialisers; nothing else in
the code names a mesh axis for a parameter. Change the table to change the parallelism.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx
from flax.core import spmd as core_spmd
from jax.sharding import NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or axes, or None for replicated)
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),  # activations: the batch splits over data and fsdp
    ("mixture", ("data", "fsdp")),  # merged evaluation: each device scores different mixtures
    ("seq", None),
    ("embed", "fsdp"),  # parameters: ZeRO-3 style sharding of the residual dimension
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("embed_act", None),  # the residual stream of activations stays whole per device
    ("norm", None),
)


def logical_to_spec(logical_axes: Sequence[str | None] | None) -> PartitionSpec:
    """PartitionSpec for one array from its logical axis names, via `LOGICAL_AXIS_RULES`."""
    if not logical_axes:
        return PartitionSpec()
    return PartitionSpec(*core_spmd.from_sharding_rules(tuple(logical_axes), LOGICAL_AXIS_RULES))


def param_specs(abstract_params) -> dict:
    """PartitionSpecs for a (pure-dict) parameter tree whose leaves are nnx Variables."""
    return jax.tree.map(
        lambda v: logical_to_spec(v.get_metadata().get("out_sharding")),
        abstract_params,
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def named_shardings(specs, mesh: jax.sharding.Mesh):
    """Map a tree of PartitionSpecs to NamedShardings on `mesh`."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, PartitionSpec))


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical names; a no-op outside a mesh context."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not set(MESH_AXES) <= set(mesh.axis_names) or mesh._any_axis_manual:
        return x  # inside shard_map (manual axes) each device already holds its own slice
    return jax.lax.with_sharding_constraint(x, logical_to_spec(logical_axes))
