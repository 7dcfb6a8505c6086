"""Proxies that do not merge, to show what merging adds.

- Loss interpolation: predict a mixture's metrics as the weighted sum of the experts' metrics,
  sum_k a_k m(expert_k).
- Output space (as in the MDE paper): average the experts' next-token probabilities,
  p_a(t) = sum_k a_k p_k(t); only the target token's probability enters the loss, so the K experts'
  target log-probabilities are computed once per held-out domain and every mixture is a
  log-sum-exp over them. Defined for the held-out losses (loss/<domain>, loss/mean). The same
  implementation is the `eval.proxy: ensemble` proxy (mergemix_jax/eval/ensemble.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval.ensemble import ensemble_metrics
from mergemix_jax.eval.suite import EvalSuite
from mergemix_jax.merge import ExpertStack


def loss_interpolation(weights_NxK: np.ndarray, expert_metrics: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{metric: [N]} = weights [N, K] @ expert metric values [K]."""
    w = np.asarray(weights_NxK, np.float64)
    return {m: w @ np.asarray(v, np.float64) for m, v in expert_metrics.items()}


def output_space(model_cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite, weights_NxK: np.ndarray, cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """{loss/<domain>, loss/mean: [N]} of the probability-averaged experts (eval/ensemble.py, see module doc)."""
    return ensemble_metrics(model_cfg, stack, suite, weights_NxK, cache_dir)
