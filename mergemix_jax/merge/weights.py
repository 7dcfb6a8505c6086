"""Mixture weight vectors: validation with row-level errors, sampling, and stable row keys."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def validate_weights(weights, num_experts: int, allow_zero: bool = False, source: str = "weights") -> np.ndarray:
    """Check a [B, K] (or one [K]) array of merge weights; return it as float32 [B, K].

    Raises ValueError naming the row for NaN/inf, negative entries, an all-zero row (unless
    `allow_zero`), a wrong number of columns, or an empty array.
    """
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: not a numeric array of weights ({err})") from None
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"{source}: expected a [mixtures, {num_experts}] array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{source}: no weight vectors given (empty)")
    if array.shape[1] != num_experts:
        raise ValueError(
            f"{source}: each weight vector needs {num_experts} entries (one per expert), got {array.shape[1]}"
        )
    for row, vector in enumerate(array):
        if not np.all(np.isfinite(vector)):
            raise ValueError(f"{source}: row {row} has a NaN or infinite weight: {vector.tolist()}")
        if np.any(vector < 0):
            raise ValueError(f"{source}: row {row} has a negative weight: {vector.tolist()}; weights must be >= 0")
        if not allow_zero and not np.any(vector > 0):
            raise ValueError(f"{source}: row {row} is all zeros; at least one expert needs a positive weight")
    return array.astype(np.float32)


def sample_dirichlet(num_mixtures: int, num_experts: int, alpha: float | Sequence[float] = 1.0, seed: int = 0) -> np.ndarray:
    """[num_mixtures, num_experts] float32 mixtures drawn from Dirichlet(alpha) (uniform on the simplex at 1)."""
    if num_mixtures <= 0 or num_experts <= 0:
        raise ValueError(f"need a positive number of mixtures and experts, got {num_mixtures} and {num_experts}")
    alpha_k = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (num_experts,))
    if np.any(alpha_k <= 0):
        raise ValueError(f"Dirichlet concentration must be > 0, got {alpha}")
    return np.random.default_rng(seed).dirichlet(alpha_k, size=num_mixtures).astype(np.float32)


def weights_hash(vector) -> str:
    """A short stable key of one weight vector (float32 bytes), used to match rows on resume."""
    return hashlib.sha1(np.ascontiguousarray(vector, dtype=np.float32).tobytes()).hexdigest()[:16]
