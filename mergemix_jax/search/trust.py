"""A trust region for mixture search: keep every method where the merged proxy was shown faithful.

The merged proxy is most optimistic on the simplex's faces: a domain at weight 0 is forgotten far
faster by real training than by the merge, so unconstrained searches drift to faces (measured on the
demo: every method picked prose = 0, which trained 11th of 17). The region used here is a floor
proportional to the prior, w >= floor * prior, i.e. w = floor * prior + (1 - floor) * v with v
anywhere on the simplex: the same reparametrisation for every method (gradient, surrogate, CMA-ES,
subsets, hierarchical), built on `affine_subproblem`. floor = 0 is the whole simplex.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from mergemix_jax.search.problem import SearchProblem, affine_subproblem
from mergemix_jax.search.types import SearchResult


def floor_region(problem: SearchProblem, floor: float) -> tuple[SearchProblem, Callable[[np.ndarray], np.ndarray]]:
    """(the problem over v, v -> w): searches on {w : w >= floor * prior} (see module doc)."""
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"trust-region floor must be in [0, 1), got {floor}")
    if floor == 0.0:
        return problem, lambda v: np.asarray(v, np.float64)
    prior = np.asarray(problem.prior, np.float64)
    return lower_bound_region(problem, floor * prior, {"trust_region": {"floor": floor, "prior": prior.tolist()}}, prior_v=prior)


def lower_bound_region(
    problem: SearchProblem, lower_K: np.ndarray, note: dict, prior_v: np.ndarray | None = None
) -> tuple[SearchProblem, Callable[[np.ndarray], np.ndarray]]:
    """(the problem over v, v -> w): searches on {w : w >= lower}, w = lower + (1 - sum lower) v with
    v anywhere on the simplex; `note` joins the problem's description. The prior in v coordinates is
    `prior_v`, else the problem's prior mapped there (clipped into the region). Mixtures already
    scored stay surrogate data in v coordinates (those outside the region have negative entries)."""
    offset_K = np.asarray(lower_K, np.float64)
    scale = 1.0 - offset_K.sum()
    if not scale > 0:
        raise ValueError(f"the lower bounds {offset_K.tolist()} sum to {offset_K.sum():.3f} >= 1: no mixture satisfies them")
    lift_KxK = scale * np.eye(problem.k)
    caps = None if problem.caps is None else np.clip((problem.caps - offset_K) / scale, 1e-6, None)
    prior = prior_v
    if prior is None and problem.prior is not None:
        prior = np.clip((np.asarray(problem.prior, np.float64) - offset_K) / scale, 0.0, None)
        prior = prior / prior.sum() if prior.sum() > 0 else None
    sub = affine_subproblem(problem, problem.domains, lift_KxK, offset_K, prior=prior, caps=caps)
    observed = None
    if problem.observed is not None:
        x_NxK, metrics = problem.observed
        observed = ((np.asarray(x_NxK, np.float64) - offset_K) / scale, metrics)
    sub = replace(sub, tokens=problem.tokens, observed=observed, description={**problem.description, **note})

    def to_weights(v: np.ndarray) -> np.ndarray:
        return offset_K + np.asarray(v, np.float64) @ lift_KxK

    return sub, to_weights


def search_region(problem: SearchProblem, floor: float, reachable_K: np.ndarray | None = None) -> tuple[SearchProblem, Callable[[np.ndarray], np.ndarray]]:
    """The region the searches (all but subsets) run in: the trust floor's, and with diluted experts
    (merge/dilution.py) also only mixtures their merge reaches exactly, w >= share * general
    (`reachable_K`), where the clipped merge would be flat and falsely optimistic."""
    if reachable_K is None:
        return floor_region(problem, floor)
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"trust-region floor must be in [0, 1), got {floor}")
    lower = np.asarray(reachable_K, np.float64)
    if floor > 0:
        lower = np.maximum(lower, floor * np.asarray(problem.prior, np.float64))
    return lower_bound_region(problem, lower, {"reachable_region": {"lower": lower.tolist(), "trust_floor": floor}})


def in_region(weights_NxK: np.ndarray, prior_K: np.ndarray, floor: float) -> np.ndarray:
    """[N] bool: which mixtures satisfy w >= floor * prior (up to rounding)."""
    return np.all(np.asarray(weights_NxK, np.float64) >= floor * np.asarray(prior_K, np.float64) - 1e-6, axis=-1)


def lift_result(result: SearchResult, to_weights: Callable[[np.ndarray], np.ndarray]) -> SearchResult:
    """The result of a search inside the region, with its weights mapped back to mixtures."""
    groups = None if result.group_weights is None else to_weights(np.asarray(result.group_weights))
    return replace(result, weights=to_weights(np.asarray(result.weights)), group_weights=groups)
