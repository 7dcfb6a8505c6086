"""Population search: CMA-ES (evosax) over the simplex for scores with no gradient (accuracy).

CMA-ES searches x in R^K; a mixture is w = project(x) onto the capped simplex ("project", the
default: reaches faces and vertices exactly, with a penalty ||x - w||^2 keeping the search
distribution near the simplex) or w = capped-softmax(x) ("softmax"). Each generation is one
batched scorer call on the population.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from mergemix_jax.config.schema import MAPPINGS, CMAESSearchConfig
from mergemix_jax.search.batching import score_batches
from mergemix_jax.search.problem import SearchProblem, black_box
from mergemix_jax.search.simplex import project_simplex, softmax_weights
from mergemix_jax.search.types import SearchResult

if TYPE_CHECKING:
    from evosax.algorithms import CMA_ES


@functools.lru_cache(maxsize=8)
def _strategy(population_size: int, k: int) -> CMA_ES:
    """One CMA_ES per (population, K): its jitted ask/tell are keyed on the instance, so reuse it."""
    from evosax.algorithms import CMA_ES  # importing evosax starts the XLA backend: too early for jax.distributed

    return CMA_ES(population_size=population_size, solution=jnp.zeros(k, jnp.float32))


@functools.partial(jax.jit, static_argnums=0)
def population_to_weights(mapping: str, x_PxK: jax.Array, caps: jax.Array | None) -> jax.Array:
    """Mixtures [P, K] from CMA-ES search points [P, K]."""
    if mapping == "project":
        return project_simplex(x_PxK, caps)
    if mapping == "softmax":
        return softmax_weights(x_PxK, caps)
    raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")


def cmaes_search(problem: SearchProblem, options: CMAESSearchConfig | None = None, *, seed: int = 0, progress: bool = False) -> SearchResult:
    """Minimise -utility over the simplex with CMA-ES, one batched score call per generation
    (options: the `search.cmaes` section)."""
    options = options or CMAESSearchConfig()
    if options.mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {options.mapping!r}")
    start = time.perf_counter()
    score, utility = black_box(problem)
    caps = None if problem.caps is None else jnp.asarray(problem.caps)
    mean0 = jnp.asarray(problem.prior if options.mapping == "project" else np.log(problem.prior), jnp.float32)
    strategy = _strategy(options.population_size, problem.k)
    std = options.std_init or (0.2 if options.mapping == "project" else 1.0)
    params = strategy.default_params.replace(std_init=jnp.asarray(std, jnp.float32))
    key = jax.random.key(seed)
    key, init_key = jax.random.split(key)
    state = strategy.init(init_key, mean0, params)

    best_u, best_w, best_metrics = -np.inf, np.asarray(problem.prior), {}
    trace, since_best, generations = [], 0, 0
    with tqdm(total=options.generations, desc=f"cmaes/{options.mapping}", disable=not progress) as bar:
        for _ in range(options.generations):
            key, ask_key, tell_key = jax.random.split(key, 3)
            x, state = strategy.ask(ask_key, state, params)
            w = np.asarray(population_to_weights(options.mapping, x, caps), np.float64)
            metrics = score_batches(score, w, options.batch_size)
            u = np.asarray(utility(metrics), np.float64)
            fitness = -u
            if options.mapping == "project":
                fitness = fitness + options.penalty * np.sum((np.asarray(x) - w) ** 2, axis=1)
            state, _ = strategy.tell(tell_key, x, jnp.asarray(fitness, jnp.float32), state, params)
            generations += 1
            i = int(np.argmax(u))
            if u[i] > best_u:
                best_u, best_w, since_best = float(u[i]), w[i], 0
                best_metrics = {name: float(values[i]) for name, values in metrics.items()}
            else:
                since_best += 1
            trace.append(-best_u)
            bar.update(1)
            bar.set_postfix(objective=f"{-best_u:.6g}")
            if since_best >= options.patience:
                break

    return SearchResult(
        method=f"cmaes/{options.mapping}",
        domains=problem.domains,
        weights=best_w,
        objective=-best_u,
        wall_time_s=time.perf_counter() - start,
        n_evaluations=generations * options.population_size,
        trace=np.asarray(trace),
        metrics=best_metrics,
        extras={"generations": generations, "final_std": float(state.std), "options": asdict(options), "seed": seed},
    )
