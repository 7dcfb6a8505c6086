"""A benchmark utility: the macro average of per-benchmark normalised scores (MergeMix style).

Raw metrics live on different scales (a loss in nats, an accuracy in [0, 1]), so a plain weighted
sum lets the widest one decide. Each metric is first oriented (higher is better: losses negated),
then mapped by a fixed monotone normalisation fitted on a reference table of scored mixtures (the
pipeline's probe table), and the utility is the weighted mean of the normalised scores:
- "none":   the oriented metric itself (a weighted sum of raw scores, the old behaviour);
- "minmax": (s - min) / (max - min) over the reference, 0 = its worst mixture, 1 = its best;
- "zscore": (s - mean) / std over the reference;
- "rank":   DeMix's rank percentile, the share of reference mixtures scoring below s
            (interpolated, so it is a fixed map and a new mixture does not shift the others).
The maps are fitted once, so a mixture's utility never depends on which others are scored with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mergemix_jax.config.schema import NORMALISATIONS
from mergemix_jax.search.types import Utility


@dataclass(frozen=True)
class MetricMap:
    """The fitted normalisation of one oriented metric (higher is better)."""

    kind: str
    sign: float  # +1 for "max" metrics, -1 for losses
    sorted_reference: np.ndarray  # [N] oriented reference scores, ascending

    def __call__(self, values: np.ndarray) -> np.ndarray:
        s = self.sign * np.asarray(values, np.float64)
        ref = self.sorted_reference
        if self.kind == "none":
            return s
        if self.kind == "minmax":
            span = ref[-1] - ref[0]
            return (s - ref[0]) / span if span > 0 else np.zeros_like(s)
        if self.kind == "zscore":
            std = ref.std()
            return (s - ref.mean()) / std if std > 0 else np.zeros_like(s)
        # rank percentile: the mid-rank of s among the reference, linearly interpolated between them
        ranks = (np.arange(len(ref)) + 0.5) / len(ref)
        return np.interp(s, ref, ranks, left=0.0, right=1.0)


def fit_normaliser(reference: Mapping[str, np.ndarray], directions: Mapping[str, str], kind: str) -> dict[str, MetricMap]:
    """{metric: MetricMap} fitted on the reference table {metric: [N]} (non-finite rows ignored)."""
    if kind not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {kind!r}")
    maps = {}
    for name, direction in directions.items():
        if name not in reference:
            raise KeyError(f"the reference table has no metric {name!r}; it has {sorted(reference)}")
        sign = -1.0 if direction == "min" else 1.0
        values = sign * np.asarray(reference[name], np.float64)
        values = np.sort(values[np.isfinite(values)])
        if kind != "none" and len(values) < 2:
            raise ValueError(f"normalising {name!r} by {kind} needs at least 2 finite reference scores, got {len(values)}")
        maps[name] = MetricMap(kind, sign, values)
    return maps


def macro_utility(metric_weights: Mapping[str, float], maps: Mapping[str, MetricMap]) -> Utility:
    """utility = sum_m w_m * normalised_m(metric_m) / sum_m |w_m| (higher is better)."""
    if not metric_weights:
        raise ValueError("metric_weights is empty; give at least one metric a weight")
    missing = sorted(set(metric_weights) - set(maps))
    if missing:
        raise KeyError(f"no fitted normalisation for metric(s) {missing}")
    total = sum(abs(w) for w in metric_weights.values()) or 1.0

    def utility(metrics: dict[str, np.ndarray]) -> np.ndarray:
        absent = sorted(set(metric_weights) - set(metrics))
        if absent:
            raise KeyError(f"the scorer returned no metric(s) {absent}; it returned {sorted(metrics)}")
        return sum(w * maps[m](metrics[m]) for m, w in metric_weights.items()) / total

    return utility


# a benchmark score without a gradient -> its differentiable stand-in (lower is better)
STAND_INS = {"acc": "ce", "acc_norm": "ce_norm", "exact": "answer_nll"}
SMOOTH_PREFIXES = ("loss/", "ce/", "ce_norm/", "answer_nll/")  # eval.suite's (tests check they match)


def objective_weights(
    metric_weights: Mapping[str, float], available: list[str], reference: Mapping[str, np.ndarray] | None = None, kind: str = "none"
) -> tuple[dict[str, float], list[str]]:
    """Weights of the smooth metrics gradient search minimises for this utility, and warnings.

    A non-smooth metric (acc/T, exact/T) is replaced by its stand-in (ce/T, answer_nll/T) with the
    same weight; one without a stand-in in the suite is dropped with a warning. With a normalised
    utility each smooth metric's weight is divided by its spread over the reference (max - min for
    minmax, the standard deviation for zscore and, as a linearisation, for rank), so the objective
    weighs metrics as the utility does. Weights are returned for lower-is-better metrics.
    """
    weights: dict[str, float] = {}
    warnings = []
    for name, w in metric_weights.items():
        if name.startswith(SMOOTH_PREFIXES):
            target = name
        else:
            prefix, _, task = name.partition("/")
            target = f"{STAND_INS[prefix]}/{task}" if prefix in STAND_INS else ""
            if target not in available:
                warnings.append(f"gradient search: metric {name!r} has no smooth stand-in in the suite; the gradient ignores it (the black-box methods still use it)")
                continue
            warnings.append(f"gradient search: metric {name!r} is not differentiable; optimising its smooth stand-in {target!r} instead")
        scale = 1.0
        ref = np.asarray(reference[target], np.float64) if kind != "none" and reference is not None and target in reference else np.zeros(0)
        ref = ref[np.isfinite(ref)]
        if len(ref) >= 2:
            spread = ref.max() - ref.min() if kind == "minmax" else ref.std()
            scale = spread if spread > 0 else 1.0
        weights[target] = weights.get(target, 0.0) + w / scale
    return weights, warnings
