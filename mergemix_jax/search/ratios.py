"""Merge weights -> data sampling ratios: the identity (as the papers use), optionally corrected
for token availability, with a report of what the correction changed."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from mergemix_jax.search.problem import caps_from_tokens
from mergemix_jax.search.simplex import kl_project_capped


@dataclass(frozen=True)
class RatioReport:
    """Sampling ratios for a token budget and how far they are from the merge weights."""

    ratios: np.ndarray  # [K] sums to 1
    epochs: np.ndarray | None  # [K] passes over each domain at the budget (None without token counts)
    capped: tuple[str, ...]  # domains the availability correction clamped at max_epochs
    max_abs_change: float  # max |ratio - weight|

    def to_dict(self, domains: tuple[str, ...]) -> dict:
        """JSON-able form keyed by domain name."""
        return {
            "ratios": dict(zip(domains, self.ratios.tolist(), strict=True)),
            "epochs": None if self.epochs is None else dict(zip(domains, self.epochs.tolist(), strict=True)),
            "capped": list(self.capped),
            "max_abs_change": self.max_abs_change,
        }


def weights_to_ratios(
    weights: np.ndarray,
    domains: tuple[str, ...],
    tokens: np.ndarray | None = None,
    token_budget: float | None = None,
    max_epochs: float | None = None,
    correct: bool = False,
) -> RatioReport:
    """ratio = weight; with `correct`, domains beyond max_epochs x their tokens are clamped at that
    cap and the others scaled up in proportion (the KL projection on the capped simplex)."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    if tokens is None or token_budget is None:
        if correct:
            raise ValueError("the token-availability correction needs tokens per domain and a token budget")
        return RatioReport(w, None, (), 0.0)
    tokens = np.asarray(tokens, np.float64)
    ratios = w
    capped: tuple[str, ...] = ()
    if correct:
        caps = caps_from_tokens(tokens, token_budget, max_epochs or 1.0)
        if caps.sum() < 1:
            raise ValueError(f"{max_epochs} epochs of every domain give only {caps.sum():.3f} of the token budget; lower the budget")
        ratios = np.asarray(kl_project_capped(jnp.asarray(np.maximum(w, 1e-12), jnp.float32), jnp.asarray(np.minimum(caps, 1.0), jnp.float32)), np.float64)
        ratios = ratios / ratios.sum()
        capped = tuple(d for d, r, c in zip(domains, ratios, caps, strict=True) if r >= c * (1 - 1e-5) and w[domains.index(d)] > c)
    epochs = ratios * token_budget / tokens
    return RatioReport(ratios, epochs, capped, float(np.max(np.abs(ratios - w))))
