"""Per-domain monotone calibration of proxy losses against real training.

The merged proxy ranks each domain's held-out loss well but on the wrong scale (a domain the merge
forgets fast, e.g. math, spreads over 1.2-2.4 nats where real mixtures sit at 1.1-1.3), so the
utility, a sum over domains, is dominated by the worst-scaled domain. A monotone map per domain
f_d: proxy loss -> real loss, fitted on every real run available (the vertices, whose one-hot
reference is the expert itself, plus verification or validation runs), fixes the scales while
keeping each domain's own ranking:

- >= 3 distinct points: isotonic regression (scikit-learn), linear between knots, slope 1 beyond
  the fitted range, plus a 1e-3 slope so plateaus keep the proxy's order instead of tying;
- 1-2 points: a shift by the mean residual (an isotonic fit on two points is just a step);
- 0 points: the identity.

Every `loss/<domain>` metric is mapped, plus any other metric the run's utility reads (e.g. a
benchmark's answer NLL: the expert at a vertex is that one-hot reference for it too), each by its
own monotone non-decreasing map (proxy and real share the metric's orientation); `loss/mean` is
recomputed from the mapped domains.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CALIBRATION_FILE = Path("verify") / "calibration.json"
TIE_BREAK_SLOPE = 1e-3
MIN_ISOTONIC_POINTS = 3


@dataclass(frozen=True)
class DomainMap:
    """A monotone non-decreasing map of one metric: knots (proxy -> real) and how it was fitted."""

    metric: str
    kind: str  # isotonic | shift | identity
    knots_proxy: tuple[float, ...]
    knots_real: tuple[float, ...]
    n_points: int

    def __call__(self, proxy_N: np.ndarray) -> np.ndarray:
        """Map proxy values [N] to calibrated ones [N]."""
        x = np.asarray(proxy_N, np.float64)
        if self.kind == "identity":
            return x.copy()
        if self.kind == "shift":
            return x + self.knots_real[0] - self.knots_proxy[0]
        kx, ky = np.asarray(self.knots_proxy), np.asarray(self.knots_real)
        inside = np.interp(x, kx, ky)
        tails = np.where(x < kx[0], x - kx[0], np.where(x > kx[-1], x - kx[-1], 0.0))
        return inside + tails + TIE_BREAK_SLOPE * (x - kx[0])


def fit_domain_map(metric: str, proxy_N: np.ndarray, real_N: np.ndarray) -> DomainMap:
    """The monotone map of one metric from paired (proxy, real) values (see module doc)."""
    from sklearn.isotonic import IsotonicRegression

    x, y = np.asarray(proxy_N, np.float64), np.asarray(real_N, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) == 0:
        return DomainMap(metric, "identity", (), (), 0)
    if len(np.unique(x)) < MIN_ISOTONIC_POINTS:
        shift = float(np.mean(y - x))
        return DomainMap(metric, "shift", (0.0,), (shift,), len(x))
    model = IsotonicRegression(increasing=True).fit(x, y)
    knots_x = np.unique(x)
    knots_y = model.predict(knots_x) - TIE_BREAK_SLOPE * (knots_x - knots_x[0])
    return DomainMap(metric, "isotonic", tuple(knots_x.tolist()), tuple(knots_y.tolist()), len(x))


@dataclass(frozen=True)
class Calibration:
    """One monotone map per domain loss (and per extra utility metric); `apply` calibrates a metrics table {name: [N]}."""

    domains: tuple[str, ...]
    maps: tuple[DomainMap, ...]

    def apply(self, table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The table with every mapped metric calibrated and loss/mean recomputed; other metrics kept."""
        out = {name: np.asarray(values, np.float64) for name, values in table.items()}
        for m in self.maps:
            if m.metric in out:
                out[m.metric] = m(out[m.metric])
        losses = [f"loss/{d}" for d in self.domains]
        if "loss/mean" in out and all(name in out for name in losses):
            out["loss/mean"] = np.mean([out[name] for name in losses], axis=0)
        return out

    def to_json(self) -> dict:
        """A JSON-able description (knots and fit kinds), readable by `from_json`."""
        return {"domains": list(self.domains), "maps": [asdict(m) for m in self.maps]}

    @classmethod
    def from_json(cls, raw: Mapping) -> Calibration:
        """Inverse of `to_json`."""
        maps = tuple(DomainMap(m["metric"], m["kind"], tuple(m["knots_proxy"]), tuple(m["knots_real"]), int(m["n_points"])) for m in raw["maps"])
        return cls(tuple(raw["domains"]), maps)


def fit_calibration(proxy: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], domains: Sequence[str], metrics: Sequence[str] = ()) -> Calibration:
    """Fit one map per `loss/<domain>` and per extra metric in `metrics` on paired rows of the
    `proxy` and `real` tables ({metric: [N]}, the same N mixtures)."""
    maps = []
    names = [f"loss/{d}" for d in domains]
    for name in names + [m for m in metrics if m not in names and m != "loss/mean"]:
        if name not in proxy or name not in real:
            raise KeyError(f"calibration needs {name!r} in both the proxy and the real table")
        maps.append(fit_domain_map(name, proxy[name], real[name]))
    return Calibration(tuple(domains), tuple(maps))


def save_calibration(calibration: Calibration, run_dir: str | os.PathLike, points: Mapping | None = None) -> Path:
    """Write <run>/verify/calibration.json (with the fitting points, for the report) atomically."""
    from mergemix_jax.reliability.atomic import atomic_write_json, json_default

    path = Path(run_dir) / CALIBRATION_FILE
    payload = {**calibration.to_json(), "points": dict(points or {})}
    atomic_write_json(path, payload, allow_nan=True, default=json_default)
    return path


def load_calibration(run_dir: str | os.PathLike) -> Calibration | None:
    """The run's calibration (fitted by the verification stage), or None when it has none."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return Calibration.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a calibration file ({err}); delete it and rerun `mergemix run` to refit") from None
