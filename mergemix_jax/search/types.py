"""The contract between mixture-search methods and whatever scores a mixture.

Two kinds of scorer, so every method plugs into the merge engine without knowing about it:
- `Objective`: weights [K] (or [G, K] per-layer/per-module groups) -> scalar jax.Array, LOWER is
  better, differentiable and jit/vmap-able (e.g. the weighted held-out loss of the merged model);
- `Scorer`: weights [B, K] numpy -> {metric: [B]} (any metric, differentiable or not), combined by
  a `Utility`: metrics -> [B], HIGHER is better.
Every method returns a `SearchResult`, whose `objective` is always lower-is-better (the negated
utility for black-box methods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from mergemix_jax.mixture import Mixture

Objective = Callable[[jax.Array], jax.Array]
Scorer = Callable[[np.ndarray], dict[str, np.ndarray]]
Utility = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class SearchResult:
    """What a search method found, with enough context to compare methods side by side."""

    method: str
    domains: tuple[str, ...]
    weights: np.ndarray  # [K] the chosen mixture (mean over groups for per-group search)
    objective: float  # value at `weights`, lower is better
    wall_time_s: float
    n_evaluations: int  # objective/gradient steps x restarts, or mixtures scored
    trace: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [T] best objective so far
    metrics: dict[str, float] = field(default_factory=dict)  # scorer metrics at `weights`, if scored
    group_weights: np.ndarray | None = None  # [G, K] per-group weights, when searched per group
    extras: dict[str, Any] = field(default_factory=dict)  # method-specific, JSON-serialisable

    @property
    def mixture(self) -> Mixture:
        """The chosen mixture, in the problem's domain order."""
        return Mixture(self.domains, self.weights)

    def weights_by_domain(self) -> dict[str, float]:
        """{domain: weight} in the problem's domain order."""
        return self.mixture.as_dict()
