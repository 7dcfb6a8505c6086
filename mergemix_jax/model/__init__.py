"""Llama-style decoder LM in Flax NNX, used through a functional API over parameter dicts."""

from mergemix_jax.model.loss import masked_mean, token_nll
from mergemix_jax.model.params import (
    Params,
    cast_params,
    count_params,
    forward,
    init_params,
    param_partition_specs,
    param_shapes,
    param_shardings,
)

__all__ = [
    "Params",
    "cast_params",
    "count_params",
    "forward",
    "init_params",
    "masked_mean",
    "param_partition_specs",
    "param_shapes",
    "param_shardings",
    "token_nll",
]
