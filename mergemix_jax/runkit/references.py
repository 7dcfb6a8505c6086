"""Reference models: the real thing the proxy stands in for, trained on each mixture from the same
base with the same token budget as one expert. Each folder keeps its training time in train_time.json
and one eval-<suite hash>.json per evaluation suite, so a larger suite re-scores without retraining."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.eval.suite import EvalSuite, evaluate
from mergemix_jax.mixture import Mixture
from mergemix_jax.runkit import training
from mergemix_jax.runkit.run_dir import config_hash, write_json_atomic

TIME_FILE = "train_time.json"
LEGACY_EVAL_FILE = "eval.json"  # written before suites were keyed; holds the training time


def suite_key(config: Config) -> str:
    """Hash of what the evaluation suite scores: the eval section and the domains."""
    return config_hash({"eval": config.eval.__dict__, "domains": [d.__dict__ for d in config.data.domains], "split": [config.data.heldout_fraction, config.data.split_seed]}, 8)


def reference_config(config: Config, run_dir: Path, out: Path, weights_K: np.ndarray, data_seed: int) -> Config:
    """The train config of one reference: the expert recipe on mixture `weights_K` (zero weights dropped)."""
    mixture = Mixture([d.name for d in config.data.domains], weights_K).as_dict(min_weight=1e-9)
    steps = config.validate.reference_steps or config.pipeline.expert_steps
    return training.short_run_config(config, run_dir, out, mixture, steps=steps, data_seed=data_seed)


def make_model_scorer(config: Config, suite: EvalSuite) -> Callable[[dict], dict[str, float]]:
    """params -> every suite metric of that model (one compile for all references)."""
    scorer = jax.jit(lambda params, s: evaluate(config.model, params, s))
    return lambda params: {k: float(v) for k, v in jax.device_get(scorer(params, suite)).items()}


def train_and_score(config: Config, run_dir: Path, out: Path, weights_K: np.ndarray, data_seed: int, score: Callable[[dict], dict[str, float]], suite_key: str) -> dict:
    """Train one reference unless finished, score it on the suite `suite_key` unless scored; returns
    {"weights", "data_seed", "train_seconds", "steps", "metrics"}."""
    from mergemix_jax.train import load_params

    cached = out / f"eval-{suite_key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    cfg = reference_config(config, run_dir, out, weights_K, data_seed)
    seconds = training.train_unless_finished(cfg)
    if seconds > 0 or not (out / TIME_FILE).is_file():
        legacy = out / LEGACY_EVAL_FILE
        seconds = json.loads(legacy.read_text())["train_seconds"] if seconds == 0 and legacy.is_file() else seconds
        write_json_atomic(out / TIME_FILE, {"train_seconds": seconds})
    seconds = json.loads((out / TIME_FILE).read_text())["train_seconds"]
    params, _ = load_params(out, config.model)
    record = {"weights": np.asarray(weights_K).tolist(), "data_seed": data_seed, "train_seconds": seconds, "steps": cfg.train.steps, "metrics": score(params)}
    write_json_atomic(cached, record)
    return record
