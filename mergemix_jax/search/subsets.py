"""Subset search (Merge to Mix): every non-empty subset of the candidates, merged with uniform
weights, scored in batched calls; the best subset is the answer.

2^N - 1 subsets: N <= 16 keeps that under 65,536 mixtures (the papers use up to ~12).
"""

from __future__ import annotations

import time

import numpy as np

from mergemix_jax.config.schema import SUBSET_EXPORTS, SubsetSearchConfig
from mergemix_jax.search.batching import score_batches
from mergemix_jax.search.problem import SearchProblem, black_box
from mergemix_jax.search.simplex import project_rows_np
from mergemix_jax.search.types import SearchResult

MAX_CANDIDATES = 16


def subset_masks(n: int) -> np.ndarray:
    """[2^n - 1, n] bool: row i is the binary expansion of i + 1 (every non-empty subset once)."""
    if not 1 <= n <= MAX_CANDIDATES:
        raise ValueError(f"subset search enumerates 2^N - 1 subsets; N must be in [1, {MAX_CANDIDATES}], got {n}")
    codes = np.arange(1, 2**n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(bool)


def uniform_weights(masks_SxN: np.ndarray) -> np.ndarray:
    """[S, N] uniform mixture over each subset."""
    return masks_SxN / masks_SxN.sum(1, keepdims=True)


def export_weights(problem: SearchProblem, mask_N: np.ndarray, uniform_N: np.ndarray, export: str) -> tuple[np.ndarray, str]:
    """The data mixture of the chosen subset and how it was made.

    Merge to Mix trains on the union of the chosen datasets, so each one enters by its size:
    weights proportional to problem.tokens on the subset (projected onto the caps when the pooled
    data would repeat a domain too often). Without token counts the uniform merge weights are kept.
    """
    if export not in SUBSET_EXPORTS:
        raise ValueError(f"subsets export must be one of {SUBSET_EXPORTS}, got {export!r}")
    if export == "uniform" or problem.tokens is None:
        return uniform_N, "uniform" if export == "uniform" else "uniform (no token counts for a union)"
    union = np.where(mask_N, np.asarray(problem.tokens, np.float64), 0.0)
    union = union / union.sum()
    if problem.caps is not None and np.any(union > problem.caps + 1e-9):
        return project_rows_np(union[None], problem.caps)[0], "union by tokens, projected onto the caps"
    return union, "union by tokens"


def subset_search(problem: SearchProblem, options: SubsetSearchConfig | None = None, *, seed: int = 0, progress: bool = False) -> SearchResult:
    """Score every non-empty subset with uniform weights and return the best one (options: the
    `search.subsets` section; `seed` is unused: the enumeration is deterministic)."""
    options = options or SubsetSearchConfig()
    start = time.perf_counter()
    score, utility = black_box(problem)
    masks = subset_masks(problem.k)
    weights = uniform_weights(masks)
    skipped = 0
    if options.respect_caps and problem.caps is not None:
        feasible = np.all(weights <= problem.caps[None] + 1e-9, axis=1)
        skipped = int((~feasible).sum())
        masks, weights = masks[feasible], weights[feasible]
        if not len(masks):
            raise ValueError("no subset with uniform weights fits within the caps; rerun with respect_caps=False")
    metrics = score_batches(score, weights, options.batch_size, progress, "subsets")
    u = np.asarray(utility(metrics), np.float64)
    order = np.argsort(-u)
    best = int(order[0])
    ranking = [
        {"subset": [problem.domains[i] for i in np.flatnonzero(masks[j])], "utility": float(u[j])} for j in order[:10]
    ]
    exported, how = export_weights(problem, masks[best], weights[best], options.export)
    return SearchResult(
        method="subsets",
        domains=problem.domains,
        weights=exported,
        objective=-float(u[best]),
        wall_time_s=time.perf_counter() - start,
        n_evaluations=len(weights),
        trace=-np.maximum.accumulate(u),
        metrics={name: float(values[best]) for name, values in metrics.items()},
        extras={
            "subset": [problem.domains[i] for i in np.flatnonzero(masks[best])],
            "export": how,
            "scored_weights": weights[best].tolist(),  # the merge that was scored (uniform over the subset)
            "n_subsets": len(weights),
            "skipped_over_caps": skipped,
            "top10": ranking,
        },
    )
