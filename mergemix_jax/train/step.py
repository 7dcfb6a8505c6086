"""The jitted train step over a pure train state, with explicit shardings and donated buffers."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from mergemix_jax.config import ModelConfig
from mergemix_jax.data.batches import BATCH_KEYS, Batch
from mergemix_jax.model import Params, cast_params, forward, masked_mean, token_nll
from mergemix_jax.model.params import param_shapes, param_shardings
from mergemix_jax.parallel.partitioning import constrain, logical_to_spec


class TrainState(NamedTuple):
    """Everything that changes during training: a pytree, so it jits, shards and checkpoints."""

    step: jax.Array  # int32 scalar
    params: Params
    opt_state: Any


def batch_loss(cfg: ModelConfig, params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """(mean next-token loss over `loss_mask`, number of scored tokens), in the compute dtype."""
    if cfg.compute_dtype != "float32":
        params = cast_params(params, jnp.dtype(cfg.compute_dtype))
    logits = forward(cfg, params, batch["inputs"], batch["positions"], batch["segment_ids"])
    return masked_mean(token_nll(logits, batch["targets"]), batch["loss_mask"])


def _summed_loss(cfg: ModelConfig, params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """(summed next-token loss over `loss_mask`, number of scored tokens): what micro-batches add up."""
    mean, count = batch_loss(cfg, params, batch)
    return mean * jnp.maximum(count, 1.0), count


def loss_and_grads(cfg: ModelConfig, params: Params, batch: Batch, accum_steps: int = 1) -> tuple[jax.Array, jax.Array, Params]:
    """(mean loss, scored tokens, gradient of the mean loss) over the whole batch [B, L], computed
    `accum_steps` micro-batches at a time (a `lax.scan`: activations of B / accum_steps rows at once).

    Micro-batch a holds rows a, a + A, a + 2A, ... so each device's rows split evenly among them;
    summed losses and gradients are divided by the total token count once, so the result is the
    big batch's gradient (up to the order of float sums)."""
    if accum_steps == 1:
        (loss, count), grads = jax.value_and_grad(lambda p: batch_loss(cfg, p, batch), has_aux=True)(params)
        return loss, count, grads
    rows = batch["inputs"].shape[0]
    grad_fn = jax.value_and_grad(lambda p, b: _summed_loss(cfg, p, b), has_aux=True)

    def split(x_BxL):
        x_AxMxL = jnp.swapaxes(x_BxL.reshape(rows // accum_steps, accum_steps, -1), 0, 1)
        return constrain(x_AxMxL, (None, "batch", "seq"))

    def add(carry, micro):
        (total, count), grads = grad_fn(params, micro)
        return jax.tree.map(jnp.add, carry, (total, count, grads)), None

    zeros = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params))
    (total, count, grads), _ = jax.lax.scan(add, zeros, jax.tree.map(split, batch))
    scale = 1.0 / jnp.maximum(count, 1.0)
    return total * scale, count, jax.tree.map(lambda g, p: (g * scale).astype(p.dtype), grads, params)


def init_train_state(params: Params, tx: optax.GradientTransformation) -> TrainState:
    """Step 0 state for `params` (optimizer moments created with the parameters' shardings)."""
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))


def train_state_shardings(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh) -> TrainState:
    """NamedSharding per train-state leaf: optimizer moments follow their parameters."""
    shardings = param_shardings(cfg, mesh)
    abstract = jax.eval_shape(lambda p: init_train_state(p, tx), param_shapes(cfg))
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_shardings = optax.tree_map_params(
        tx, lambda _, s: s, abstract.opt_state, shardings, transform_non_params=lambda _: replicated
    )
    return TrainState(replicated, shardings, opt_shardings)


def abstract_train_state(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh) -> TrainState:
    """ShapeDtypeStructs with shardings: the target orbax restores into (any mesh)."""
    abstract = jax.eval_shape(lambda p: init_train_state(p, tx), param_shapes(cfg))
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, train_state_shardings(cfg, tx, mesh)
    )


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Batches split their first axis over the data and fsdp mesh axes."""
    return NamedSharding(mesh, logical_to_spec(("batch", "seq")))


def make_train_step(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh, schedule=None, accum_steps: int = 1):
    """`step(state, batch) -> (state, metrics)`, jitted with explicit shardings; donates `state`.
    `accum_steps` > 1 computes the gradient in that many micro-batches (`loss_and_grads`)."""

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        loss, tokens, grads = loss_and_grads(cfg, state.params, batch, accum_steps)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "tokens": tokens, "grad_norm": optax.global_norm(grads)}
        if schedule is not None:
            metrics["learning_rate"] = schedule(state.step)
        return TrainState(state.step + 1, params, opt_state), metrics

    state_shardings = train_state_shardings(cfg, tx, mesh)
    data_sharding = batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        step,
        in_shardings=(state_shardings, {k: data_sharding for k in BATCH_KEYS}),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )


@functools.lru_cache(maxsize=16)
def _cached_training(cfg: ModelConfig, optim_key: tuple, optim_cfg_type: type, total_steps: int, mesh: jax.sharding.Mesh, accum_steps: int):
    from mergemix_jax.train.optimizer import learning_rate_schedule, make_optimizer

    optim_cfg = optim_cfg_type(*optim_key)
    schedule = learning_rate_schedule(optim_cfg, total_steps)
    tx = make_optimizer(optim_cfg, total_steps)
    return tx, make_train_step(cfg, tx, mesh, schedule, accum_steps)


def training_parts(cfg: ModelConfig, optim_cfg, total_steps: int, mesh: jax.sharding.Mesh, accum_steps: int = 1):
    """(optimizer, jitted step) for one recipe, shared by every run of the same recipe in this
    process, so a pipeline's many short runs (experts, verification, references) compile the step once."""
    return _cached_training(cfg, dataclasses.astuple(optim_cfg), type(optim_cfg), total_steps, mesh, accum_steps)
