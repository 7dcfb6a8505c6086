"""Functional model API: parameters are plain nested dicts of arrays (easy to merge, save, import).

`init_params` builds them already sharded on a mesh; `forward` runs the NNX module over them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import spmd as core_spmd

from mergemix_jax.config import ModelConfig
from mergemix_jax.model.transformer import Transformer
from mergemix_jax.parallel.partitioning import LOGICAL_AXIS_RULES, named_shardings, param_specs

Params = dict  # nested dict of arrays, the tree `nnx.split(model, nnx.Param)` gives as a pure dict


def _build(cfg: ModelConfig, seed: int | jax.Array) -> Transformer:
    # Shardings are applied by jit from the abstract tree, not eagerly per Variable.
    with nnx.use_eager_sharding(False):
        return Transformer(cfg, nnx.Rngs(params=seed))


@functools.lru_cache(maxsize=32)
def _graphdef_and_abstract(cfg: ModelConfig):
    # Under an active mesh, eval_shape resolves logical names through the rules table.
    with nnx.use_eager_sharding(False), core_spmd.logical_axis_rules(LOGICAL_AXIS_RULES):
        abstract_model = nnx.eval_shape(lambda: _build(cfg, 0))
    graphdef, abstract_state = nnx.split(abstract_model, nnx.Param)
    return graphdef, abstract_state


def abstract_param_variables(cfg: ModelConfig) -> dict:
    """Nested dict of abstract nnx Variables (shape, dtype and logical axes, no data)."""
    out: dict = {}
    for path, variable in nnx.to_flat_state(_graphdef_and_abstract(cfg)[1]):
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = variable
    return out


def param_partition_specs(cfg: ModelConfig) -> dict:
    """PartitionSpec per parameter, from logical axes through the one rules table."""
    return param_specs(abstract_param_variables(cfg))


def param_shapes(cfg: ModelConfig) -> dict:
    """jax.ShapeDtypeStruct per parameter."""
    return jax.tree.map(
        lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype),
        abstract_param_variables(cfg),
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def param_shardings(cfg: ModelConfig, mesh: jax.sharding.Mesh) -> dict:
    """NamedSharding per parameter on `mesh`."""
    return named_shardings(param_partition_specs(cfg), mesh)


def init_params(cfg: ModelConfig, seed: int, mesh: jax.sharding.Mesh | None = None) -> Params:
    """Freshly initialised parameters; sharded on `mesh` when given (created in place, no gather)."""
    return _jitted_init(cfg, mesh)(jnp.asarray(seed, jnp.uint32))


@functools.lru_cache(maxsize=16)
def _jitted_init(cfg: ModelConfig, mesh: jax.sharding.Mesh | None):
    """One compiled initialiser per (architecture, mesh); the seed is a traced argument."""

    def init(seed: jax.Array) -> Params:
        return nnx.to_pure_dict(nnx.split(_build(cfg, jax.random.key(seed)), nnx.Param)[1])

    return jax.jit(init, out_shardings=None if mesh is None else param_shardings(cfg, mesh))


def forward(
    cfg: ModelConfig,
    params: Params,
    tokens_BxL: jax.Array,
    positions_BxL: jax.Array | None = None,
    segment_ids_BxL: jax.Array | None = None,
) -> jax.Array:
    """Logits [B, L, V] (float32) of the model with parameters `params`."""
    graphdef = _graphdef_and_abstract(cfg)[0]
    return nnx.merge(graphdef, params)(tokens_BxL, positions_BxL, segment_ids_BxL)


def count_params(params_or_shapes) -> int:
    """Total number of scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params_or_shapes)))


def cast_params(params: Params, dtype) -> Params:
    """Cast every floating-point leaf to `dtype`."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
