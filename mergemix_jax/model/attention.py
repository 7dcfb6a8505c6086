"""Causal grouped-query attention over packed documents, through `jax.nn.dot_product_attention`.

Shape letters: B batch, L (query) and S (key) sequence, H query heads, K key/value heads, E head
size, C query block. Packed rows carry segment ids: a token attends to earlier tokens of its own
document only (id 0 marks padding, which attends to earlier padding, so no row is empty).

With `block` > 0 the queries are processed `block` at a time (a `lax.map` whose body is
rematerialised), so the float32 scores held at once are [B, H, C, S] instead of [B, H, L, S], in
the forward pass and in the backward pass (memory-efficient attention, Rabe & Staats 2021). The
result is the same function; only the memory and the order of the float sums change.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def document_mask(segment_q_BxC: jax.Array, segment_k_BxS: jax.Array) -> jax.Array:
    """[B, 1, C, S] True where query and key lie in the same packed document."""
    return (segment_q_BxC[:, :, None] == segment_k_BxS[:, None, :])[:, None]


def causal_attention(
    q_BxLxHxE: jax.Array,
    k_BxSxKxE: jax.Array,
    v_BxSxKxE: jax.Array,
    segment_ids_BxL: jax.Array | None = None,
    block: int = 0,
) -> jax.Array:
    """Causal attention output [B, L, H, E]; H a multiple of K (GQA); `segment_ids_BxL` None = one
    document per row. `block` > 0 bounds the scores held at once to `block` queries (L need not be
    a multiple: the last block is padded)."""
    batch, length = q_BxLxHxE.shape[:2]
    if not block or block >= length:
        mask = None if segment_ids_BxL is None else document_mask(segment_ids_BxL, segment_ids_BxL)
        return jax.nn.dot_product_attention(q_BxLxHxE, k_BxSxKxE, v_BxSxKxE, mask=mask, is_causal=True)
    segments_BxL = jnp.ones((batch, length), jnp.int32) if segment_ids_BxL is None else segment_ids_BxL
    n_blocks = -(-length // block)
    pad = n_blocks * block - length  # padded queries are computed and dropped
    q_BxPxHxE = jnp.pad(q_BxLxHxE, ((0, 0), (0, pad), (0, 0), (0, 0)))
    q_NxBxCxHxE = jnp.moveaxis(q_BxPxHxE.reshape(batch, n_blocks, block, *q_BxLxHxE.shape[2:]), 1, 0)
    seg_NxBxC = jnp.moveaxis(jnp.pad(segments_BxL, ((0, 0), (0, pad))).reshape(batch, n_blocks, block), 1, 0)
    key_pos_S = jnp.arange(length)

    @jax.checkpoint
    def one_block(args):
        index, q_BxCxHxE, seg_q_BxC = args
        query_pos_C = index * block + jnp.arange(block)
        causal_1x1xCxS = (key_pos_S[None, :] <= query_pos_C[:, None])[None, None]
        mask = document_mask(seg_q_BxC, segments_BxL) & causal_1x1xCxS
        return jax.nn.dot_product_attention(q_BxCxHxE, k_BxSxKxE, v_BxSxKxE, mask=mask)

    out_NxBxCxHxE = jax.lax.map(one_block, (jnp.arange(n_blocks), q_NxBxCxHxE, seg_NxBxC))
    return jnp.moveaxis(out_NxBxCxHxE, 0, 1).reshape(q_BxPxHxE.shape)[:, :length]
