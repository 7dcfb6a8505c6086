"""Import a swarm of trained-proxy results (RegMix / Olmix style) as extra surrogate training rows.

A swarm CSV has one row per trained proxy: its mixture, as `w/<domain>` columns (the layout of
this project's results CSVs) or bare `<domain>` columns, and its measured metrics (any other
numeric column, e.g. `loss/mean`, `acc/arc`). Mixture rows are renormalised to sum to 1. The
metrics must be on the scale of the search's scorer (same names, same evaluation) to be useful.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SKIP_COLUMNS = ("row", "weights_hash", "run", "name", "seed", "step")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def read_swarm_csv(path: str | Path, domains: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(mixtures [N, K] in `domains` order, {metric: [N]}) from a swarm CSV; errors name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"swarm CSV {path} does not exist (search.surrogate.swarm_csv)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    header = list(rows[0]) if rows else []
    weight_column = {}
    for d in domains:
        column = f"w/{d}" if f"w/{d}" in header else d if d in header else None
        if column is None:
            raise ValueError(f"swarm CSV {path}: no column 'w/{d}' or '{d}' for domain {d!r}; columns are {header}")
        weight_column[d] = column
    metric_columns = [c for c in header if c not in weight_column.values() and c not in SKIP_COLUMNS and not c.startswith("w/")]
    weights, metrics = [], {c: [] for c in metric_columns}
    for i, row in enumerate(rows, start=2):
        w = [_number(row[weight_column[d]]) for d in domains]
        if any(v is None or not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
            raise ValueError(f"swarm CSV {path} line {i}: mixture weights must be finite numbers >= 0 with a positive sum, got {w}")
        weights.append(np.asarray(w) / sum(w))
        for c in metric_columns:
            value = _number(row[c])
            metrics[c].append(np.nan if value is None else value)
    numeric = {c: np.asarray(v, np.float64) for c, v in metrics.items() if not np.all(np.isnan(v))}
    if not weights or not numeric:
        raise ValueError(f"swarm CSV {path} has no rows with a numeric metric column besides the mixture weights")
    return np.stack(weights), numeric
