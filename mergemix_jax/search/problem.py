"""A mixture-search problem: domain names, the scorers, the prior and the caps.

`SearchProblem` is what every search method takes. `synthetic_quadratic` builds one with a known
optimum (inside the simplex, on a face or at a vertex), so each method can be checked now; the
merge engine supplies real problems (search.merged, built from a config by runkit.engine and
completed by pipeline/assembly.py, the one assembly `mergemix run` and `mergemix search` share).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mergemix_jax.search.simplex import check_caps
from mergemix_jax.search.types import Objective, Scorer, Utility
from mergemix_jax.search.utility import flag_non_finite


@dataclass(frozen=True)
class SearchProblem:
    """Everything a search method needs; objective and/or score must be given.

    objective: weights [K] (or [G, K] when n_groups > 0) -> scalar, lower is better, differentiable.
    score/utility: weights [B, K] -> {metric: [B]} and metrics -> [B], higher is better.
    prior: [K] reference mixture (e.g. natural token proportions) for seeds and the KL pull.
    caps: [K] upper bounds from token availability (`caps_from_tokens`), or None.
    """

    domains: tuple[str, ...]
    objective: Objective | None = None
    score: Scorer | None = None
    utility: Utility | None = None
    prior: np.ndarray | None = None
    caps: np.ndarray | None = None
    n_groups: int = 0  # 0: one weight vector [K]; G > 0: per-group weights [G, K] for `objective`
    tokens: np.ndarray | None = None  # [K] tokens available per domain, for the ratio report
    description: dict[str, Any] = field(default_factory=dict)  # JSON-able, hashed into provenance
    observed: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # mixtures [N, K] scored before the search and their metrics (a surrogate fits on them)

    def __post_init__(self) -> None:
        k = len(self.domains)
        if k < 2:
            raise ValueError(f"a mixture search needs at least 2 domains, got {list(self.domains)}")
        if len(set(self.domains)) != k:
            raise ValueError(f"domain names must be unique, got {list(self.domains)}")
        if self.objective is None and self.score is None:
            raise ValueError("the problem has neither an objective nor a score function; give at least one")
        if self.score is not None and self.utility is None:
            raise ValueError("a score function needs a utility combining its metrics (see search.utility)")
        prior = self.prior if self.prior is not None else np.full(k, 1.0 / k)
        prior = np.asarray(prior, np.float64)
        if prior.shape != (k,) or np.any(prior <= 0) or not np.all(np.isfinite(prior)):
            raise ValueError(f"prior must be {k} finite weights > 0 (one per domain), got {prior}")
        object.__setattr__(self, "prior", prior / prior.sum())
        object.__setattr__(self, "caps", check_caps(self.caps, k))
        if self.observed is not None:
            x, metrics = self.observed
            x = np.asarray(x, np.float64)
            bad = [n for n, v in metrics.items() if np.shape(v) != (len(x),)]
            if x.ndim != 2 or x.shape[1] != k or bad:
                raise ValueError(f"observed must be (mixtures [N, {k}], {{metric: [N]}}); got shape {x.shape}, mismatched metrics {bad}")

    @property
    def k(self) -> int:
        return len(self.domains)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of one point the objective takes: (K,) or (G, K)."""
        return (self.n_groups, self.k) if self.n_groups else (self.k,)


def black_box(problem: SearchProblem) -> tuple[Scorer, Utility]:
    """The problem's (score, utility); from the objective when no scorer is given.

    The derived scorer evaluates the objective with one shared weight vector for all groups and
    returns {"objective": [B]} with utility = -objective. Either way a NaN/inf utility becomes -inf
    (flagged in the log), so no method ranks a diverged mixture above a finite one.
    """
    if problem.score is not None:
        utility = problem.utility
        return problem.score, lambda metrics: flag_non_finite(utility(metrics))
    objective = problem.objective
    groups = problem.n_groups

    def point(w_K: jax.Array) -> jax.Array:
        return objective(jnp.broadcast_to(w_K, (groups, w_K.shape[-1])) if groups else w_K)

    batched = jax.jit(jax.vmap(point))

    def score(weights_BxK: np.ndarray) -> dict[str, np.ndarray]:
        return {"objective": np.asarray(batched(jnp.asarray(weights_BxK, jnp.float32)), np.float64)}

    return score, lambda metrics: flag_non_finite(-np.asarray(metrics["objective"], np.float64))


def caps_from_tokens(tokens: Sequence[float], token_budget: float, max_epochs: float) -> np.ndarray:
    """cap_k = max_epochs * tokens_k / token_budget: a domain cannot supply more than max_epochs passes."""
    tokens = np.asarray(tokens, np.float64)
    if token_budget <= 0 or max_epochs <= 0:
        raise ValueError(f"token_budget and max_epochs must be > 0, got {token_budget} and {max_epochs}")
    if np.any(tokens <= 0):
        raise ValueError(f"every domain needs > 0 tokens, got {tokens.tolist()}; drop empty domains")
    return max_epochs * tokens / token_budget


def affine_subproblem(
    problem: SearchProblem,
    domains: Sequence[str],
    lift_JxK: np.ndarray,
    offset_K: np.ndarray,
    prior: np.ndarray,
    caps: np.ndarray | None,
) -> SearchProblem:
    """The problem restricted to w_K = offset_K + v_J @ lift_JxK for v on a smaller simplex.

    Used by hierarchical search: cluster weights (lift = cluster membership) and one cluster's
    split with everything else fixed (lift = cluster weight on the members, offset = the rest).
    """
    lift = jnp.asarray(lift_JxK, jnp.float32)
    offset = jnp.asarray(offset_K, jnp.float32)
    lift_np, offset_np = np.asarray(lift_JxK, np.float64), np.asarray(offset_K, np.float64)
    objective = score = None
    if problem.objective is not None:
        inner = problem.objective

        def objective(v: jax.Array) -> jax.Array:
            return inner(offset + v @ lift)

    if problem.score is not None:
        inner_score = problem.score

        def score(v_BxJ: np.ndarray) -> dict[str, np.ndarray]:
            return inner_score(offset_np + np.asarray(v_BxJ, np.float64) @ lift_np)

    return replace(
        problem,
        domains=tuple(domains),
        objective=objective,
        score=score,
        prior=np.asarray(prior, np.float64),
        caps=caps,
        tokens=None,
        observed=None,
        description={**problem.description, "subproblem": list(domains)},
    )


def synthetic_quadratic(
    k: int, optimum: str | Sequence[str] = "interior", n_groups: int = 0, seed: int = 0, condition: float = 10.0
) -> tuple[SearchProblem, np.ndarray]:
    """A problem whose objective is 0.5 (w - c)^T A (w - c) with a KNOWN constrained optimum w*.

    w* is drawn first (interior: all > 0; face: uniform over half the domains, the rest 0;
    vertex: one-hot) and c is set from the KKT conditions, c = w* - A^-1 (mu - nu 1) with mu > 0
    exactly on the zero coordinates, so w* is the unique minimiser over the simplex. A is a random
    SPD matrix of the given condition number. The scorer returns the loss and an accuracy-like
    1 - loss; with n_groups = G every group has its own (A, c) and w* is [G, K], and `optimum` may
    list one kind per group. Returns (problem, w*).
    """
    groups = max(n_groups, 1)
    kinds = [optimum] * groups if isinstance(optimum, str) else list(optimum)
    if len(kinds) != groups or any(kind not in ("interior", "face", "vertex") for kind in kinds):
        raise ValueError(f"optimum must be interior, face or vertex (one per group), got {optimum!r}")
    rng = np.random.default_rng(seed)
    a_list, c_list, w_list = [], [], []
    for optimum in kinds:
        q, _ = np.linalg.qr(rng.normal(size=(k, k)))
        a = q @ np.diag(np.geomspace(1.0, condition, k)) @ q.T
        if optimum == "interior":
            w_star = rng.dirichlet(np.full(k, 5.0))
        elif optimum == "face":
            support = rng.permutation(k)[: max(k // 2, 1)]
            w_star = np.zeros(k)
            w_star[support] = 1.0 / len(support)
        else:
            w_star = np.eye(k)[rng.integers(k)]
        mu = np.where(w_star > 0, 0.0, rng.uniform(0.5, 1.5, k))
        c = w_star - np.linalg.solve(a, mu - rng.normal())
        a_list.append(a)
        c_list.append(c)
        w_list.append(w_star)
    a_GxKxK = jnp.asarray(np.stack(a_list), jnp.float32)
    c_GxK = jnp.asarray(np.stack(c_list), jnp.float32)

    def objective(w: jax.Array) -> jax.Array:
        d = jnp.reshape(w, (groups, k)) - c_GxK
        return 0.5 * jnp.einsum("gi,gij,gj->", d, a_GxKxK, d)

    batched = jax.jit(jax.vmap(lambda w_K: objective(jnp.broadcast_to(w_K, (groups, k)))))

    def score(weights_BxK: np.ndarray) -> dict[str, np.ndarray]:
        loss = np.asarray(batched(jnp.asarray(weights_BxK, jnp.float32)), np.float64)
        return {"loss": loss, "accuracy": 1.0 - loss}

    def utility(metrics: dict[str, np.ndarray]) -> np.ndarray:
        return -0.5 * np.asarray(metrics["loss"]) + 0.5 * np.asarray(metrics["accuracy"])

    problem = SearchProblem(
        domains=tuple(f"d{i}" for i in range(k)),
        objective=objective,
        score=score,
        utility=utility,
        n_groups=n_groups,
        description={"synthetic": "quadratic", "k": k, "optimum": optimum, "n_groups": n_groups, "seed": seed},
    )
    w_star = np.stack(w_list) if n_groups else w_list[0]
    return problem, w_star


def parse_synthetic(spec: str) -> dict[str, Any]:
    """Parse `quadratic:K[:interior|face|vertex]` into synthetic_quadratic keyword arguments."""
    parts = spec.split(":")
    if parts[0] != "quadratic" or len(parts) not in (2, 3) or not parts[1].isdigit():
        raise ValueError(f"--synthetic {spec!r}: expected quadratic:K or quadratic:K:interior|face|vertex, e.g. quadratic:6")
    kwargs: dict[str, Any] = {"k": int(parts[1])}
    if len(parts) == 3:
        kwargs["optimum"] = parts[2]
    return kwargs

