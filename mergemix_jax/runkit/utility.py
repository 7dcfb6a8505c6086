"""The run's utility, fixed once and used by every stage that ranks mixtures.

`pipeline.utility` weighs metrics (held-out losses, benchmark scores); `search.normalise` says how
each is put on a common scale before the weighted (macro) average (search/normalise.py: none |
minmax | zscore | rank). The normalisation maps are fitted ONCE, on the probe table of the run
(eval/probe.csv: vertices, centre, Dirichlet draws, heatmap grids scored by the merged proxy), and
saved to <run>/eval/utility.json. The searches, the selection of the proxy's pick, the verification
stage's real runs and `mergemix validate`'s references all score through the same saved maps, so a
proxy's utility and a trained model's utility are the same function of the same metrics and their
numbers are comparable. With `none` the utility is the plain weighted sum (losses negated), as
before; higher is always better.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mergemix_jax.search.merged import metric_direction
from mergemix_jax.search.normalise import MetricMap, fit_normaliser, macro_utility
from mergemix_jax.search.utility import weighted_utility

log = logging.getLogger(__name__)
UTILITY_FILE = Path("eval") / "utility.json"


@dataclass(frozen=True)
class RunUtility:
    """utility(metrics {name: [B]}) -> [B], higher is better. `weights`: metric -> weight;
    `kind`: the normalisation; `maps`: the fitted per-metric maps (for every kind, so a report can
    show each metric's normalised score; with kind "none" they are the oriented metric itself)."""

    weights: dict[str, float]
    kind: str = "none"
    maps: dict[str, MetricMap] = field(default_factory=dict)
    fitted_on: int = 0  # reference rows the maps were fitted on

    def __post_init__(self):
        missing = sorted(set(self.weights) - set(self.maps)) if self.kind != "none" else []
        if missing:
            raise ValueError(f"utility normalisation {self.kind!r} has no fitted map for metric(s) {missing}")

    def __call__(self, metrics: Mapping[str, np.ndarray]) -> np.ndarray:
        table = {k: np.asarray(v, np.float64) for k, v in metrics.items()}
        if self.kind == "none":
            return weighted_utility(self.weights, {m: metric_direction(m) for m in self.weights})(table)
        return macro_utility(self.weights, self.maps)(table)

    def of_record(self, metrics: Mapping[str, float]) -> float:
        """The utility of one model's metrics {name: value}."""
        return float(self({m: np.asarray([metrics[m]]) for m in self.weights if m in metrics})[0])

    def normalised(self, metrics: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{metric: normalised score [B]} of every utility metric present in `metrics` (higher is better)."""
        return {m: self.maps[m](np.asarray(metrics[m], np.float64)) for m in self.weights if m in metrics and m in self.maps}

    @property
    def is_loss(self) -> bool:
        """True when the utility is minus a held-out loss (kind none, only loss/ metrics): its negation reads as nats."""
        return self.kind == "none" and all(m.startswith("loss/") for m in self.weights)

    def describe(self) -> str:
        terms = " + ".join(f"{w:g} x {m}" for m, w in self.weights.items())
        if self.kind == "none":
            return f"utility = {terms} (losses negated; higher is better)"
        return f"utility = weighted mean of {self.kind}-normalised scores ({terms}; maps fitted on {self.fitted_on} probe mixtures; higher is better)"

    def to_json(self) -> dict:
        return {
            "weights": dict(self.weights),
            "kind": self.kind,
            "fitted_on": self.fitted_on,
            "maps": {m: {"kind": mp.kind, "sign": mp.sign, "reference": mp.sorted_reference.tolist()} for m, mp in self.maps.items()},
            "description": self.describe(),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> RunUtility:
        maps = {m: MetricMap(d["kind"], float(d["sign"]), np.asarray(d["reference"], np.float64)) for m, d in data.get("maps", {}).items()}
        return cls(dict(data["weights"]), data["kind"], maps, int(data.get("fitted_on", 0)))


def fit_run_utility(weights: Mapping[str, float], kind: str, reference: Mapping[str, np.ndarray] | None) -> RunUtility:
    """The utility with its maps fitted on `reference` {metric: [N]} (the probe table); with kind
    "none" and no reference, the plain weighted sum."""
    if reference is None:
        if kind != "none":
            raise ValueError(f"search.normalise={kind} fits its maps on the probe table, which is missing; rerun the probe stage")
        return RunUtility(dict(weights), "none")
    names = [m for m in weights if m in reference]
    maps = fit_normaliser(reference, {m: metric_direction(m) for m in names}, kind) if (kind != "none" or names) else {}
    n = len(next(iter(reference.values()))) if reference else 0
    return RunUtility(dict(weights), kind, maps, n)


def run_utility(config, run_dir: Path | None, weights: Mapping[str, float]) -> RunUtility:
    """The run's utility: read from <run>/eval/utility.json when it holds these weights and this
    normalisation, else fitted on <run>/eval/probe.csv and saved there (see module doc)."""
    from mergemix_jax.eval.results import read_table
    from mergemix_jax.runkit.run_dir import write_json_atomic

    kind = config.search.normalise
    if run_dir is None:
        return fit_run_utility(weights, kind, None)
    path = Path(run_dir) / UTILITY_FILE
    if path.is_file():
        saved = RunUtility.from_json(json.loads(path.read_text()))
        if saved.kind == kind and saved.weights == dict(weights):
            return saved
        log.info("utility changed (%s -> %s): refitting its normalisation on the probe table", saved.describe(), kind)
    probe = Path(run_dir) / "eval" / "probe.csv"
    domains = tuple(d.name for d in config.data.domains)
    reference = read_table(probe, domains)["metrics"] if probe.is_file() else None
    if reference is not None and not len(next(iter(reference.values()), [])):
        reference = None
    utility = fit_run_utility(weights, kind, reference)
    if reference is not None:
        write_json_atomic(path, utility.to_json())
    return utility


def read_run_utility(run_dir: Path) -> RunUtility | None:
    """The saved utility of a run folder (None before the probe stage wrote it)."""
    path = Path(run_dir) / UTILITY_FILE
    return RunUtility.from_json(json.loads(path.read_text())) if path.is_file() else None
