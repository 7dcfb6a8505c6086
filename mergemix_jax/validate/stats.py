"""Rank statistics of a proxy against real mixture training, with their uncertainty.

Every function takes {metric: [N]} tables or [N] arrays over the same N mixtures. Conventions:

- Reliability r: Spearman between two trainings of the same mixtures with different data seeds
  (test-retest). It is not a ceiling for a predictor: a perfect predictor of the expected outcome
  correlates about sqrt(r) with one replicate, and about sqrt(2r / (1 + r)) with the mean of two
  (Spearman-Brown), which is the target proxies are compared against when two replicates exist.
- Intervals: paired percentile bootstrap over mixtures (the same resamples for every estimator of a
  row), 90%, seeded numpy.
- Indistinguishable from the best: mixtures whose mean real utility is within z * noise * sqrt(2/m)
  of the best, the noise being one run's seed standard deviation estimated from replicate differences.
- "Per-domain normalised" utility: each domain's held-out loss is z-scored over the mixtures of its
  own table before averaging, so a domain whose loss swings widely does not dominate by spread alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from mergemix_jax.runkit.stats import format_with_interval

Table = Mapping[str, np.ndarray]
LEVEL = 0.9  # coverage of every interval
N_BOOT = 2000  # bootstrap resamples
Z_ONE_SIDED = float(stats.norm.ppf(0.9))  # one-sided 90%, as the verification stage's margin


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


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """[n_boot, n] row indices drawn with replacement (one resample of the mixtures per row)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def spearman_resampled(x: np.ndarray, y: np.ndarray, idx_BxN: np.ndarray) -> np.ndarray:
    """[B] Spearman of (x, y) on each resample (average ranks for ties; NaN where one side is constant)."""
    rx = stats.rankdata(np.asarray(x, np.float64)[idx_BxN], axis=1)
    ry = stats.rankdata(np.asarray(y, np.float64)[idx_BxN], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Central `level` percentile interval of the finite samples (NaNs when fewer than half are finite)."""
    samples = np.asarray(samples, np.float64)
    finite = samples[np.isfinite(samples)]
    if finite.size < max(samples.size / 2, 1):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def spearman_interval(x: np.ndarray, y: np.ndarray, idx_BxN: np.ndarray | None = None, level: float = LEVEL) -> tuple[float, float]:
    """Paired bootstrap interval of Spearman(x, y); `idx_BxN` defaults to `bootstrap_indices(len(x))`."""
    if len(x) < 3:
        return float("nan"), float("nan")
    idx_BxN = bootstrap_indices(len(x)) if idx_BxN is None else idx_BxN
    return percentile_interval(spearman_resampled(x, y, idx_BxN), level)


def spearman_brown(r: float, replicates: int) -> float:
    """Reliability of the mean of `replicates` runs from the reliability r of one: m r / (1 + (m - 1) r)."""
    return replicates * r / (1 + (replicates - 1) * r)


def predictor_bound(r: float, replicates: int = 1) -> float:
    """About the best Spearman a perfect predictor of the expected outcome reaches against the mean of
    `replicates` runs whose test-retest reliability is r: sqrt(spearman_brown(r, m)); 0 when r <= 0."""
    if not np.isfinite(r):
        return float("nan")
    return float(np.sqrt(np.clip(spearman_brown(r, replicates), 0.0, 1.0))) if r > 0 else 0.0


def replicate_noise(u1: np.ndarray, u2: np.ndarray) -> float:
    """One run's seed standard deviation from paired replicates: sqrt(mean((u1 - u2)^2) / 2)."""
    d = np.asarray(u1, np.float64) - np.asarray(u2, np.float64)
    return float(np.sqrt(np.mean(d**2) / 2)) if d.size else float("nan")


def indistinguishable(utility_N: np.ndarray, noise: float, replicates: int = 1, z: float = Z_ONE_SIDED) -> np.ndarray:
    """[N] bool: mixtures whose utility (mean of `replicates` runs, higher is better) is within
    z * noise * sqrt(2 / replicates) of the best, i.e. not measurably worse than it at 90% one-sided."""
    u = np.asarray(utility_N, np.float64)
    if not np.isfinite(noise):
        return u == u.max()
    return u.max() - u <= z * noise * np.sqrt(2.0 / replicates)


def regret_interval(
    reference_N: np.ndarray, pick: float, noise: float, replicates: int = 1, pick_replicates: int = 1, pick_index: int | None = None,
    level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0,
) -> tuple[float, float, float]:
    """(regret, lo, hi): regret = best reference utility - the pick's; the interval re-draws every
    measured utility with the seed noise (parametric bootstrap; NaNs without a noise estimate).
    `pick_index`: the pick is that reference itself (its draw is shared, so its regret is >= 0)."""
    ref = np.asarray(reference_N, np.float64)
    regret = float(ref.max() - pick)
    if not np.isfinite(noise):
        return regret, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ref_b = ref[None] + rng.normal(0.0, noise / np.sqrt(replicates), size=(n_boot, ref.size))
    pick_b = ref_b[:, pick_index] if pick_index is not None else pick + rng.normal(0.0, noise / np.sqrt(pick_replicates), size=n_boot)
    lo, hi = percentile_interval(ref_b.max(axis=1) - pick_b, level)
    return regret, lo, hi


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


def _with_interval(row: dict, key: str, x: np.ndarray | None, target: np.ndarray, idx: np.ndarray) -> None:
    """row[key], row[key_lo], row[key_hi]: Spearman of x against the target and its bootstrap interval."""
    if x is None:
        row[key] = row[f"{key}_lo"] = row[f"{key}_hi"] = float("nan")
        return
    x = np.asarray(x, np.float64)
    row[key] = spearman(x, target)
    row[f"{key}_lo"], row[f"{key}_hi"] = percentile_interval(spearman_resampled(x, target, idx)) if len(x) >= 3 else (float("nan"), float("nan"))


def rank_rows(
    metric: str,
    proxy: np.ndarray,
    replicates: Sequence[np.ndarray],
    masks: Mapping[str, np.ndarray],
    others: Mapping[str, np.ndarray | None] | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> list[dict]:
    """One row per subset: the proxy's Spearman (with interval) and Kendall against the target (the
    mean of the 1 or 2 `replicates`, each [N]), the replicates' reliability r and the bound of a
    perfect predictor against that target, and the Spearman (with interval) of each `others`
    estimator (e.g. "calibrated", "loss_interp", "output_space"; None = not available)."""
    runs = [np.asarray(r, np.float64) for r in replicates]
    target = np.mean(runs, axis=0)
    proxy = np.asarray(proxy, np.float64)
    rows = []
    for i, (subset, mask) in enumerate(masks.items()):
        n = int(mask.sum())
        idx = bootstrap_indices(n, n_boot, seed + i)
        t = target[mask]
        row = {"metric": metric, "subset": subset, "n": n, "replicates": len(runs)}
        _with_interval(row, "spearman", proxy[mask], t, idx)
        row["kendall"] = kendall(proxy[mask], t)
        for name, values in (others or {}).items():
            _with_interval(row, f"{name}_spearman", None if values is None else np.asarray(values)[mask], t, idx)
        if len(runs) == 2:
            _with_interval(row, "reliability", runs[0][mask], runs[1][mask], idx)
        else:
            _with_interval(row, "reliability", None, t, idx)
        row["ceiling_spearman"] = row["reliability"]  # legacy name (benchmarks/fidelity.py): r, not a bound
        for end in ("", "_lo", "_hi"):
            row[f"bound{end}"] = predictor_bound(row[f"reliability{end}"], len(runs)) if len(runs) == 2 else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            row["recovery"] = float(np.mean(proxy[mask] / np.where(t == 0, np.nan, t)))
        rows.append(row)
    return rows


TABLE_COLUMNS = (
    ("spearman", "proxy rho [90%]"),
    ("calibrated_spearman", "calibrated rho"),
    ("kendall", "tau"),
    ("reliability", "reliability r"),
    ("bound", "bound sqrt(2r/(1+r))"),
    ("loss_interp_spearman", "loss interp rho"),
    ("output_space_spearman", "output-space rho"),
)


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of rank rows with their 90% intervals (for the console and docs/results.md)."""
    head = "| metric | subset | n | " + " | ".join(name for _, name in TABLE_COLUMNS) + " |"
    lines = [head, "|" + "|".join("---" for _ in range(3 + len(TABLE_COLUMNS))) + "|"]
    for r in rows:
        lines.append(f"| {r['metric']} | {r['subset']} | {r['n']} | " + " | ".join(format_with_interval(r, key) for key, _ in TABLE_COLUMNS) + " |")
    return "\n".join(lines)
