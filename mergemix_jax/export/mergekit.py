"""The chosen merge as a mergekit YAML, for users who build the merged model with mergekit.

Our merges are task arithmetic on a shared base, so each maps onto a mergekit method:
- linear: base + scale * sum_k w_k (expert_k - base)  ->  `task_arithmetic`, weight w_k, lambda scale;
- ties:   TIES with magnitude density d, weighted sign election, disjoint weighted mean, * scale
          ->  `ties`, density d, weight w_k, normalize true, lambda scale;
- dare:   drop with rate p, rescale by 1/(1-p), weighted sum, * scale  ->  `dare_linear`, density 1-p,
          weight w_k, lambda scale (mergekit draws its own random masks, so DARE merges match in
          distribution only).
mergekit reads Hugging Face model folders: export the base and each expert with `mergemix export-hf`
first; the YAML names those folders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import yaml

from mergemix_jax.config.schema import EvalConfig
from mergemix_jax.export.grain_config import SIGNIFICANT_DIGITS
from mergemix_jax.reliability.atomic import atomic_write_text

MERGEKIT_METHODS = {"linear": "task_arithmetic", "ties": "ties", "dare": "dare_linear"}


def mergekit_config(
    weights: Mapping[str, float],
    base_model: str,
    expert_models: Mapping[str, str],
    eval_cfg: EvalConfig,
    dtype: str = "float32",
    min_weight: float = 0.0,
) -> dict:
    """The mergekit config dict of the merge `weights` ({domain: w}) with `eval_cfg`'s merge method.

    Experts with weight <= min_weight are left out (mergekit would load them for nothing); weights are
    written with SIGNIFICANT_DIGITS significant digits.
    """
    if eval_cfg.merge not in MERGEKIT_METHODS:
        raise ValueError(f"eval.merge {eval_cfg.merge!r} has no mergekit equivalent; choose one of {tuple(MERGEKIT_METHODS)}")
    missing = sorted(set(weights) - set(expert_models))
    if missing:
        raise ValueError(f"no expert model folder for domain(s) {missing}")
    per_model: dict[str, float] = {}
    if eval_cfg.merge == "ties":
        per_model["density"] = eval_cfg.ties_density
    elif eval_cfg.merge == "dare":
        per_model["density"] = round(1.0 - eval_cfg.dare_drop_rate, 12)
    models = [
        {"model": expert_models[name], "parameters": {"weight": float(f"{w:.{SIGNIFICANT_DIGITS}g}"), **per_model}}
        for name, w in weights.items()
        if w > min_weight
    ]
    if not models:
        raise ValueError(f"every weight is <= min_weight {min_weight}; nothing to merge")
    parameters: dict[str, object] = {"normalize": eval_cfg.merge == "ties"}
    if eval_cfg.merge_scale != 1.0:
        parameters["lambda"] = float(eval_cfg.merge_scale)
    return {
        "merge_method": MERGEKIT_METHODS[eval_cfg.merge],
        "base_model": base_model,
        "models": models,
        "parameters": parameters,
        "dtype": dtype,
    }


def write_mergekit_yaml(config: dict, out: str | os.PathLike, comment: str = "") -> str:
    """Write `config` as YAML (with an optional leading comment block) atomically; returns the path."""
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    atomic_write_text(out, header + yaml.safe_dump(config, sort_keys=False))
    return os.fspath(out)
