"""Next-token cross-entropy with a loss mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def token_nll(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """Negative log-likelihood of each target token, [B, L] float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV.astype(jnp.float32), targets_BxL)


def masked_mean(values_BxL: jax.Array, mask_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean over masked positions, number of masked positions); the mean is 0 if none."""
    mask = mask_BxL.astype(jnp.float32)
    count = mask.sum()
    return (values_BxL * mask).sum() / jnp.maximum(count, 1.0), count
