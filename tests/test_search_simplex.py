"""Capped-simplex geometry: projections stay feasible and optimal, gradients match finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.search.simplex import (
    check_caps,
    kl_project_capped,
    project_simplex,
    simplex_grid,
    softmax_weights,
)

K = 5
project = jax.jit(project_simplex)
kl_project = jax.jit(kl_project_capped)
optax_projection = jax.jit(optax.projections.projection_simplex)
vectors = st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=K, max_size=K)
cap_lists = st.lists(st.floats(0.0625, 1.0, width=32), min_size=K, max_size=K).filter(lambda c: sum(c) >= 1.05)


@settings(max_examples=60, deadline=None)
@given(vectors, cap_lists)
def test_capped_projection_is_feasible_and_satisfies_kkt(v, caps):
    v, caps = np.asarray(v, np.float32), np.asarray(caps, np.float32)
    w = np.asarray(project(jnp.asarray(v), jnp.asarray(caps)), np.float64)
    assert abs(w.sum() - 1) < 1e-5
    assert np.all(w >= 0) and np.all(w <= caps + 1e-6)
    # KKT of min ||w - v||^2: one threshold tau with w = clip(v - tau, 0, cap)
    free = (w > 1e-5) & (w < caps - 1e-5)
    tau = np.median((v - w)[free]) if free.any() else None
    if tau is not None:
        np.testing.assert_allclose((v - w)[free], tau, atol=1e-4)
        assert np.all(v[w <= 1e-5] - tau <= 1e-4)
        assert np.all(v[w >= caps - 1e-5] - tau >= caps[w >= caps - 1e-5] - 1e-4)


@settings(max_examples=30, deadline=None)
@given(vectors)
def test_projection_without_binding_caps_is_optax_projection(v):
    v = jnp.asarray(v, jnp.float32)
    expected = optax_projection(v)
    np.testing.assert_allclose(project(v, jnp.ones(K)), expected, atol=1e-5)
    np.testing.assert_allclose(project(v, None), expected, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(vectors, cap_lists)
def test_kl_projection_clamps_and_keeps_proportions(logits, caps):
    p = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32)), np.float64)
    caps = np.asarray(caps, np.float32)
    w = np.asarray(kl_project(jnp.asarray(p, jnp.float32), jnp.asarray(caps)), np.float64)
    assert abs(w.sum() - 1) < 1e-5
    assert np.all(w >= 0) and np.all(w <= caps + 1e-5)
    free = w < caps - 1e-5
    ratio = w[free] / p[free]  # the unclamped domains are scaled by one common factor >= 1
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-3)
    assert ratio[0] >= 1 - 1e-4


def test_projection_is_idempotent_and_batched_rows_match_single_rows():
    rng = np.random.default_rng(0)
    v = jnp.asarray(rng.normal(size=(7, K)), jnp.float32)
    caps = jnp.asarray([0.3, 0.3, 0.5, 0.2, 0.9])
    w = project(v, caps)
    np.testing.assert_allclose(project(w, caps), w, atol=1e-6)
    for row in range(7):
        np.testing.assert_allclose(project(v[row], caps), w[row], atol=1e-6)


def test_softmax_gradient_through_caps_matches_finite_differences():
    caps = jnp.asarray([0.25, 0.5, 0.5, 0.4, 0.6])
    target = jnp.asarray([0.1, 0.3, 0.2, 0.2, 0.2])

    def loss(logits):
        return jnp.sum((softmax_weights(logits, caps) - target) ** 2 * jnp.arange(1.0, K + 1))

    with jax.enable_x64(True):
        logits = jnp.asarray([1.5, 0.2, -0.3, 0.1, 0.0], jnp.float64)  # domain 0 is clamped at its cap
        assert float(softmax_weights(logits, caps)[0]) == pytest.approx(0.25)
        grad = jax.jit(jax.grad(loss))(logits)
        eps = 1e-6
        steps = jnp.eye(K, dtype=jnp.float64) * eps
        fd = jax.jit(jax.vmap(lambda d: (loss(logits + d) - loss(logits - d)) / (2 * eps)))(steps)
        np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-5, atol=1e-8)


def test_grid_counts_compositions_and_lies_on_the_simplex():
    grid = simplex_grid(4, 5)
    assert grid.shape == (56, 4)  # C(5 + 3, 3)
    assert len({tuple(r) for r in grid}) == 56
    np.testing.assert_allclose(grid.sum(1), 1.0)


def test_caps_that_cannot_hold_a_mixture_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match=r"sum to 0.6000 < 1.*lower the budget"):
        check_caps(np.array([0.2, 0.2, 0.2]), 3)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        check_caps(np.array([1.0, 1.0]), 3)
