"""The candidate pool for verification: mixtures proposed by the searches, the probe table and other
proxies, deduplicated, and a greedy pick of the best ones that differ from each other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Candidate:
    """One mixture to consider; `sources` says who proposed it (method names, "probe", "ensemble")."""

    name: str
    weights_K: np.ndarray
    sources: list[str] = field(default_factory=list)
    proxy_metrics: dict[str, float] = field(default_factory=dict)


def tv_distance(a_K: np.ndarray, b_K: np.ndarray) -> float:
    """Total-variation distance between two mixtures: half the L1 distance, in [0, 1]."""
    return 0.5 * float(np.abs(np.asarray(a_K, np.float64) - np.asarray(b_K, np.float64)).sum())


def pool_from_tables(tables: Sequence[tuple[str, np.ndarray, Mapping[str, np.ndarray]]], decimals: int = 4) -> list[Candidate]:
    """Merge (source, weights [B, K], metrics {name: [B]}) tables into unique candidates (first metrics win)."""
    by_key: dict[tuple, Candidate] = {}
    for source, weights, metrics in tables:
        for row, w in enumerate(np.asarray(weights, np.float64)):
            key = tuple(np.round(w, decimals))
            if key not in by_key:
                by_key[key] = Candidate("", w, [], {m: float(np.asarray(v)[row]) for m, v in metrics.items()})
            if source not in by_key[key].sources:
                by_key[key].sources.append(source)
    return list(by_key.values())


def select_diverse(weights_NxK: np.ndarray, scores_N: np.ndarray, m: int, min_distance: float, avoid_MxK: np.ndarray | None = None) -> list[int]:
    """Indices of up to `m` rows, best score first, each at least `min_distance` (TV) from every row
    already taken and from every row of `avoid` (e.g. the baselines, which are trained anyway)."""
    weights = np.asarray(weights_NxK, np.float64)
    taken: list[np.ndarray] = [] if avoid_MxK is None else list(np.asarray(avoid_MxK, np.float64))
    chosen: list[int] = []
    for i in np.argsort(-np.asarray(scores_N, np.float64), kind="stable"):
        if len(chosen) == m:
            break
        if not np.isfinite(scores_N[i]) or any(tv_distance(weights[i], t) < min_distance for t in taken):
            continue
        chosen.append(int(i))
        taken.append(weights[i])
    return chosen
