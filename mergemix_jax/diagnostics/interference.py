"""Before trusting the proxy: how much do the experts' task vectors interfere?

Two diagnostics over an ExpertStack whose expert k was trained on domain k:

- cosine[j, l] = <g_j, g_l> / (|g_j| |g_l|) with g_j = expert_j - base (the task vector), over all
  parameters. Near-orthogonal task vectors merge with little interference.
- curvature ratio (MergeMix): with H_k the Hessian of domain k's held-out loss L_k at the BASE
  parameters and g_j the task vector of expert j,

      gamma[k, j] = (|H_k g_j| / |g_j|) / (|H_k g_k| / |g_k|).

  gamma[k, k] = 1. gamma[k, j] is how strongly moving along expert j's direction bends domain k's
  loss, relative to domain k's own expert. Small off-diagonal gammas mean L_k(base + sum_j a_j g_j)
  is governed by a_k alone to second order: the merged proxy separates the domains and the
  mixture ranking it produces is trustworthy; gammas near or above 1 flag cross-domain interference.
  H_k v is a Hessian-vector product, jax.jvp of jax.grad(L_k) at the base along v (never forming H).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval.metrics import heldout_loss, sequence_nll
from mergemix_jax.eval.suite import EvalSuite
from mergemix_jax.merge import ExpertStack, deltas_f32


def _flat_deltas(stack: ExpertStack) -> jax.Array:
    """[K, P] float32 task vectors."""
    deltas = deltas_f32(stack)
    return jnp.concatenate([d.reshape(d.shape[0], -1) for d in jax.tree.leaves(deltas)], axis=1)


def task_vector_cosines(stack: ExpertStack) -> np.ndarray:
    """[K, K] cosine similarity of the experts' task vectors (see module doc)."""
    g_KxP = _flat_deltas(stack)
    norms = jnp.linalg.norm(g_KxP, axis=1)
    return np.asarray((g_KxP @ g_KxP.T) / jnp.maximum(norms[:, None] * norms[None, :], 1e-30), np.float64)


def domain_loss_fn(model_cfg: ModelConfig, batch: dict, micro_batch: int = 0):
    """params -> held-out loss (nats/token) of one batch-format dict [N, L]."""

    def loss(params: dict) -> jax.Array:
        nll, count, _ = sequence_nll(model_cfg, params, batch, micro_batch)
        return heldout_loss(nll, count)

    return loss


def hvp(loss_fn, params: dict, vector: dict) -> dict:
    """H v with H the Hessian of loss_fn at params: forward-over-reverse (jax.jvp of jax.grad)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


def _tree_norm(tree: dict) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def hvp_norms(model_cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite) -> np.ndarray:
    """[K, K]: |H_k g_j| for the held-out domain k (rows, in stack order) and expert j (columns)."""
    missing = [n for n in stack.names if n not in suite.heldout]
    if missing:
        raise ValueError(f"curvature ratios need a held-out batch per expert's domain; the suite lacks {missing} (has {sorted(suite.heldout)})")
    base = jax.tree.map(lambda x: x.astype(jnp.float32), stack.base)
    deltas = deltas_f32(stack)

    @jax.jit  # one compile: every domain batch has the same shape
    def norm_of_hvp(base: dict, deltas: dict, batch: dict, j: jax.Array) -> jax.Array:
        loss_fn = domain_loss_fn(model_cfg, batch, suite.micro_batch)
        return _tree_norm(hvp(loss_fn, base, jax.tree.map(lambda d: d[j], deltas)))

    out = np.zeros((stack.num_experts, stack.num_experts))
    for k, name in enumerate(stack.names):
        for j in range(stack.num_experts):
            out[k, j] = float(norm_of_hvp(base, deltas, suite.heldout[name], jnp.int32(j)))
    return out


def curvature_ratios(model_cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite) -> dict[str, np.ndarray]:
    """{"gamma": [K, K] (see module doc), "hvp_norms": |H_k g_j|, "task_norms": |g_j| [K]}."""
    norms = hvp_norms(model_cfg, stack, suite)
    g = np.asarray(jnp.linalg.norm(_flat_deltas(stack), axis=1), np.float64)
    per_unit = norms / np.maximum(g[None, :], 1e-30)  # |H_k g_j| / |g_j|
    gamma = per_unit / np.maximum(np.diag(per_unit)[:, None], 1e-30)
    return {"gamma": gamma, "hvp_norms": norms, "task_norms": g}


def diagnostics(model_cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite) -> dict:
    """Both diagnostics as a JSON-able dict keyed by expert names."""
    curv = curvature_ratios(model_cfg, stack, suite)
    return {
        "names": list(stack.names),
        "cosine": task_vector_cosines(stack).tolist(),
        "gamma": curv["gamma"].tolist(),
        "hvp_norms": curv["hvp_norms"].tolist(),
        "task_norms": curv["task_norms"].tolist(),
        "definition": "gamma[k][j] = (|H_k g_j|/|g_j|) / (|H_k g_k|/|g_k|), H_k = Hessian of domain k's held-out loss at the base, g_j = expert_j - base",
    }
