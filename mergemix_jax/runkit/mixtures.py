"""Fixed mixture tables: vertices, the centre, Dirichlet draws and simplex grids for heatmaps, and the
natural proportions (each domain's share of the training tokens)."""

from __future__ import annotations

import itertools

import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.search.simplex import simplex_grid


def spread_mixtures(k: int, n_dirichlet: int, alpha: float = 1.0, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """[K + 1 + n, K]: the K vertices, the centre, then n Dirichlet(alpha) draws; with a kind per row
    ("vertex" / "centre" / "dirichlet") so interior subsets can be reported apart."""
    rng = np.random.default_rng(seed)
    rows = [np.eye(k), np.full((1, k), 1.0 / k), rng.dirichlet(np.full(k, alpha), size=n_dirichlet)]
    kinds = ["vertex"] * k + ["centre"] + ["dirichlet"] * n_dirichlet
    return np.concatenate(rows), kinds


def natural_prior(config: Config) -> np.ndarray:
    """Natural proportions: each domain's share of the training tokens (cached per data config)."""
    from mergemix_jax.data import token_counts

    counts = token_counts(config.data)
    tokens = np.asarray([counts[d.name]["train"] for d in config.data.domains], np.float64)
    return tokens / tokens.sum()


def heatmap_faces(k: int, max_faces: int = 4) -> list[tuple[int, int, int]]:
    """Triples of domains whose 2-simplex faces are drawn (all of them for K = 3)."""
    return list(itertools.islice(itertools.combinations(range(k), 3), max_faces))


def face_grid(k: int, face: tuple[int, int, int], resolution: int) -> np.ndarray:
    """[P, K] grid points of the face spanned by the three domains in `face` (others at 0)."""
    local = simplex_grid(3, resolution)
    out = np.zeros((len(local), k))
    out[:, list(face)] = local
    return out


def unique_rows(weights: np.ndarray, decimals: int = 6) -> np.ndarray:
    """The rows of [B, K] without repeats, in first-seen order."""
    _, first = np.unique(np.round(weights, decimals), axis=0, return_index=True)
    return weights[np.sort(first)]


def row_lookup(table: np.ndarray, weights: np.ndarray, decimals: int = 6) -> np.ndarray:
    """Index in `table` [B, K] of every row of `weights` [P, K] (KeyError naming a missing row)."""
    index = {tuple(np.round(r, decimals)): i for i, r in enumerate(table)}
    try:
        return np.asarray([index[tuple(np.round(r, decimals))] for r in weights], np.int64)
    except KeyError as err:
        raise KeyError(f"mixture {err.args[0]} is not in the scored table") from None


def probe_weights(config: Config, k: int) -> tuple[np.ndarray, dict]:
    """Vertices, centre, Dirichlet draws and the heatmap face grids, deduplicated; and the layout."""
    p = config.pipeline
    spread, _ = spread_mixtures(k, p.probe_mixtures, seed=p.search_seed)
    faces = heatmap_faces(k) if k >= 3 else []
    grids = [face_grid(k, f, p.heatmap_resolution) for f in faces]
    table = unique_rows(np.concatenate([spread, *grids]) if grids else spread)
    return table, {"faces": [list(f) for f in faces], "resolution": p.heatmap_resolution}
