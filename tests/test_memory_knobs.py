"""The step's memory knobs change memory, never results: blocked attention equals a plain einsum
reference (causal, packed documents, GQA), rematerialised blocks give the same loss and gradients,
and gradient accumulation gives the whole batch's step; bad values are refused naming the key."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import ConfigError, MeshConfig, OptimConfig
from mergemix_jax.model import init_params
from mergemix_jax.model.attention import causal_attention
from mergemix_jax.parallel.mesh import build_mesh
from mergemix_jax.train.optimizer import make_optimizer
from mergemix_jax.train.step import (
    batch_loss,
    batch_sharding,
    init_train_state,
    loss_and_grads,
    make_train_step,
    train_state_shardings,
)
from tests.helpers import random_dataset, tiny_config


def reference_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, segment_ids_BxL):
    """Textbook attention: repeat K/V heads, full [B, H, L, L] scores, causal and same-document mask."""
    groups = q_BxLxHxE.shape[2] // k_BxLxKxE.shape[2]
    k = jnp.repeat(k_BxLxKxE, groups, axis=2)
    v = jnp.repeat(v_BxLxKxE, groups, axis=2)
    scores_BxHxLxL = jnp.einsum("bqhe,bkhe->bhqk", q_BxLxHxE, k) / np.sqrt(q_BxLxHxE.shape[-1])
    length = q_BxLxHxE.shape[1]
    allowed = jnp.tril(jnp.ones((length, length), bool))[None] & (segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :])
    scores_BxHxLxL = jnp.where(allowed[:, None], scores_BxHxLxL, -jnp.inf)
    return jnp.einsum("bhqk,bkhe->bqhe", jax.nn.softmax(scores_BxHxLxL, axis=-1), v)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("block", [0, 4, 5])
def test_attention_equals_the_einsum_reference(kv_heads, block):
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (2, 11, 4, 8))
    k, v = (jax.random.normal(key, (2, 11, kv_heads, 8)) for key in keys[1:])
    segments = jnp.array([[1] * 4 + [2] * 7, [1] * 9 + [0] * 2])  # two packed documents; padding
    got = causal_attention(q, k, v, segments, block)
    np.testing.assert_allclose(got, reference_attention(q, k, v, segments), atol=2e-6)
    one_doc = causal_attention(q, k, v, None, block)
    np.testing.assert_allclose(one_doc, reference_attention(q, k, v, jnp.ones((2, 11), jnp.int32)), atol=2e-6)
    # causal: the future never reaches the past
    later = causal_attention(q, k.at[:, 6:].set(9.0), v.at[:, 6:].set(9.0), segments, block)
    np.testing.assert_array_equal(later[:, :6], got[:, :6])


def _loss_and_grads(model_overrides: dict, batch, accum: int = 1):
    cfg = dataclasses.replace(tiny_config().model, **model_overrides)
    params = init_params(cfg, 0)
    return loss_and_grads(cfg, params, batch, accum)


def _max_diff(a, b) -> float:
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.parametrize("overrides", [{"remat": True}, {"remat": True, "remat_policy": "dots_saveable"}, {"attention_block": 6}])
def test_remat_and_blocked_attention_give_the_same_loss_and_gradients(overrides):
    batch = next(iter(random_dataset(64, 4, 16)))
    loss, count, grads = _loss_and_grads({}, batch)
    loss_r, count_r, grads_r = _loss_and_grads(overrides, batch)
    assert float(loss_r) == pytest.approx(float(loss), rel=1e-6) and count_r == count
    assert _max_diff(grads, grads_r) < 1e-6


def test_gradient_accumulation_equals_the_whole_batch():
    batch = dict(next(iter(random_dataset(64, 8, 16))))
    batch["loss_mask"] = batch["loss_mask"].copy()
    batch["loss_mask"][:3, 5:] = 0.0  # unequal token counts per micro-batch: a mean of means would differ
    loss, count, grads = _loss_and_grads({}, batch)
    assert float(batch_loss(tiny_config().model, init_params(tiny_config().model, 0), batch)[0]) == pytest.approx(float(loss))
    for accum in (2, 4):
        loss_a, count_a, grads_a = _loss_and_grads({}, batch, accum)
        assert float(loss_a) == pytest.approx(float(loss), rel=1e-6) and float(count_a) == float(count)
        assert _max_diff(grads, grads_a) < 1e-6


def test_accumulated_sharded_step_equals_the_plain_step():
    cfg = tiny_config().model
    tx = make_optimizer(OptimConfig(), 10)
    mesh = build_mesh(MeshConfig(2, 2, 2), devices=jax.devices()[:8])
    batch = next(iter(random_dataset(64, 16, 16)))
    results = []
    for accum in (1, 2):
        with jax.set_mesh(mesh):
            state = jax.device_put(init_train_state(init_params(cfg, 0, mesh), tx), train_state_shardings(cfg, tx, mesh))
            state, metrics = make_train_step(cfg, tx, mesh, accum_steps=accum)(state, jax.device_put(batch, batch_sharding(mesh)))
            results.append((jax.device_get(metrics), jax.device_get(state.params)))
    (m1, p1), (m2, p2) = results
    assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-6) and m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    assert _max_diff(p1, p2) < 1e-5


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"model": {"remat_policy": "everything"}}, "model.remat_policy"),
        ({"model": {"attention_block": -1}}, "model.attention_block"),
        ({"train": {"grad_accum_steps": 3}}, "train.grad_accum_steps"),
        ({"train": {"grad_accum_steps": 0}}, "train.grad_accum_steps"),
    ],
)
def test_bad_memory_knobs_are_refused_naming_the_key(sections, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        tiny_config(**sections)


def test_the_new_keys_at_their_defaults_keep_run_folder_names():
    from mergemix_jax.runkit.run_dir import hashed_settings

    plain = hashed_settings(tiny_config())
    assert "remat_policy" not in plain["model"] and "attention_block" not in plain["model"]
    assert "grad_accum_steps" not in plain["train"] and "expert_dirs" not in plain["pipeline"]
    assert hashed_settings(tiny_config(train={"grad_accum_steps": 2}))["train"]["grad_accum_steps"] == 2
