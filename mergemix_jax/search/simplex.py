"""Geometry of the (capped) probability simplex: projections, parametrisations, samples, KL.

A mixture is a vector w_K with w >= 0, sum w = 1 and, when token availability limits a domain,
w_k <= cap_k. Every function here works on the last axis, so per-layer weights [G, K] and batches
[B, K] go through unchanged.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

_BISECTION_STEPS = 60  # halves the bracket below float32 resolution for any |v| < 1e6


def check_caps(caps: np.ndarray | None, k: int) -> np.ndarray | None:
    """Validate caps [K]: finite, > 0 and sum >= 1 (else no mixture fits); returns float32 or None."""
    if caps is None:
        return None
    caps = np.asarray(caps, dtype=np.float64)
    if caps.shape != (k,):
        raise ValueError(f"caps must have shape ({k},) (one per domain), got {caps.shape}")
    if not np.all(np.isfinite(caps)) or np.any(caps <= 0):
        raise ValueError(f"caps must be finite and > 0, got {caps}; drop domains that have no tokens")
    if caps.sum() < 1 - 1e-6:
        raise ValueError(
            f"caps sum to {caps.sum():.4f} < 1: the token budget exceeds max_epochs x available tokens; "
            "lower the budget, raise max_epochs or add data"
        )
    return np.minimum(caps, 1.0).astype(np.float32)


def project_simplex(v: jax.Array, caps: jax.Array | None = None) -> jax.Array:
    """Euclidean projection of v [..., K] onto {w: sum w = 1, 0 <= w <= caps}.

    Without caps this is `optax.projections.projection_simplex`. With caps the solution is
    w = clip(v - tau, 0, caps) for the threshold tau making sum w = 1, found by bisection
    (sum w is monotone non-increasing in tau); caps must sum to >= 1.
    """
    if caps is None:
        flat = v.reshape(-1, v.shape[-1])
        return jax.vmap(optax.projections.projection_simplex)(flat).reshape(v.shape)
    caps = jnp.broadcast_to(jnp.asarray(caps, v.dtype), v.shape)

    def total(tau_1: jax.Array) -> jax.Array:
        return jnp.clip(v - tau_1, 0.0, caps).sum(-1, keepdims=True)

    lo = jnp.min(v - caps, axis=-1, keepdims=True)  # every w_k at its cap: total >= 1
    hi = jnp.max(v, axis=-1, keepdims=True)  # every w_k at 0: total = 0

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = total(mid) >= 1.0
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (lo, hi))
    w = jnp.clip(v - 0.5 * (lo + hi), 0.0, caps)
    return _renormalise_free(w, caps)


def _renormalise_free(w: jax.Array, caps: jax.Array) -> jax.Array:
    """Remove the bisection's last rounding error by rescaling the coordinates strictly inside (0, cap)."""
    free = (w > 0) & (w < caps)
    fixed_mass = jnp.where(free, 0.0, w).sum(-1, keepdims=True)
    free_mass = jnp.where(free, w, 0.0).sum(-1, keepdims=True)
    scale = jnp.where(free_mass > 0, (1.0 - fixed_mass) / jnp.where(free_mass > 0, free_mass, 1.0), 1.0)
    return jnp.where(free, jnp.minimum(w * scale, caps), w)


def kl_project_capped(p: jax.Array, caps: jax.Array | None = None) -> jax.Array:
    """KL (Bregman) projection of a positive vector p [..., K] onto the capped simplex.

    The solution is w = min(caps, s * p) with the scale s making sum w = 1: domains over their cap
    are clamped and the rest keep their relative proportions. The scale and the clamped set are
    found without gradient; the result is then written as a differentiable function of p, so
    gradients through softmax + capping are exact almost everywhere.
    """
    p = p / p.sum(-1, keepdims=True)
    if caps is None:
        return p
    caps = jnp.broadcast_to(jnp.asarray(caps, p.dtype), p.shape)
    ps = jax.lax.stop_gradient(p)

    def total(s_1: jax.Array) -> jax.Array:
        return jnp.minimum(caps, s_1 * ps).sum(-1, keepdims=True)

    lo = jnp.ones((*p.shape[:-1], 1), p.dtype)  # s = 1 gives total <= 1 (p sums to 1)
    hi = jnp.max(caps / jnp.maximum(ps, 1e-30), axis=-1, keepdims=True)  # all clamped: total >= 1

    def halve(_, bracket):
        lo, hi = bracket
        mid = jnp.sqrt(lo * hi)  # geometric bisection: s spans many orders of magnitude
        above = total(mid) >= 1.0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (lo, hi))
    clamped = jax.lax.stop_gradient(hi * ps >= caps * (1 - 1e-6))
    clamped_mass = jnp.where(clamped, caps, 0.0).sum(-1, keepdims=True)
    free_mass = jnp.where(clamped, 0.0, p).sum(-1, keepdims=True)
    w = jnp.where(clamped, caps, p * (1.0 - clamped_mass) / jnp.maximum(free_mass, 1e-30))
    return w


def softmax_weights(logits: jax.Array, caps: jax.Array | None = None) -> jax.Array:
    """Mixture from unconstrained logits [..., K]: softmax, then the KL projection onto the caps."""
    return kl_project_capped(jax.nn.softmax(logits, axis=-1), caps)


def kl_divergence(w: jax.Array, prior: jax.Array) -> jax.Array:
    """KL(w || prior) over the last axis, summed over leading axes; 0 log 0 = 0."""
    w_safe = jnp.where(w > 0, w, 1.0)
    return jnp.sum(jnp.where(w > 0, w * (jnp.log(w_safe) - jnp.log(prior)), 0.0))


def dirichlet(rng: np.random.Generator, alpha: np.ndarray, n: int) -> np.ndarray:
    """n Dirichlet samples [n, K] with concentration alpha [K] (float64, rows sum to 1)."""
    return rng.dirichlet(np.maximum(np.asarray(alpha, np.float64), 1e-3), size=n)


def simplex_grid(k: int, resolution: int) -> np.ndarray:
    """All mixtures with coordinates in multiples of 1/resolution: [C(resolution+K-1, K-1), K]."""
    points = []
    for bars in itertools.combinations(range(resolution + k - 1), k - 1):
        edges = (-1, *bars, resolution + k - 1)
        points.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
    return np.asarray(points, np.float64) / resolution


def grid_resolution_for(k: int, max_points: int) -> int:
    """Largest grid resolution whose simplex lattice has at most max_points points (>= 1)."""
    resolution = 1
    while math.comb(resolution + 1 + k - 1, k - 1) <= max_points:
        resolution += 1
    return resolution


def project_rows_np(w: np.ndarray, caps: np.ndarray | None = None) -> np.ndarray:
    """NumPy convenience: project rows of w [B, K] (or [K]) onto the (capped) simplex."""
    out = project_simplex(jnp.asarray(w, jnp.float32), None if caps is None else jnp.asarray(caps, jnp.float32))
    return np.asarray(out, np.float64)
