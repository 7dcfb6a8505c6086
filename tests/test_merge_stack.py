"""Merge engine: corner identities (one-hot = expert, zero = base), linear algebra, TIES/DARE, checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import ModelConfig
from mergemix_jax.merge import build_expert_stack, dare_merge, linear_merge, merge, ties_merge
from mergemix_jax.model import cast_params, forward, init_params
from tests.helpers import TINY_MODEL

CFG = ModelConfig(**TINY_MODEL)
K = 3


def perturbed(base, seed, scale=0.02):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda b: b + jnp.asarray(scale * rng.standard_normal(b.shape), b.dtype), base)


@pytest.fixture(scope="module")
def setup():
    base = init_params(CFG, 0)
    experts = [perturbed(base, 10 + k) for k in range(K)]
    return base, experts, build_expert_stack(base, experts, ["code", "web", "math"])


LINEAR = jax.jit(linear_merge)
TIES = jax.jit(ties_merge, static_argnames="density")
DARE = jax.jit(dare_merge, static_argnames=("drop_rate", "seed"))


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


TOKENS = np.random.default_rng(0).integers(1, 64, (2, 12))


def test_one_hot_weights_reproduce_each_expert_exactly(setup):
    _, experts, stack = setup
    logits = jax.jit(lambda p: forward(CFG, p, TOKENS))
    for k in range(K):
        merged = LINEAR(stack, jnp.eye(K)[k])
        assert_trees_equal(merged, experts[k])
        np.testing.assert_array_equal(np.asarray(logits(merged)), np.asarray(logits(experts[k])))


def test_zero_weights_reproduce_the_base(setup):
    base, _, stack = setup
    assert_trees_equal(LINEAR(stack, jnp.zeros(K)), base)


def test_linear_merge_is_base_plus_scaled_weighted_task_vectors(setup):
    base, experts, stack = setup
    w, scale = np.array([0.2, 0.5, 0.3], np.float32), 0.7
    merged = LINEAR(stack, w, scale)
    expected = jax.tree.map(lambda b, *es: b + scale * sum(wk * (e - b) for wk, e in zip(w, es, strict=True)), base, *experts)
    for x, y in zip(jax.tree.leaves(merged), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def test_bfloat16_storage_accumulates_in_float32_and_keeps_its_dtype(setup):
    base, experts, _ = setup
    stack16 = build_expert_stack(cast_params(base, jnp.bfloat16), [cast_params(e, jnp.bfloat16) for e in experts])
    merged = LINEAR(stack16, jnp.array([1 / 3] * 3))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(merged))
    b, es = np.asarray(stack16.base["embed_VxD"], np.float64), np.asarray(stack16.experts["embed_VxD"], np.float64)
    exact = b + sum((es[k] - b) / 3 for k in range(3))
    # one bfloat16 rounding of the float32 sum: within half a bf16 ulp (2^-8 relative) of the exact value
    np.testing.assert_allclose(np.asarray(merged["embed_VxD"], np.float64), exact, rtol=2**-8, atol=1e-30)


def test_ties_keeps_the_top_fraction_and_agreeing_signs():
    base = {"w": jnp.zeros(10)}
    e1 = {"w": jnp.array([5.0, -4, 3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])}
    e2 = {"w": jnp.array([1.0, 4, -6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])}
    stack = build_expert_stack(base, [e1, e2])
    out = np.asarray(TIES(stack, jnp.array([0.5, 0.5]), density=0.3)["w"])
    # top 30%: e1 keeps [5, -4, 3], e2 keeps [1, 4, -6]; signs elected: +, 0 (tie), -; disjoint means.
    np.testing.assert_allclose(out[:3], [3.0, 0.0, -6.0], atol=1e-6)
    np.testing.assert_array_equal(out[3:], 0.0)
    full = TIES(stack, jnp.array([0.0, 1.0]), density=1.0)["w"]
    np.testing.assert_allclose(np.asarray(full), np.asarray(e2["w"]), atol=1e-6)


def test_dare_is_seeded_rescaled_and_linear_without_drop():
    rng = np.random.default_rng(0)
    base = {"a": jnp.asarray(rng.standard_normal(2000), jnp.float32), "b": jnp.zeros((40, 50))}
    stack = build_expert_stack(base, [jax.tree.map(lambda x, k=k: x + k + 1.0, base) for k in range(2)])
    w = jnp.array([0.25, 0.75])
    a, b, c = (DARE(stack, w, drop_rate=0.5, seed=s) for s in (1, 1, 2))
    assert_trees_equal(a, b)
    assert not np.array_equal(np.asarray(a["a"]), np.asarray(c["a"]))
    for x, y in zip(jax.tree.leaves(DARE(stack, w, drop_rate=0.0, seed=0)), jax.tree.leaves(LINEAR(stack, w)), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
    kept = np.asarray(DARE(stack, jnp.array([1.0, 0.0]), drop_rate=0.75, seed=0)["b"])
    assert set(np.unique(kept).tolist()) <= {0.0, 4.0}  # dropped, or the task vector (1) rescaled by 1/(1-0.75)
    assert abs(kept.mean() - 1.0) < 0.1


def test_merge_dispatch_names_the_methods(setup):
    with pytest.raises(ValueError, match=r"unknown merge method 'avg'.*linear"):
        merge(setup[2], jnp.ones(K), "avg")


def test_structure_shape_and_dtype_mismatches_name_the_expert_and_leaf(setup):
    base, experts, _ = setup
    missing = {k: v for k, v in experts[1].items() if k != "final_norm"}
    with pytest.raises(ValueError, match=r"expert 'b'.*different parameter tree.*final_norm"):
        build_expert_stack(base, [experts[0], missing], ["a", "b"])
    reshaped = dict(experts[0], embed_VxD=jnp.zeros((63, 32)))
    with pytest.raises(ValueError, match=r"expert 'a' leaf \['embed_VxD'\] has shape \(63, 32\), the base has \(64, 32\)"):
        build_expert_stack(base, [reshaped], ["a"])
    with pytest.raises(ValueError, match=r"expert 'x' leaf .* has dtype bfloat16, the base has float32"):
        build_expert_stack(base, [cast_params(experts[0], jnp.bfloat16)], ["x"])
    with pytest.raises(ValueError, match="at least one expert"):
        build_expert_stack(base, [])
