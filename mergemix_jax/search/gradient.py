"""Gradient search over merge weights: optax on the (capped) simplex, restarts batched with vmap.

Three parametrisations of a mixture w [..., K] (per-group weights [G, K] go through unchanged):
- "softmax":   w = capped-softmax(logits), logits updated by optax (adam by default);
- "mirror":    exponentiated gradient (mirror descent with the entropy), w <- w * exp(u) renormalised,
               u the optax update of the gradient (sgd by default), then the KL projection on the caps;
- "projected": w <- Euclidean projection of (w + u) on the capped simplex (optax.projections).
The loss is objective(w) + kl_weight * KL(w || prior). Steps run in jitted chunks of `chunk`
steps; the search stops when a chunk improves the best loss by less than `rel_tol` (relatively).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mergemix_jax.config.schema import PARAMETRISATIONS, GradientSearchConfig
from mergemix_jax.search.objective import split_objective
from mergemix_jax.search.problem import SearchProblem
from mergemix_jax.search.simplex import dirichlet, kl_divergence, kl_project_capped, project_simplex, softmax_weights
from mergemix_jax.search.types import SearchResult


def _optimizer(options: GradientSearchConfig) -> optax.GradientTransformation:
    default = {"softmax": "adam", "mirror": "sgd", "projected": "sgd"}[options.parametrisation]
    name = options.optimizer or default
    factory = getattr(optax, name, None)
    if factory is None or not callable(factory):
        raise ValueError(f"optimizer {name!r} is not an optax optimiser (e.g. adam, sgd, adamw)")
    return factory(options.learning_rate)


def make_loss(problem: SearchProblem, kl_weight: float):
    """loss(w) = objective(w) + kl_weight * KL(w || prior): the function gradient search minimises."""
    loss, data = make_data_loss(problem, kl_weight)
    return lambda w: loss(w, data)


def make_data_loss(problem: SearchProblem, kl_weight: float):
    """(loss(w, data), data): loss = objective(w) + kl_weight * KL(w || prior), the function gradient
    search minimises; `data` (the objective's expert stack and suite, see search.objective) is
    passed to jitted steps as an argument, never closed over."""
    if problem.objective is None:
        raise ValueError("gradient search needs a differentiable objective; this problem only has a scorer")
    prior = np.asarray(problem.prior, np.float32)
    objective, data = split_objective(problem.objective)

    def loss(w: jax.Array, data) -> jax.Array:
        value = objective(w, data)
        return value + kl_weight * kl_divergence(w, prior) if kl_weight else value

    return loss, data


def to_weights(parametrisation: str, params: jax.Array, caps: jax.Array | None) -> jax.Array:
    """Mixture weights from the optimised parameters (logits for softmax, the weights otherwise)."""
    return softmax_weights(params, caps) if parametrisation == "softmax" else params


def _initial_weights(problem: SearchProblem, options: GradientSearchConfig, seed: int) -> np.ndarray:
    """[R, *weight_shape] starting mixtures: the prior, then Dirichlet(1) draws, inside the caps."""
    rng = np.random.default_rng(seed)
    starts = [problem.prior, *list(dirichlet(rng, np.ones(problem.k), options.restarts - 1))]
    w0 = np.stack(starts)  # [R, K]
    if problem.n_groups:
        w0 = np.repeat(w0[:, None, :], problem.n_groups, axis=1)
    w0 = jnp.asarray(w0, jnp.float32)
    caps = None if problem.caps is None else jnp.asarray(problem.caps)
    return np.asarray(kl_project_capped(jnp.maximum(w0, 1e-6), caps))


def make_chunk(problem: SearchProblem, options: GradientSearchConfig):
    """(jitted chunk, optimiser, data): chunk(params, opt_state, data) runs `chunk` steps for all
    restarts -> (params, opt_state, losses [R, chunk]); `data` is the objective's (see make_loss)."""
    if options.parametrisation not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {options.parametrisation!r}")
    loss, data = make_data_loss(problem, options.kl_weight)
    tx = _optimizer(options)
    caps = None if problem.caps is None else np.asarray(problem.caps)
    kind = options.parametrisation

    def step(carry, data):
        params, opt_state = carry
        value, grad = jax.value_and_grad(lambda p: loss(to_weights(kind, p, caps), data))(params)
        updates, opt_state = tx.update(grad, opt_state, params)
        if kind == "softmax":
            params = params + updates
        elif kind == "mirror":
            # exp(u) with u = -lr*grad: the multiplicative (exponentiated-gradient) step
            params = kl_project_capped(params * jnp.exp(updates - updates.max(-1, keepdims=True)), caps)
        else:
            params = project_simplex(params + updates, caps)
        return (params, opt_state), value

    def chunk(params, opt_state, data):
        def scan_step(carry, _):
            return step(carry, data)

        (params, opt_state), values = jax.lax.scan(scan_step, (params, opt_state), None, length=options.chunk)
        return params, opt_state, values

    return jax.jit(jax.vmap(chunk, in_axes=(0, 0, None))), tx, data


def _finish(problem: SearchProblem, options: GradientSearchConfig, caps, params: jax.Array, data):
    """(weights, objective, objective + KL term) of one restart's final parameters."""
    w = to_weights(options.parametrisation, params, caps)
    value = split_objective(problem.objective)[0](w, data)
    if options.kl_weight:
        return w, value, value + options.kl_weight * kl_divergence(w, jnp.asarray(problem.prior, jnp.float32))
    return w, value, value


def gradient_search(problem: SearchProblem, options: GradientSearchConfig | None = None, *, seed: int = 0, progress: bool = False) -> SearchResult:
    """Minimise the problem's objective over the (capped) simplex from several starts at once
    (options: the `search.gradient` section; `seed` draws the restarts)."""
    options = options or GradientSearchConfig()
    start = time.perf_counter()
    chunk_fn, tx, data = make_chunk(problem, options)
    caps = None if problem.caps is None else jnp.asarray(problem.caps)
    w0 = jnp.asarray(_initial_weights(problem, options, seed))
    params = jnp.log(w0) if options.parametrisation == "softmax" else w0
    opt_state = jax.vmap(tx.init)(params)
    finish = jax.jit(jax.vmap(functools.partial(_finish, problem, options, caps), in_axes=(0, None)))

    trace: list[float] = []
    best = float("inf")
    n_chunks = max(1, -(-options.steps // options.chunk))
    stopped_early = False
    with tqdm(total=n_chunks * options.chunk, desc=f"gradient/{options.parametrisation}", disable=not progress) as bar:
        for _ in range(n_chunks):
            params, opt_state, values = chunk_fn(params, opt_state, data)
            chunk_best = np.minimum.accumulate(np.asarray(values).min(0))  # [chunk] best over restarts
            trace.extend(np.minimum(chunk_best, best).tolist())
            new_best = min(best, float(chunk_best[-1]))
            bar.update(options.chunk)
            bar.set_postfix(loss=f"{new_best:.6g}")
            improved = best - new_best
            best = new_best
            if np.isfinite(improved) and improved <= options.rel_tol * max(abs(best), 1e-12):
                stopped_early = True
                break

    final_w, final_objective, final_loss = (np.asarray(a) for a in finish(params, data))  # [R, ...], [R], [R]
    r = int(np.argmin(final_loss))
    w_best = np.asarray(final_w[r], np.float64)
    objective = float(final_objective[r])
    group_weights = w_best if problem.n_groups else None
    return SearchResult(
        method=f"gradient/{options.parametrisation}",
        domains=problem.domains,
        weights=w_best.mean(0) if problem.n_groups else w_best,
        objective=objective,
        wall_time_s=time.perf_counter() - start,
        n_evaluations=len(trace) * options.restarts,
        trace=np.asarray(trace),
        group_weights=group_weights,
        extras={
            "loss_with_kl": float(final_loss[r]),
            "restart_losses": final_loss.tolist(),
            "best_restart": r,
            "steps": len(trace),
            "stopped_early": stopped_early,
            "options": asdict(options),
            "seed": seed,
        },
    )
