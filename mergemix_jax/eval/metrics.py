"""Scores of one model on fixed token arrays: held-out loss, multiple-choice and exact-answer metrics.

Each hard metric has a smooth twin usable under jax.grad: accuracy -> cross-entropy of the correct
choice under a softmax over the choices' log-likelihoods; exact match -> the answer's NLL.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mergemix_jax.config import ModelConfig
from mergemix_jax.model import forward, token_nll


def _rows_nll(cfg: ModelConfig, params: dict, batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    logits_NxLxV = forward(cfg, params, batch["inputs"], batch["positions"], batch["segment_ids"])
    mask_NxL = batch["loss_mask"].astype(jnp.float32)
    nll_NxL = token_nll(logits_NxLxV, batch["targets"]) * mask_NxL
    greedy_ok_NxL = (jnp.argmax(logits_NxLxV, axis=-1) == batch["targets"]) | (mask_NxL == 0)
    return nll_NxL.sum(axis=1), mask_NxL.sum(axis=1), jnp.all(greedy_ok_NxL, axis=1)


def sequence_nll(cfg: ModelConfig, params: dict, batch: dict, micro_batch: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per row of a batch-format dict [N, L]: (summed NLL over loss_mask [N], masked token count [N],
    whether greedy decoding reproduces every masked target [N]). `micro_batch` > 0 runs the rows
    in sequential slices of that size (lax.map) to bound activation memory."""
    rows = batch["inputs"].shape[0]
    if not micro_batch or rows <= micro_batch:
        return _rows_nll(cfg, params, batch)
    steps = -(-rows // micro_batch)
    pad = steps * micro_batch - rows

    def split(x):
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        return x.reshape(steps, micro_batch, *x.shape[1:])

    out = jax.lax.map(lambda b: _rows_nll(cfg, params, b), {k: split(v) for k, v in batch.items()})
    return tuple(x.reshape(-1)[:rows] for x in out)  # type: ignore[return-value]


def heldout_loss(nll_sum_N: jax.Array, count_N: jax.Array) -> jax.Array:
    """Token-weighted mean NLL (nats per token) over all rows."""
    return nll_sum_N.sum() / jnp.maximum(count_N.sum(), 1.0)


def choice_metrics(ll_NxC: jax.Array, len_NxC: jax.Array, choice_mask_NxC: jax.Array, answer_N: jax.Array) -> dict:
    """Multiple-choice scores from continuation log-likelihoods [N, C].

    acc / acc_norm: argmax of summed / per-token log-likelihood hits the answer (mean over items);
    ce / ce_norm: their smooth forms, the mean cross-entropy of the answer under a softmax over choices.
    """
    out = {}
    for suffix, scores in (("", ll_NxC), ("_norm", ll_NxC / jnp.maximum(len_NxC, 1.0))):
        masked = jnp.where(choice_mask_NxC, scores, -jnp.inf)
        out[f"acc{suffix}"] = jnp.mean(jnp.argmax(masked, axis=1) == answer_N)
        log_probs = jax.nn.log_softmax(masked, axis=1)
        out[f"ce{suffix}"] = -jnp.mean(jnp.take_along_axis(log_probs, answer_N[:, None], axis=1))
    return out


def answer_metrics(nll_sum_N: jax.Array, count_N: jax.Array, greedy_ok_N: jax.Array) -> dict:
    """Exact-answer scores: answer_nll = mean per-token NLL of the reference answer (smooth);
    exact = share of items whose answer greedy decoding reproduces token for token (teacher-forced)."""
    return {"answer_nll": jnp.mean(nll_sum_N / jnp.maximum(count_N, 1.0)), "exact": jnp.mean(greedy_ok_N.astype(jnp.float32))}
