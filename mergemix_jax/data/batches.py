"""The batch format, defined once, and batches of whole, unpacked sequences (one document per row).

A batch is a dict of [B, L] arrays (numpy on the host, jax.Array on device): inputs, targets,
positions, segment_ids int32; loss_mask float32. The data pipeline yields it, the train step and
the evaluation suite take it, task items are tokenised into it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import jax

BATCH_KEYS = ("inputs", "targets", "positions", "segment_ids", "loss_mask")
Batch = dict[str, "np.ndarray | jax.Array"]  # BATCH_KEYS -> [B, L]


def batch_from_sequences(tokens_BxL1: np.ndarray, loss_mask_BxL: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """[B, L+1] tokens -> inputs/targets/positions/segment_ids/loss_mask, each [B, L].

    Every row is one document starting at position 0 (no packing), scored everywhere unless
    `loss_mask_BxL` says otherwise. For benchmarks, tests and fixed evaluation sets.
    """
    tokens = np.asarray(tokens_BxL1, np.int32)
    rows, length = tokens.shape[0], tokens.shape[1] - 1
    return {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "positions": np.tile(np.arange(length, dtype=np.int32), (rows, 1)),
        "segment_ids": np.ones((rows, length), np.int32),
        "loss_mask": np.ones((rows, length), np.float32) if loss_mask_BxL is None else np.asarray(loss_mask_BxL, np.float32),
    }
