"""The decoder-only language model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mergemix_jax.config import ModelConfig
from mergemix_jax.model.layers import Block, RMSNorm, _param
from mergemix_jax.parallel.partitioning import constrain


def _remat_scan(blocks: nnx.List, policy: str, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL) -> jax.Array:
    """The blocks as one `lax.scan` over their stacked parameters, each step rematerialised: the
    backward pass recomputes one block at a time by construction, so only the blocks' inputs are
    stored (on any backend's scheduler), and the block is traced and compiled once."""
    graphdef = nnx.graphdef(blocks[0])
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[nnx.state(b) for b in blocks])

    def step(h_BxLxD, state):
        return nnx.merge(graphdef, state)(h_BxLxD, positions_BxL, segment_ids_BxL), None

    saved = None if policy == "full" else getattr(jax.checkpoint_policies, policy)  # model.remat_policy (validated)
    x, _ = jax.lax.scan(jax.checkpoint(step, policy=saved), x_BxLxD, stacked)
    return x


class Transformer(nnx.Module):
    """Llama-style LM: token embedding, N pre-norm blocks, final norm, (tied) output projection."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_VxD = _param(rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg.init_std)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.unembed_DxV = _param(rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), cfg.init_std)

    def __call__(
        self,
        tokens_BxL: jax.Array,
        positions_BxL: jax.Array | None = None,
        segment_ids_BxL: jax.Array | None = None,
    ) -> jax.Array:
        """Float32 next-token logits [B, L, V]. Positions default to 0..L-1, one document per row."""
        dtype = jnp.dtype(self.cfg.compute_dtype)
        batch, length = tokens_BxL.shape
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(length), (batch, length))
        embed = self.embed_VxD[...]
        # The lookup gathers the whole table (as FSDP gathers any weight before use).
        table = constrain(embed, (None, None))
        x = constrain(jnp.take(table, tokens_BxL, axis=0).astype(dtype), ("batch", "seq", "embed_act"))
        if self.cfg.remat:
            x = _remat_scan(self.blocks, self.cfg.remat_policy, x, positions_BxL, segment_ids_BxL)
        else:
            for block in self.blocks:
                x = block(x, positions_BxL, segment_ids_BxL)
        x = self.final_norm(x)
        if self.cfg.tie_embeddings:
            logits = jnp.einsum("bld,vd->blv", x, embed.astype(dtype))
        else:
            logits = jnp.einsum("bld,dv->blv", x, self.unembed_DxV[...].astype(dtype))
        return constrain(logits.astype(jnp.float32), ("batch", "seq", "vocab"))
