"""Proxies that do not merge, to show what merging adds.

- Loss interpolation: predict a mixture's metrics as the weighted sum of the experts' metrics,
  sum_k a_k m(expert_k).
- Output space (as in the MDE paper): average the experts' next-token probabilities,
  p_a(t) = sum_k a_k p_k(t); only the target token's probability enters the loss, so the K experts'
  target log-probabilities are computed once per held-out domain and every mixture is a
  log-sum-exp over them. Defined for the held-out losses (loss/<domain>, loss/mean).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval.suite import EvalSuite
from mergemix_jax.merge import ExpertStack
from mergemix_jax.model import forward, token_nll


def loss_interpolation(weights_NxK: np.ndarray, expert_metrics: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{metric: [N]} = weights [N, K] @ expert metric values [K]."""
    w = np.asarray(weights_NxK, np.float64)
    return {m: w @ np.asarray(v, np.float64) for m, v in expert_metrics.items()}


def _target_logprobs(model_cfg: ModelConfig, stack: ExpertStack, batch: dict) -> np.ndarray:
    """[K, N, L] log p_k(target) of each expert on one held-out batch."""

    @jax.jit
    def one(params: dict) -> jax.Array:
        logits = forward(model_cfg, params, batch["inputs"], batch["positions"], batch["segment_ids"])
        return -token_nll(logits, batch["targets"])

    experts = [jax.tree.map(lambda e, k=k: e[k], stack.experts) for k in range(stack.num_experts)]
    return np.stack([np.asarray(one(p), np.float64) for p in experts])


def output_space(model_cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite, weights_NxK: np.ndarray) -> dict[str, np.ndarray]:
    """{loss/<domain>, loss/mean: [N]} of the probability-averaged experts (see module doc)."""
    w = np.asarray(weights_NxK, np.float64)
    log_w = np.log(np.maximum(w, 1e-30))[:, :, None, None]  # [N, K, 1, 1]
    out = {}
    for domain, batch in suite.heldout.items():
        logp = _target_logprobs(model_cfg, stack, batch)  # [K, R, L]
        mask = np.asarray(batch["loss_mask"], np.float64)
        mixed = np.logaddexp.reduce(log_w + logp[None], axis=1)  # [N, R, L]
        out[f"loss/{domain}"] = -(mixed * mask).sum(axis=(1, 2)) / max(mask.sum(), 1.0)
    out["loss/mean"] = np.mean([out[f"loss/{d}"] for d in suite.heldout], axis=0)
    return out

