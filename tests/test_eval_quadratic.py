"""Second-order proxy: exact on quadratics, derivatives match finite differences on a real merged model."""

import jax
import jax.numpy as jnp
import numpy as np

from mergemix_jax.config import ModelConfig
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.eval import fit_quadratic, make_suite, quadratic_scores, score_one
from mergemix_jax.merge import build_expert_stack, sample_dirichlet
from mergemix_jax.model import init_params
from tests.helpers import TINY_MODEL

K = 4


def test_proxy_is_exact_for_a_function_quadratic_in_the_weights():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, K))
    curvature, slope = jnp.asarray(a @ a.T), jnp.asarray(rng.standard_normal(K))
    fn = lambda w: jnp.stack([2.0 + slope @ w + w @ curvature @ w, jnp.sum((w - 0.3) ** 2)])  # noqa: E731
    model = jax.jit(lambda c: fit_quadratic(fn, c))(jnp.full(K, 0.25))
    weights = rng.dirichlet(np.ones(K), 20) * 2
    truth = np.stack([np.asarray(fn(jnp.asarray(w, jnp.float32))) for w in weights])
    np.testing.assert_allclose(model.predict(weights), truth, rtol=1e-5, atol=1e-5)
    result = quadratic_scores(fn, weights, tol=1e-4, max_centres=3)
    assert len(result.centres) == 1 and len(result.checks) == 1  # the check agrees: no re-centring


def test_recentres_where_the_exact_check_disagrees():
    fn = lambda w: jnp.stack([jnp.sum(jnp.exp(3 * w) * jnp.arange(1, K + 1))])  # noqa: E731
    weights = np.random.default_rng(1).dirichlet(np.ones(K), 40).astype(np.float32)
    one = quadratic_scores(fn, weights, max_centres=1)
    many = quadratic_scores(fn, weights, tol=1e-3, max_centres=4)
    truth = np.array([float(fn(jnp.asarray(w))[0]) for w in weights])
    assert len(many.centres) > 1 and any(abs(p - t) > 1e-3 * abs(t) for _, p, t in many.checks)
    assert np.abs(many.predictions[:, 0] - truth).max() < np.abs(one.predictions[:, 0] - truth).max()


def test_gradient_and_hessian_of_a_merged_model_match_finite_differences():
    cfg = ModelConfig(**TINY_MODEL)
    base = init_params(cfg, 0)
    rng = np.random.default_rng(2)
    experts = [jax.tree.map(lambda b: b + jnp.asarray(0.1 * rng.standard_normal(b.shape), b.dtype), base) for _ in range(K)]
    stack = build_expert_stack(base, experts)
    tokens = rng.integers(1, 64, (2, 9)).astype(np.int32)
    batch = batch_from_sequences(tokens)
    suite = make_suite({"d": batch})
    loss = lambda w: score_one(cfg, stack, w, suite)["loss/d"]  # noqa: E731
    centre = jnp.asarray(sample_dirichlet(1, K, seed=0)[0])
    model = jax.jit(lambda c: fit_quadratic(lambda w: loss(w)[None], c))(centre)
    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compiled program for both differences
    np.testing.assert_allclose(model.jacobian_MxK[0], value_and_grad(centre)[1], rtol=1e-5, atol=1e-6)
    h, eye = 1e-2, np.eye(K, dtype=np.float32)
    plus, minus = [value_and_grad(centre + h * e) for e in eye], [value_and_grad(centre - h * e) for e in eye]
    fd_grad = np.array([(p[0] - m[0]) / (2 * h) for p, m in zip(plus, minus, strict=True)])
    np.testing.assert_allclose(model.jacobian_MxK[0], fd_grad, rtol=2e-2, atol=2e-3)
    fd_hess = np.stack([(p[1] - m[1]) / (2 * h) for p, m in zip(plus, minus, strict=True)])
    np.testing.assert_allclose(model.hessian_MxKxK[0], fd_hess, rtol=2e-2, atol=5e-3)
    assert np.abs(np.asarray(model.hessian_MxKxK[0])).max() > 1e-3  # a curved loss, so the check has teeth


def _steep(w):
    return jnp.stack([jnp.sum(jnp.exp(4 * w) * jnp.arange(1, K + 1)), jnp.sum(w**2)])


def test_trust_region_scores_mixtures_outside_it_exactly():
    weights = np.vstack([np.eye(K), np.random.default_rng(3).dirichlet(np.ones(K), 30)]).astype(np.float32)
    truth = np.stack([np.asarray(_steep(jnp.asarray(w))) for w in weights])
    centre = np.full(K, 0.25, np.float32)
    unguarded = quadratic_scores(_steep, weights, centre_K=centre, max_centres=1)
    guarded = quadratic_scores(_steep, weights, centre_K=centre, max_centres=1, radius=0.3, tol=1.0)  # a loose tol: no shrinking
    outside = np.flatnonzero(np.linalg.norm(weights - centre, axis=1) > 0.3)
    assert guarded.radii == [0.3] and 0 < len(outside) < len(weights)
    np.testing.assert_array_equal(guarded.exact, outside)
    assert (guarded.nearest[outside] == -1).all() and (np.delete(guarded.nearest, outside) == 0).all()
    np.testing.assert_allclose(guarded.predictions[outside], truth[outside], rtol=1e-5)
    inside = np.setdiff1d(np.arange(len(weights)), outside)
    np.testing.assert_array_equal(guarded.predictions[inside], unguarded.predictions[inside])
    assert np.abs(guarded.predictions - truth).max() < 0.5 * np.abs(unguarded.predictions - truth).max()
    assert len(unguarded.exact) == 0 and unguarded.checks == []  # no radius, one centre: nothing to check


def test_a_failed_check_shrinks_the_radius_below_the_failing_mixture():
    weights = np.vstack([np.eye(K), np.random.default_rng(4).dirichlet(np.ones(K), 30)]).astype(np.float32)
    truth = np.stack([np.asarray(_steep(jnp.asarray(w))) for w in weights])
    result = quadratic_scores(_steep, weights, max_centres=2, radius=2.0, tol=1e-3)
    failed = [row for row, guess, exact in result.checks if abs(guess - exact) > 1e-3 * max(1.0, abs(exact))]
    assert failed and min(result.radii) < 2.0  # both centres used, then radii halved
    trusted = result.nearest >= 0
    centre_rows = {int(np.argmin(np.linalg.norm(weights - c, axis=1))) for c in result.centres[1:]}
    assert all(not trusted[row] or row in centre_rows for row in failed)  # a failing mixture is never left to a wrong expansion
    np.testing.assert_allclose(result.predictions[result.exact], truth[result.exact], rtol=1e-5)
    assert len(result.checks) <= 32 and len(result.exact) > 0
    worst = np.abs(result.predictions - truth)[:, 0].max()
    assert worst < np.abs(quadratic_scores(_steep, weights, max_centres=2, tol=1e-3).predictions - truth)[:, 0].max()
