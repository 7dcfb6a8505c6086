"""Mixture search over merge weights: gradient, surrogate, subsets, CMA-ES and hierarchical.

Every method takes a `SearchProblem` (a differentiable objective and/or a batched scorer with a
utility) and returns a `SearchResult`; `run_search` (search/registry.py) picks a method by name and
passes it its options, the config's `search.<method>` section (config/schema.py).
"""

from mergemix_jax.search.cmaes import cmaes_search
from mergemix_jax.search.gradient import gradient_search
from mergemix_jax.search.hierarchical import hierarchical_search
from mergemix_jax.search.problem import SearchProblem, caps_from_tokens, synthetic_quadratic
from mergemix_jax.search.ratios import weights_to_ratios
from mergemix_jax.search.registry import METHODS, run_search
from mergemix_jax.search.subsets import subset_search
from mergemix_jax.search.surrogate import surrogate_search
from mergemix_jax.search.types import SearchResult
from mergemix_jax.search.utility import weighted_utility

__all__ = [
    "METHODS",
    "SearchProblem",
    "SearchResult",
    "caps_from_tokens",
    "cmaes_search",
    "gradient_search",
    "hierarchical_search",
    "run_search",
    "subset_search",
    "surrogate_search",
    "synthetic_quadratic",
    "weighted_utility",
    "weights_to_ratios",
]
