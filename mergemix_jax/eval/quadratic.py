"""Second-order proxy of the metrics as functions of the K merge weights.

Around a centre c, f(w) ~ f(c) + J (w - c) + 1/2 (w - c)^T H (w - c), with the Jacobian J [M, K]
and Hessians H [M, K, K] taken w.r.t. the merge weights, i.e. restricted to the K-dim subspace of
task vectors. They come from one forward-over-forward program (K^2 nested JVPs over the same eval
data); afterwards each mixture costs O(M K^2). Where an exact check at the mixture farthest from its
centre disagrees by more than a tolerance, that mixture becomes a new centre (greedy re-centring)
and mixtures are scored by their nearest centre.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

VectorFn = Callable[[jax.Array], jax.Array]  # weights [K] -> metrics [M]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class QuadraticModel:
    """The expansion at `centre_K`: value_M, jacobian_MxK, hessian_MxKxK."""

    centre_K: jax.Array
    value_M: jax.Array
    jacobian_MxK: jax.Array
    hessian_MxKxK: jax.Array

    def predict(self, weights_BxK) -> np.ndarray:
        """[B, M] second-order predictions (float64 on the host: O(M K^2) per mixture)."""
        d = np.asarray(weights_BxK, np.float64) - np.asarray(self.centre_K, np.float64)
        jac, hess = np.asarray(self.jacobian_MxK, np.float64), np.asarray(self.hessian_MxKxK, np.float64)
        return np.asarray(self.value_M, np.float64) + d @ jac.T + 0.5 * np.einsum("bk,mkl,bl->bm", d, hess, d)


def fit_quadratic(fn: VectorFn, centre_K: jax.Array) -> QuadraticModel:
    """Value, Jacobian and Hessian of `fn` at `centre_K`, forward over forward (jit me).

    K JVPs give the Jacobian and, nested in K more, the Hessian: K^2 second-order forward passes
    whatever the number of metrics M, with no backward pass to store activations for or compile.
    """
    centre_K = jnp.asarray(centre_K, jnp.float32)
    eye_KxK = jnp.eye(centre_K.shape[0], dtype=jnp.float32)

    def value_and_jacobian(w):
        value, columns_KxM = jax.vmap(lambda u: jax.jvp(fn, (w,), (u,)), out_axes=(None, 0))(eye_KxK)
        return columns_KxM.T, (value, columns_KxM.T)

    hessian, (value, jacobian) = jax.jacfwd(value_and_jacobian, has_aux=True)(centre_K)
    return QuadraticModel(centre_K, value, jacobian, hessian)


@functools.partial(jax.jit, static_argnums=0)
def _fit_jit(fn: Callable, centre_K: jax.Array, args: tuple) -> QuadraticModel:
    return fit_quadratic(lambda w: fn(w, *args), centre_K)


@functools.partial(jax.jit, static_argnums=0)
def _call_jit(fn: Callable, weights_K: jax.Array, args: tuple) -> jax.Array:
    return fn(weights_K, *args)


@dataclass
class ProxyResult:
    """predictions [B, M]; centres: the expansion points used; checks: (row, predicted, exact) of the
    objective at every exact check made (including the ones that triggered re-centring)."""

    predictions: np.ndarray
    centres: list[np.ndarray] = field(default_factory=list)
    checks: list[tuple[int, float, float]] = field(default_factory=list)
    nearest: np.ndarray | None = None  # [B] index of the centre that scored each mixture


def quadratic_scores(
    fn: VectorFn,
    weights_BxK,
    centre_K=None,
    objective: int = 0,
    tol: float = 0.01,
    max_centres: int = 4,
    exact_fn: VectorFn | None = None,
    args: tuple = (),
) -> ProxyResult:
    """Score every mixture with the second-order proxy of `fn`, re-centring where it is wrong.

    The first centre is `centre_K` (default: the mean mixture). Each round checks, for every centre,
    its assigned mixture farthest away with `exact_fn` (default `fn`); a relative gap on metric
    `objective` above `tol` makes that mixture a new centre, up to `max_centres`.
    `fn` and `exact_fn` are called as fn(w, *args): pass large arrays (experts, eval tokens) in
    `args` rather than closing over them, or jit bakes them into the program as constants. The
    compiled fit and check are cached per `fn` object: reuse the same `fn` to skip recompiling.
    """
    weights = np.asarray(weights_BxK, np.float32)
    fit, exact = (lambda c: _fit_jit(fn, c, args)), (lambda w: _call_jit(exact_fn or fn, w, args))
    centres = [np.asarray(weights.mean(axis=0) if centre_K is None else centre_K, np.float32)]
    models = [fit(centres[0])]
    checked: set[int] = set()
    result = ProxyResult(predictions=np.empty(0), centres=centres)
    while True:
        distances_BxC = np.linalg.norm(weights[:, None, :] - np.stack(centres)[None], axis=-1)
        nearest = distances_BxC.argmin(axis=1)
        predictions = np.stack([models[c].predict(weights[b : b + 1])[0] for b, c in enumerate(nearest)]) if len(models) > 1 else models[0].predict(weights)
        result.predictions, result.nearest = predictions, nearest
        if len(models) >= max_centres:
            return result
        new_centres = []
        for c in range(len(models)):
            mine = np.flatnonzero(nearest == c)
            mine = mine[[b not in checked for b in mine]]
            if len(mine) == 0:
                continue
            row = int(mine[distances_BxC[mine, c].argmax()])
            checked.add(row)
            truth = float(np.asarray(exact(weights[row]))[objective])
            guess = float(predictions[row, objective])
            result.checks.append((row, guess, truth))
            if abs(guess - truth) > tol * max(1.0, abs(truth)):
                new_centres.append(row)
        if not new_centres:
            return result
        for row in new_centres[: max_centres - len(models)]:
            centres.append(weights[row].copy())
            models.append(fit(weights[row]))
