"""Rank statistics of a proxy against real mixture training (scipy.stats), and the summary numbers.

Every function takes {metric: [N]} tables over the same N mixtures. "Per-domain normalised" utility:
each domain's held-out loss is z-scored over the mixtures of its own table before averaging, so a
domain whose loss swings widely (forgotten fast) does not dominate the ranking by its spread alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

Table = Mapping[str, np.ndarray]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (NaN with fewer than 3 points or a constant input)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b (NaN with fewer than 3 points or a constant input)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def normalised_utility(table: Table, domains: Sequence[str]) -> np.ndarray:
    """-mean over domains of the z-scored held-out loss (higher is better; see module doc)."""
    z = []
    for d in domains:
        loss = np.asarray(table[f"loss/{d}"], np.float64)
        z.append((loss - loss.mean()) / max(loss.std(), 1e-12))
    return -np.mean(z, axis=0)


def rank_of(value: float, population: np.ndarray) -> int:
    """1-based rank of `value` among `population` (higher is better): 1 + how many beat it."""
    return 1 + int(np.sum(np.asarray(population) > value))


def subsets(kinds: Sequence[str], reference_utility: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks: all mixtures, interior ones (no vertex), and the top quartile by reference utility."""
    kinds = np.asarray(kinds)
    top = reference_utility >= np.quantile(reference_utility, 0.75)
    return {"all": np.ones(len(kinds), bool), "interior": kinds != "vertex", "top quartile": top}


def rank_rows(
    metric: str,
    proxy: np.ndarray,
    reference: np.ndarray,
    masks: Mapping[str, np.ndarray],
    ceiling: np.ndarray | None = None,
    loss_interp: np.ndarray | None = None,
    output_space: np.ndarray | None = None,
) -> list[dict]:
    """One row per subset: Spearman/Kendall of the proxy, the ceiling (second reference seed) and the baselines."""
    nan = float("nan")
    rows = []
    for subset, mask in masks.items():

        def rho(x, mask=mask):
            return nan if x is None else spearman(np.asarray(x)[mask], reference[mask])

        rows.append(
            {
                "metric": metric,
                "subset": subset,
                "n": int(mask.sum()),
                "spearman": rho(proxy),
                "kendall": kendall(proxy[mask], reference[mask]),
                "ceiling_spearman": rho(ceiling),
                "ceiling_kendall": nan if ceiling is None else kendall(np.asarray(ceiling)[mask], reference[mask]),
                "loss_interp_spearman": rho(loss_interp),
                "output_space_spearman": rho(output_space),
                "recovery": float(np.mean(proxy[mask] / np.where(reference[mask] == 0, np.nan, reference[mask]))),
            }
        )
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """A fixed-width text table of rank rows (for the console and the README)."""
    cols = [("metric", 22, "s"), ("subset", 12, "s"), ("n", 3, "d"), ("spearman", 8, ".3f"), ("kendall", 8, ".3f"), ("ceiling_spearman", 8, ".3f"),
            ("ceiling_kendall", 8, ".3f"), ("loss_interp_spearman", 8, ".3f"), ("output_space_spearman", 8, ".3f"), ("recovery", 8, ".3f")]
    names = {"ceiling_spearman": "ceil rho", "ceiling_kendall": "ceil tau", "loss_interp_spearman": "interp", "output_space_spearman": "outspace", "spearman": "rho", "kendall": "tau"}
    head = "| " + " | ".join(names.get(c, c) for c, _, _ in cols) + " |"
    lines = [head, "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = []
        for c, _, f in cols:
            v = r[c]
            cells.append("–" if isinstance(v, float) and not np.isfinite(v) else format(v, f))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
