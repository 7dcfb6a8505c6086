"""The mixture file: one JSON document with the weights by domain, the method, objective values
and provenance (config hash, time, versions), written atomically and read back with checks."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mergemix_jax.config.hashing import config_hash
from mergemix_jax.mixture import Mixture
from mergemix_jax.reliability.atomic import atomic_write_json
from mergemix_jax.search.types import SearchResult

FORMAT = "mergemix.mixture/v1"
_VERSIONED = ("mergemix-jax", "jax", "optax", "numpy", "lightgbm", "evosax", "scikit-learn")


@dataclass
class MixtureFile:
    """A mixture and where it came from; `weights` sums to 1 over `domains`."""

    weights: dict[str, float]
    method: str
    objective: float
    metrics: dict[str, float] = field(default_factory=dict)
    group_weights: list[list[float]] | None = None  # [G][K] per-group merge weights, if searched
    ratios: dict[str, Any] | None = None  # data ratios report (see search.ratios)
    search: dict[str, Any] = field(default_factory=dict)  # wall time, evaluations, trace, extras
    provenance: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] | None = None  # real short runs of the top candidates (pipeline verify stage)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}

    @property
    def mixture(self) -> Mixture:
        """`weights` as a Mixture (e.g. `.mixture.vector(domains)` in a table's domain order)."""
        return Mixture.from_dict(self.weights)


def provenance(settings: dict[str, Any]) -> dict[str, Any]:
    """Config hash, UTC time, library versions and Python/platform, for the mixture file."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "config_hash": config_hash(_jsonable(settings)),
        "settings": _jsonable(settings),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "python": platform.python_version(),
    }


def mixture_from_result(result: SearchResult, settings: dict[str, Any], ratios: dict[str, Any] | None = None) -> MixtureFile:
    """Turn a SearchResult into a MixtureFile with provenance of `settings` (method options, problem)."""
    weights = np.asarray(result.weights, np.float64)
    weights = weights / weights.sum()
    return MixtureFile(
        weights=Mixture(result.domains, weights).as_dict(),
        method=result.method,
        objective=float(result.objective),
        metrics={k: float(v) for k, v in result.metrics.items()},
        group_weights=None if result.group_weights is None else np.asarray(result.group_weights).tolist(),
        ratios=ratios,
        search=_jsonable(
            {"wall_time_s": result.wall_time_s, "n_evaluations": result.n_evaluations, "trace": result.trace, "extras": result.extras}
        ),
        provenance=provenance(settings),
    )


def write_mixture(mixture: MixtureFile, path: str | os.PathLike) -> Path:
    """Write the mixture file atomically (temp file in the same folder, then os.replace)."""
    return atomic_write_json(path, _jsonable(mixture.to_dict()))


def read_mixture(path: str | os.PathLike) -> MixtureFile:
    """Read and check a mixture file; errors name the file and the field at fault."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mixture file {path} does not exist; write one with `mergemix search --out {path}`")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'format' must be {FORMAT!r}; is this a mergemix mixture file?")
    for key in ("weights", "method", "objective"):
        if key not in raw:
            raise ValueError(f"{path}: field {key!r} is missing")
    weights = raw["weights"]
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"{path}: field 'weights' must map domain names to weights")
    for name, w in weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{path}: field 'weights.{name}' must be a finite number >= 0, got {w!r}")
    if not math.isclose(sum(weights.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"{path}: field 'weights' sums to {sum(weights.values())}, not 1")
    fields = MixtureFile.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields) - {"format"})
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}")
    return MixtureFile(**{k: v for k, v in raw.items() if k in fields})


def _jsonable(value: Any) -> Any:
    """Numpy/jax arrays and scalars -> lists and floats, recursively; other objects -> str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return _jsonable(np.asarray(value).tolist())
    return str(value)
