"""Diluted experts (DeMix's component recipe) and the merge coefficients that undo the dilution.

An expert trained on `(1 - s) x its own domain + s x general` (share s of "general" data in the
proportions g, the base's own mixture) is a component, not a pure domain model. A merge of such
components with weights w stands for the data proportions

    p(w) = (1 - s) w + s g                        (effective_proportions)

so to proxy a target mixture a the weights must be w = (a - s g) / (1 - s) (corrected_weights):
DeMix's `2w - 1/K` is the case s = 0.5, g uniform. p maps the simplex onto the smaller simplex
{p : p_k >= s g_k}; a target outside it (a face, a vertex) has no exact pre-image and is merged with
the corrected weights clipped at 0 and renormalised (merge_coefficients), the nearest reachable
component merge. Searches and reports keep working in data-proportion space (a); only the merge
sees w. For weights that do not sum to 1 (a scaled merge) g enters in proportion to their sum, so
the map stays linear and w = 0 stays the base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Dilution:
    """How a stack's experts were trained: each on (1 - share) x its domain + share x `general`
    (proportions over the experts' domains, in the stack's order). Frozen and hashable: a static
    field of ExpertStack."""

    share: float
    general: tuple[float, ...]


def make_dilution(share: float, general: Sequence[float]) -> Dilution | None:
    """A checked Dilution, or None for share 0 (pure-domain experts: the merge weights are the mixture)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the general-data share of diluted experts must be in [0, 1), got {share}")
    g = np.asarray(general, np.float64)
    if g.ndim != 1 or g.size == 0 or not np.all(np.isfinite(g)) or np.any(g < 0) or abs(g.sum() - 1.0) > 1e-6:
        raise ValueError(f"the general mixture must be proportions (>= 0, summing to 1), got {list(general)}")
    return None if share == 0 else Dilution(float(share), tuple(float(x) for x in g))


def effective_proportions(weights_K, share: float, general_K) -> np.ndarray:
    """The data proportions (1 - s) w + s g (sum w) that a merge of diluted experts with weights w stands for."""
    w = np.asarray(weights_K, np.float64)
    return (1.0 - share) * w + share * np.asarray(general_K, np.float64) * w.sum(axis=-1, keepdims=True)


def corrected_weights(target_K: jax.Array, share: float, general_K) -> jax.Array:
    """The merge weights w = (a - s g sum(a)) / (1 - s) whose effective proportions are the target a
    (unclipped: negative where a_k < s g_k sum(a), i.e. where a is out of reach). Works on [..., K]."""
    a = jnp.asarray(target_K, jnp.float32)
    g = jnp.asarray(general_K, jnp.float32)
    return (a - share * g * a.sum(axis=-1, keepdims=True)) / (1.0 - share)


def merge_coefficients(target_K: jax.Array, dilution: Dilution | None) -> jax.Array:
    """The weights the merge uses for target mixture(s) [..., K]: the target itself without dilution,
    else `corrected_weights` clipped at 0 and rescaled to the target's sum (jit/grad friendly)."""
    if dilution is None:
        return target_K
    a = jnp.asarray(target_K, jnp.float32)
    clipped = jnp.maximum(corrected_weights(a, dilution.share, dilution.general), 0.0)
    total = clipped.sum(axis=-1, keepdims=True)
    return jnp.where(total > 0, clipped * (a.sum(axis=-1, keepdims=True) / jnp.where(total > 0, total, 1.0)), 0.0)


def unreachable_rows(targets_BxK, dilution: Dilution | None, tol: float = 1e-6) -> np.ndarray:
    """[B] bool: targets no merge of the diluted experts reaches exactly (some a_k < s g_k sum(a)),
    which the merge clips (see merge_coefficients); all False without dilution."""
    a = np.atleast_2d(np.asarray(targets_BxK, np.float64))
    if dilution is None:
        return np.zeros(len(a), bool)
    floor = dilution.share * np.asarray(dilution.general) * a.sum(axis=1, keepdims=True)
    return np.any(a < floor - tol, axis=1)


def describe(dilution: Dilution | None, names: Sequence[str]) -> dict | None:
    """A JSON-ready record of the correction ({share, general: {name: g}}), None without dilution."""
    if dilution is None:
        return None
    return {"share": dilution.share, "general": dict(zip(names, dilution.general, strict=True)), "coefficients": "(a - share * general) / (1 - share), clipped at 0 and renormalised"}
