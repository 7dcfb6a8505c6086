"""Gradient search: finds known optima through every parametrisation, respects caps, batches restarts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config.schema import GradientSearchConfig
from mergemix_jax.search.gradient import gradient_search, make_loss, to_weights
from mergemix_jax.search.problem import SearchProblem, synthetic_quadratic
from mergemix_jax.search.simplex import project_simplex

K = 5


@pytest.mark.parametrize("kind", ["softmax", "mirror", "projected"])
def test_finds_known_optima_inside_on_a_face_and_at_a_vertex(kind):
    # three independent groups (per-module weights), one per kind of optimum, solved in one run
    problem, w_star = synthetic_quadratic(K, ["interior", "face", "vertex"], n_groups=3, seed=3)
    result = gradient_search(problem, GradientSearchConfig(parametrisation=kind, steps=400, chunk=50, restarts=3))
    assert result.group_weights.shape == (3, K)
    for group, optimum in enumerate(["interior", "face", "vertex"]):
        assert np.abs(result.group_weights[group] - w_star[group]).max() < 1e-2, optimum
    np.testing.assert_allclose(result.group_weights.sum(1), 1.0, atol=1e-5)
    assert np.all(result.group_weights >= 0)
    assert result.objective >= float(problem.objective(jnp.asarray(w_star, jnp.float32))) - 1e-5
    assert np.all(np.diff(result.trace) <= 0)  # the trace is the best loss so far


@pytest.mark.parametrize("kind", ["softmax", "mirror"])
def test_objective_gradient_through_the_parametrisation_matches_finite_differences(kind):
    problem, _ = synthetic_quadratic(K, "face", seed=1)
    problem = dataclasses.replace(problem, caps=np.array([0.3, 0.6, 0.6, 0.6, 0.6]))
    loss = make_loss(problem, kl_weight=0.1)
    caps = jnp.asarray(problem.caps)
    with jax.enable_x64(True):
        p = jnp.asarray([0.9, 0.3, -0.2, 0.1, 0.4], jnp.float64)
        if kind == "mirror":
            p = jax.nn.softmax(p)
        f = jax.jit(lambda q: loss(to_weights(kind, q, caps)))
        grad = jax.jit(jax.grad(lambda q: loss(to_weights(kind, q, caps))))(p)
        eps = 1e-6
        fd = jax.vmap(lambda d: (f(p + d) - f(p - d)) / (2 * eps))(jnp.eye(K, dtype=jnp.float64) * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6)


def test_caps_bind_at_the_capped_projection_of_the_target():
    # 0.5 ||w - c||^2 on the capped simplex is minimised exactly at the capped projection of c
    c = jnp.asarray([0.7, 0.4, 0.1, -0.1, 0.0], jnp.float32)
    caps = np.array([0.35, 0.3, 0.5, 0.5, 0.5])
    problem = SearchProblem(domains=tuple(f"d{i}" for i in range(K)), objective=lambda w: 0.5 * jnp.sum((w - c) ** 2), caps=caps)
    expected = np.asarray(project_simplex(c, jnp.asarray(problem.caps)))
    for kind in ("softmax", "mirror", "projected"):
        result = gradient_search(problem, GradientSearchConfig(parametrisation=kind, steps=400, chunk=200, restarts=2))
        assert np.all(result.weights <= caps + 1e-5), kind
        assert np.abs(result.weights - expected).max() < 1e-2, kind


def test_kl_pull_moves_the_answer_to_the_prior():
    problem, _ = synthetic_quadratic(K, "vertex", seed=2)
    prior = np.array([0.1, 0.2, 0.3, 0.2, 0.2])
    problem = dataclasses.replace(problem, prior=prior)
    options = GradientSearchConfig(parametrisation="softmax", steps=300, chunk=100, restarts=1)
    free = gradient_search(problem, options)
    pulled = gradient_search(problem, dataclasses.replace(options, kl_weight=100.0))
    assert np.abs(pulled.weights - prior).max() < 0.02 < np.abs(free.weights - prior).max()


def test_restarts_batched_with_vmap_equal_single_runs():
    problem, _ = synthetic_quadratic(K, "interior", seed=4)
    options = GradientSearchConfig(parametrisation="softmax", steps=40, chunk=20, restarts=3, rel_tol=0.0)
    batched = gradient_search(problem, options)
    single = gradient_search(problem, dataclasses.replace(options, restarts=1))  # restart 0 starts at the prior
    np.testing.assert_allclose(batched.extras["restart_losses"][0], single.extras["restart_losses"][0], rtol=1e-6)


def test_single_vector_search_and_early_stopping_ends_the_run():
    problem, w_star = synthetic_quadratic(4, "interior", seed=5)
    result = gradient_search(problem, GradientSearchConfig(parametrisation="mirror", steps=5000, chunk=50, restarts=2))
    assert result.group_weights is None and result.weights.shape == (4,)
    assert np.abs(result.weights - w_star).max() < 1e-2
    assert result.extras["stopped_early"] and result.extras["steps"] < 5000


def test_scorer_only_problem_is_rejected_with_the_reason():
    problem, _ = synthetic_quadratic(K, seed=0)
    problem = dataclasses.replace(problem, objective=None)
    with pytest.raises(ValueError, match="needs a differentiable objective"):
        gradient_search(problem)
