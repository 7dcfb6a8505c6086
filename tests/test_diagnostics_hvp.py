"""Curvature diagnostics: Hessian-vector products against finite differences, gamma's definition, cosines."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mergemix_jax.data import batch_from_sequences
from mergemix_jax.diagnostics import curvature_ratios, domain_loss_fn, hvp, task_vector_cosines
from mergemix_jax.eval import make_suite
from mergemix_jax.merge import build_expert_stack
from mergemix_jax.model import init_params
from tests.helpers import tiny_config


def _batch(seed: int, rows: int = 4, length: int = 16, vocab: int = 64) -> dict:
    return batch_from_sequences(np.random.default_rng(seed).integers(3, vocab, size=(rows, length + 1)))


def _setup(k: int = 3):
    cfg = tiny_config().model
    base = init_params(cfg, 0)
    base = jax.tree.map(np.asarray, base)
    rng = np.random.default_rng(1)
    experts = [jax.tree.map(lambda x: x + 0.05 * rng.standard_normal(x.shape).astype(x.dtype), base) for _ in range(k)]
    names = tuple(f"d{i}" for i in range(k))
    stack = build_expert_stack(base, experts, names)
    suite = make_suite({n: _batch(i) for i, n in enumerate(names)})
    return cfg, base, stack, suite


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def _fd_hvp(grad, params, vector, eps: float = 1e-2) -> np.ndarray:
    """Central difference of the gradient along `vector`: (grad(p + e v) - grad(p - e v)) / 2e."""
    plus = grad(jax.tree.map(lambda p, v: p + eps * v, params, vector))
    minus = grad(jax.tree.map(lambda p, v: p - eps * v, params, vector))
    return (_flat(plus) - _flat(minus)) / (2 * eps)


@pytest.mark.slow  # Hessian-vector products compiled over a whole model
def test_hvp_matches_finite_differences_and_gamma_follows_its_definition():
    cfg, base, stack, suite = _setup()
    deltas = [jax.tree.map(lambda e, b, j=j: e[j] - b, stack.experts, base) for j in range(3)]
    fd_norms = np.zeros((3, 3))
    hvp_of = jax.jit(lambda batch, p, v: hvp(domain_loss_fn(cfg, batch), p, v))  # one compile for every (k, j)
    grad_of = jax.jit(lambda batch, p: jax.grad(domain_loss_fn(cfg, batch))(p))
    loss_of = jax.jit(lambda batch, p: domain_loss_fn(cfg, batch)(p))
    for k, name in enumerate(stack.names):
        batch = suite.heldout[name]
        for j, g in enumerate(deltas):
            exact = _flat(hvp_of(batch, base, g))
            fd = _fd_hvp(lambda p, b=batch: grad_of(b, p), base, g)
            cos = exact @ fd / (np.linalg.norm(exact) * np.linalg.norm(fd))
            assert cos > 0.999, (k, j, cos)
            np.testing.assert_allclose(np.linalg.norm(exact), np.linalg.norm(fd), rtol=2e-2)
            fd_norms[k, j] = np.linalg.norm(fd)
        # the quadratic form along g_k: second difference of the loss itself. eps = 0.1 leaves 4th-order
        # terms of ~15% along these large task vectors, eps = 0.01 float32 noise; 0.02 sits between (<2%).
        g, eps = deltas[k], 0.02
        values = [float(loss_of(batch, jax.tree.map(lambda p, v, s=s: p + s * v, base, g))) for s in (-eps, 0.0, eps)]
        second = (values[0] - 2 * values[1] + values[2]) / eps**2
        quad = float(_flat(g) @ _flat(hvp_of(batch, base, g)))
        np.testing.assert_allclose(quad, second, rtol=0.05)

    got = curvature_ratios(cfg, stack, suite)
    g_norms = np.asarray([np.linalg.norm(_flat(g)) for g in deltas])
    per_unit = fd_norms / g_norms[None, :]
    expected = per_unit / np.diag(per_unit)[:, None]
    np.testing.assert_allclose(got["gamma"], expected, rtol=3e-2)
    np.testing.assert_allclose(np.diag(got["gamma"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got["task_norms"], g_norms, rtol=1e-4)


def test_task_vector_cosines():
    _, base, stack, _ = _setup(2)
    g0 = jax.tree.map(lambda e, b: e[0] - b, stack.experts, base)
    parallel = jax.tree.map(lambda b, d: b + 3.0 * d, base, g0)
    opposite = jax.tree.map(lambda b, d: b - 0.5 * d, base, g0)
    third = build_expert_stack(base, [jax.tree.map(lambda e: e[0], stack.experts), parallel, opposite, jax.tree.map(lambda e: e[1], stack.experts)])
    cos = task_vector_cosines(third)
    np.testing.assert_allclose(cos, cos.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-5)
    np.testing.assert_allclose(cos[0, 1], 1.0, atol=1e-5)
    np.testing.assert_allclose(cos[0, 2], -1.0, atol=1e-5)
    assert abs(cos[0, 3]) < 0.1  # independent random perturbations are nearly orthogonal
