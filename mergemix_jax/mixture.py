"""The Mixture type: domain names and one weight per domain, in one order.

Mixtures cross module boundaries in two shapes: `{domain: weight}` (configs' `train.mixture`, the
mixture file, grain/seqio exports) and a weight vector [K] beside the domain names (search results,
candidates, results tables). `Mixture` holds both views and converts between them in one place:
`Mixture.from_dict(...).vector(domains)` puts a file's weights in a table's domain order,
`Mixture(domains, weights_K).as_dict()` gives the mapping (optionally without near-zero weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, init=False)
class Mixture:
    """`domains[k]` gets `weights[k]` (python floats, as given: not renormalised)."""

    domains: tuple[str, ...]
    weights: tuple[float, ...]

    def __init__(self, domains: Sequence[str], weights: Sequence[float] | np.ndarray):
        domains = tuple(domains)
        values = tuple(float(w) for w in np.asarray(weights).reshape(-1))
        if len(values) != len(domains):
            raise ValueError(f"a mixture needs one weight per domain: {len(domains)} domains {list(domains)}, {len(values)} weights")
        if len(set(domains)) != len(domains):
            raise ValueError(f"mixture domains must be unique, got {list(domains)}")
        object.__setattr__(self, "domains", domains)
        object.__setattr__(self, "weights", values)

    @classmethod
    def from_dict(cls, weights: Mapping[str, float]) -> Mixture:
        """From {domain: weight}, in the mapping's order."""
        return cls(tuple(weights), [weights[d] for d in weights])

    def as_dict(self, min_weight: float | None = None) -> dict[str, float]:
        """{domain: weight}; with `min_weight`, only the domains weighted above it."""
        return {d: w for d, w in zip(self.domains, self.weights, strict=True) if min_weight is None or w > min_weight}

    def vector(self, domains: Sequence[str] | None = None) -> np.ndarray:
        """float64 [K] weights in the order of `domains` (default: this mixture's own); a domain the
        mixture does not name raises KeyError."""
        if domains is None:
            return np.asarray(self.weights, np.float64)
        by_name = self.as_dict()
        return np.asarray([by_name[d] for d in domains], np.float64)
