"""Statistics the stages and the report share: the one-sided confidence quantile behind verification's
decision margins (verify/decide.py) and the report's verdict, and the "value [lo, hi]" format of
validation's rank statistics (validate/stats.py tables, the report's validation section)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats


def one_sided_quantile(confidence: float, dof: int | None = None) -> float:
    """The one-sided quantile of `confidence`: Student-t with `dof` degrees of freedom when the noise is
    estimated from that many, the normal one when `dof` is None (noise known, e.g. many replicates)."""
    return float(stats.norm.ppf(confidence) if dof is None else stats.t.ppf(confidence, dof))


def format_with_interval(row: Mapping, key: str) -> str:
    """`row[key]` as "0.612 [0.21, 0.87]" with its `_lo`/`_hi` interval when both are finite; "–" when undefined."""
    v = row.get(key, float("nan"))
    if v is None or not np.isfinite(v):
        return "–"
    lo, hi = row.get(f"{key}_lo", float("nan")), row.get(f"{key}_hi", float("nan"))
    return f"{v:.3f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else f"{v:.3f}"
