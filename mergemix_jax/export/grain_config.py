"""Export a mixture as the config fragment `train.mixture` that mergemix_jax.data's grain pipeline
reads (YAML or JSON), or as `key=value` overrides for any mergemix command.

grain's `mix` rejects zero weights, so domains below `min_weight` are dropped and the rest
renormalised (the data pipeline does the same for exact zeros). Weights are written with
`SIGNIFICANT_DIGITS` significant digits (a config a person reads and pastes); they then sum to 1
within K x 5e-7, and the data pipeline renormalises them anyway.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from mergemix_jax.reliability.atomic import atomic_write_json, atomic_write_text

SIGNIFICANT_DIGITS = 6


def grain_mixture(weights: Mapping[str, float], min_weight: float = 1e-6) -> dict[str, float]:
    """{domain: weight} without domains below `min_weight`, renormalised to sum 1 and rounded to
    SIGNIFICANT_DIGITS significant digits."""
    kept = {name: float(w) for name, w in weights.items() if w >= min_weight}
    total = sum(kept.values())
    if not kept or total <= 0:
        raise ValueError(f"no domain has a weight >= {min_weight}: {dict(weights)}")
    return {name: float(f"{w / total:.{SIGNIFICANT_DIGITS}g}") for name, w in kept.items()}


def grain_mixture_yaml(weights: Mapping[str, float], min_weight: float = 1e-6) -> str:
    """The `train.mixture` config fragment as YAML text."""
    return yaml.safe_dump({"train": {"mixture": grain_mixture(weights, min_weight)}}, sort_keys=False)


def write_grain_mixture(weights: Mapping[str, float], path: str | os.PathLike, min_weight: float = 1e-6) -> Path:
    """Write `{"train": {"mixture": {...}}}` as YAML (.yaml/.yml) or JSON (.json), atomically.

    The file is a config fragment: it deep-merges into a job's config (whose data.domains name
    these domains) as `train.mixture`.
    """
    path = Path(path)
    fragment = {"train": {"mixture": grain_mixture(weights, min_weight)}}
    if path.suffix in (".yaml", ".yml"):
        return atomic_write_text(path, grain_mixture_yaml(weights, min_weight))
    if path.suffix == ".json":
        return atomic_write_json(path, fragment, allow_nan=True)
    raise ValueError(f"grain mixture file {path}: use a .yaml, .yml or .json name")


def read_grain_mixture(path: str | os.PathLike) -> dict[str, float]:
    """The `train.mixture` mapping of a grain mixture file (YAML or JSON)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    mixture = (raw or {}).get("train", {}).get("mixture") if isinstance(raw, dict) else None
    if not isinstance(mixture, dict) or not mixture:
        raise ValueError(f"{path}: no 'train.mixture' mapping of domain -> weight found")
    return {str(k): float(v) for k, v in mixture.items()}


def mixture_overrides(weights: Mapping[str, float], min_weight: float = 1e-6) -> list[str]:
    """`train.mixture.<domain>=<weight>` command-line overrides for `mergemix train` and friends."""
    return [f"train.mixture.{name}={w!r}" for name, w in grain_mixture(weights, min_weight).items()]
