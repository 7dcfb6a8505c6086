"""Building blocks of a Llama-style decoder: RMSNorm, rotary embeddings, attention, SwiGLU.

Shape letters: B batch, L sequence, D model width, H query heads, K key/value heads,
E head size, F feed-forward width, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mergemix_jax.config import ModelConfig
from mergemix_jax.config.schema import RopeScaling
from mergemix_jax.model.attention import causal_attention
from mergemix_jax.parallel.partitioning import constrain


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], logical_axes: tuple[str, ...], std: float) -> nnx.Param:
    """A float32 parameter drawn from N(0, std^2), annotated with its logical axes."""
    init = nnx.initializers.normal(std)
    return nnx.Param(init(rngs.params(), shape, jnp.float32), out_sharding=logical_axes)


class RMSNorm(nnx.Module):
    """x / rms(x) * scale, computed in float32."""

    def __init__(self, dim: int, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("norm",))
        self.eps = eps

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        x = x_BxLxD.astype(jnp.float32)
        normed = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (normed * self.scale[...]).astype(x_BxLxD.dtype)


def rotary_frequencies(half: int, theta: float, scaling: RopeScaling | None = None) -> jax.Array:
    """Inverse frequencies [E/2] of the rotary pairs; with `scaling`, Llama-3's: wavelengths longer
    than original / low_freq_factor are stretched by `factor`, shorter than original /
    high_freq_factor kept, and those between interpolated smoothly."""
    freqs_E2 = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    if scaling is None:
        return freqs_E2
    original, low, high = scaling.original_max_position_embeddings, scaling.low_freq_factor, scaling.high_freq_factor
    wavelength_E2 = 2 * jnp.pi / freqs_E2
    smooth_E2 = (original / wavelength_E2 - low) / (high - low)
    between_E2 = (1 - smooth_E2) * freqs_E2 / scaling.factor + smooth_E2 * freqs_E2
    scaled_E2 = jnp.where(wavelength_E2 > original / low, freqs_E2 / scaling.factor, between_E2)
    return jnp.where(wavelength_E2 < original / high, freqs_E2, scaled_E2)


def apply_rotary(x_BxLxNxE: jax.Array, positions_BxL: jax.Array, theta: float, scaling: RopeScaling | None = None) -> jax.Array:
    """Rotary position embedding, half-split convention (as Hugging Face Llama checkpoints)."""
    half = x_BxLxNxE.shape[-1] // 2
    freqs_E2 = rotary_frequencies(half, theta, scaling)
    angles_BxLx1xE2 = (positions_BxL.astype(jnp.float32)[..., None] * freqs_E2)[:, :, None, :]
    sin, cos = jnp.sin(angles_BxLx1xE2), jnp.cos(angles_BxLx1xE2)
    x = x_BxLxNxE.astype(jnp.float32)
    first, second = x[..., :half], x[..., half:]
    rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return rotated.astype(x_BxLxNxE.dtype)


class Attention(nnx.Module):
    """Multi-head attention with optional grouped-query key/value heads."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, h, k, e = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.resolved_head_dim
        self.wq_DxHxE = _param(rngs, (d, h, e), ("embed", "q_heads", "head_dim"), cfg.init_std)
        self.wk_DxKxE = _param(rngs, (d, k, e), ("embed", "kv_heads", "head_dim"), cfg.init_std)
        self.wv_DxKxE = _param(rngs, (d, k, e), ("embed", "kv_heads", "head_dim"), cfg.init_std)
        self.wo_HxExD = _param(rngs, (h, e, d), ("q_heads", "head_dim", "embed"), cfg.init_std / (2 * cfg.n_layers) ** 0.5)
        self.rope_theta, self.rope_scaling = cfg.rope_theta, cfg.rope_scaling
        self.block = cfg.attention_block

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array | None) -> jax.Array:
        dtype = x_BxLxD.dtype
        q = jnp.einsum("bld,dhe->blhe", x_BxLxD, self.wq_DxHxE[...].astype(dtype))
        k = jnp.einsum("bld,dke->blke", x_BxLxD, self.wk_DxKxE[...].astype(dtype))
        v = jnp.einsum("bld,dke->blke", x_BxLxD, self.wv_DxKxE[...].astype(dtype))
        q = constrain(apply_rotary(q, positions_BxL, self.rope_theta, self.rope_scaling), ("batch", "seq", "q_heads", "head_dim"))
        k = constrain(apply_rotary(k, positions_BxL, self.rope_theta, self.rope_scaling), ("batch", "seq", "kv_heads", "head_dim"))
        out_BxLxHxE = causal_attention(q, k, v, segment_ids_BxL, self.block)
        return jnp.einsum("blhe,hed->bld", out_BxLxHxE, self.wo_HxExD[...].astype(dtype))


class SwiGLU(nnx.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.d_ff
        self.w_gate_DxF = _param(rngs, (d, f), ("embed", "mlp"), cfg.init_std)
        self.w_up_DxF = _param(rngs, (d, f), ("embed", "mlp"), cfg.init_std)
        self.w_down_FxD = _param(rngs, (f, d), ("mlp", "embed"), cfg.init_std / (2 * cfg.n_layers) ** 0.5)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dtype = x_BxLxD.dtype
        gate = jnp.einsum("bld,df->blf", x_BxLxD, self.w_gate_DxF[...].astype(dtype))
        up = jnp.einsum("bld,df->blf", x_BxLxD, self.w_up_DxF[...].astype(dtype))
        hidden_BxLxF = constrain(jax.nn.silu(gate) * up, ("batch", "seq", "mlp"))
        return jnp.einsum("blf,fd->bld", hidden_BxLxF, self.w_down_FxD[...].astype(dtype))


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg, rngs)

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array | None) -> jax.Array:
        x = x_BxLxD + self.attn(self.attn_norm(x_BxLxD), positions_BxL, segment_ids_BxL)
        x = x + self.mlp(self.mlp_norm(x))
        return constrain(x, ("batch", "seq", "embed_act"))
