"""Reference models: the real thing the proxy stands in for, trained on each mixture from the same
base with the same token budget as one expert; each folder keeps its evaluation in eval.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.eval.suite import EvalSuite, evaluate
from mergemix_jax.pipeline import training
from mergemix_jax.pipeline.run_dir import write_json_atomic

EVAL_FILE = "eval.json"


def reference_config(config: Config, run_dir: Path, out: Path, weights_K: np.ndarray, data_seed: int) -> Config:
    """The train config of one reference: the expert recipe on mixture `weights_K` (zero weights dropped)."""
    mixture = {d.name: float(w) for d, w in zip(config.data.domains, weights_K, strict=True) if w > 1e-9}
    steps = config.validate.reference_steps or config.pipeline.expert_steps
    return training.short_run_config(config, run_dir, out, mixture, steps=steps, data_seed=data_seed)


def make_model_scorer(config: Config, suite: EvalSuite) -> Callable[[dict], dict[str, float]]:
    """params -> every suite metric of that model (one compile for all references)."""
    scorer = jax.jit(lambda params, s: evaluate(config.model, params, s))
    return lambda params: {k: float(v) for k, v in jax.device_get(scorer(params, suite)).items()}


def train_and_score(config: Config, run_dir: Path, out: Path, weights_K: np.ndarray, data_seed: int, score: Callable[[dict], dict[str, float]]) -> dict:
    """Train one reference unless finished, score it unless scored; returns its eval.json content."""
    from mergemix_jax.train import load_params

    cached = out / EVAL_FILE
    if cached.is_file():
        return json.loads(cached.read_text())
    cfg = reference_config(config, run_dir, out, weights_K, data_seed)
    seconds = training.train_unless_finished(cfg)
    params, _ = load_params(out, config.model)
    record = {"weights": np.asarray(weights_K).tolist(), "data_seed": data_seed, "train_seconds": seconds, "steps": cfg.train.steps, "metrics": score(params)}
    write_json_atomic(cached, record)
    return record
