"""The transformer: causal, respects packed-document boundaries, GQA/tied variants, sharded = unsharded."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import MeshConfig
from mergemix_jax.model import count_params, forward, init_params, param_partition_specs
from mergemix_jax.parallel.mesh import build_mesh
from tests.helpers import tiny_config

CFG = tiny_config().model


def tokens(batch=2, length=12, seed=0):
    return jax.random.randint(jax.random.key(seed), (batch, length), 1, CFG.vocab_size)


def test_jit_equals_eager_and_shapes():
    params = init_params(CFG, 0)
    eager = forward(CFG, params, tokens())
    jitted = jax.jit(lambda p, t: forward(CFG, p, t))(params, tokens())
    assert eager.shape == (2, 12, CFG.vocab_size) and eager.dtype == jnp.float32
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-5)


def test_changing_future_tokens_never_changes_past_logits():
    params = init_params(CFG, 0)
    base = tokens(2, 12)
    out = forward(CFG, params, base)
    position = 5
    future_changed = base.at[:, position + 1 :].set((base[:, position + 1 :] + 7) % CFG.vocab_size)
    np.testing.assert_array_equal(forward(CFG, params, future_changed)[:, : position + 1], out[:, : position + 1])
    past_changed = base.at[:, 0].set((base[:, 0] + 7) % CFG.vocab_size)
    assert float(jnp.abs(forward(CFG, params, past_changed)[:, position] - out[:, position]).max()) > 1e-4


def test_packed_documents_do_not_see_each_other():
    params = init_params(CFG, 0)
    a, b = tokens(1, 12, 1), tokens(1, 12, 2)
    segments = jnp.array([[1] * 6 + [2] * 6])
    positions = jnp.array([list(range(6)) * 2])
    mixed = b.at[:, 6:].set(a[:, 6:])  # same second document, different first document
    out_a = forward(CFG, params, a, positions, segments)
    out_mixed = forward(CFG, params, mixed, positions, segments)
    np.testing.assert_allclose(out_a[:, 6:], out_mixed[:, 6:], rtol=1e-5, atol=1e-5)
    alone = forward(CFG, params, a[:, 6:])
    np.testing.assert_allclose(out_a[:, 6:], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tie, kv_heads", [(True, 4), (False, 1)])
def test_variants_build_and_count(tie, kv_heads):
    cfg = dataclasses.replace(CFG, tie_embeddings=tie, n_kv_heads=kv_heads)
    params = init_params(cfg, 0)
    d, v, f, e = cfg.d_model, cfg.vocab_size, cfg.d_ff, cfg.resolved_head_dim
    per_block = d * cfg.n_heads * e * 2 + 2 * d * kv_heads * e + 3 * d * f + 2 * d
    expected = v * d + cfg.n_layers * per_block + d + (0 if tie else d * v)
    assert count_params(params) == expected
    assert forward(cfg, params, tokens()).shape == (2, 12, v)


def test_bfloat16_compute_stays_close():
    params = init_params(CFG, 0)
    full = forward(CFG, params, tokens())
    half = forward(dataclasses.replace(CFG, compute_dtype="bfloat16"), params, tokens())
    assert half.dtype == jnp.float32
    assert float(jnp.abs(full - half).max()) < 0.1


def test_every_parameter_is_annotated_and_sharded_forward_matches():
    specs = jax.tree.leaves(param_partition_specs(CFG), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert specs and all(isinstance(s, jax.sharding.PartitionSpec) for s in specs)
    mesh = build_mesh(MeshConfig(2, 2, 2))
    with jax.set_mesh(mesh):
        sharded = init_params(CFG, 0, mesh)
        out = jax.jit(lambda p, t: forward(CFG, p, t))(sharded, tokens(4))
    assert sharded["blocks"][0]["mlp"]["w_up_DxF"].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    np.testing.assert_allclose(out, forward(CFG, init_params(CFG, 0), tokens(4)), rtol=1e-4, atol=1e-5)
