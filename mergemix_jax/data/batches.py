"""Batches of whole, unpacked sequences (one document per row), in the batch format."""

from __future__ import annotations

import numpy as np


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
