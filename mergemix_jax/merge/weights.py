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
    if array.size == 0:
        raise ValueError(f"{source}: no weight vectors given (empty)")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"{source}: expected a [mixtures, {num_experts}] array, got shape {array.shape}")
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


def read_weights_csv(path, expert_names: Sequence[str]) -> np.ndarray:
    """[B, K] weights from a CSV with one row per mixture.

    With a header naming every expert, columns are matched by name (other columns are ignored);
    without a header the file must have exactly K numeric columns in expert order.
    """
    import csv

    with open(path, newline="") as f:
        lines = [line for line in csv.reader(f) if line and any(cell.strip() for cell in line)]
    if not lines:
        raise ValueError(f"{path}: no weight rows")

    def numeric(cells):
        try:
            [float(c) for c in cells]
            return True
        except ValueError:
            return False

    if numeric(lines[0]):
        header, body, first_line = None, lines, 1
        columns = list(range(len(expert_names)))
        widths = {len(r) for r in body}
        if widths != {len(expert_names)}:
            raise ValueError(f"{path}: rows have {sorted(widths)} columns but there are {len(expert_names)} experts {list(expert_names)}; add a header naming the experts")
    else:
        header, body, first_line = [c.strip() for c in lines[0]], lines[1:], 2
        missing = [n for n in expert_names if n not in header and f"w/{n}" not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks columns for experts {missing}; name one column per expert ({list(expert_names)})")
        columns = [header.index(n) if n in header else header.index(f"w/{n}") for n in expert_names]
    rows = []
    for i, line in enumerate(body):
        try:
            rows.append([float(line[c]) for c in columns])
        except (ValueError, IndexError):
            raise ValueError(f"{path} line {i + first_line}: expected numbers in the expert columns, got {line}") from None
    return validate_weights(np.array(rows) if rows else np.zeros((0, len(expert_names))), len(expert_names), source=str(path))
