"""A plain-numpy Llama forward pass over Hugging Face-named tensors, the reference for interop tests.

Written from the Llama definition (RMSNorm, rotary, grouped-query causal attention, SwiGLU),
independently of mergemix_jax.model, so agreement checks the converters, not a shared bug.
"""

from __future__ import annotations

import math

import numpy as np


def rms_norm(x: np.ndarray, scale: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def llama3_scaled(freqs: np.ndarray, scaling: dict) -> np.ndarray:
    """Llama-3.1's rope frequency scaling, written as Meta's reference `apply_scaling` (one frequency
    at a time), the formula transformers' `_compute_llama3_parameters` vectorises."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            out.append(freq)
        elif wavelen > low_freq_wavelen:
            out.append(freq / factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            out.append((1 - smooth) * freq / factor + smooth * freq)
    return np.asarray(out)


def rotary(x_LxNxE: np.ndarray, theta: float, pairing: str, scaling: dict | None = None) -> np.ndarray:
    """pairing="half": (x[i], x[i+E/2]) as HF; "adjacent": (x[2i], x[2i+1]) as llama.cpp."""
    length, _, e = x_LxNxE.shape
    freqs = 1.0 / theta ** (np.arange(0, e, 2) / e)
    if scaling:
        freqs = llama3_scaled(freqs, scaling)
    angles = np.arange(length)[:, None, None] * freqs  # [L, 1, E/2]
    cos, sin = np.cos(angles), np.sin(angles)
    if pairing == "half":
        a, b = x_LxNxE[..., : e // 2], x_LxNxE[..., e // 2 :]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    a, b = x_LxNxE[..., 0::2], x_LxNxE[..., 1::2]
    out = np.empty_like(x_LxNxE)
    out[..., 0::2], out[..., 1::2] = a * cos - b * sin, b * cos + a * sin
    return out


def llama_logits(t: dict[str, np.ndarray], hf: dict, tokens_L: np.ndarray, pairing: str = "half") -> np.ndarray:
    """Logits [L, V] of one sequence; `t` holds HF tensors ([out, in] weights), `hf` is config.json."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    h, kv = hf["num_attention_heads"], hf["num_key_value_heads"]
    e = hf.get("head_dim") or hf["hidden_size"] // h
    eps, theta, scaling = hf["rms_norm_eps"], hf["rope_theta"], hf.get("rope_scaling")
    length = len(tokens_L)
    x = t["model.embed_tokens.weight"][tokens_L]
    causal = np.tril(np.ones((length, length), bool))
    for i in range(hf["num_hidden_layers"]):
        p = f"model.layers.{i}."
        y = rms_norm(x, t[p + "input_layernorm.weight"], eps)
        q = rotary((y @ t[p + "self_attn.q_proj.weight"].T).reshape(length, h, e), theta, pairing, scaling)
        k = rotary((y @ t[p + "self_attn.k_proj.weight"].T).reshape(length, kv, e), theta, pairing, scaling)
        v = (y @ t[p + "self_attn.v_proj.weight"].T).reshape(length, kv, e)
        k, v = np.repeat(k, h // kv, axis=1), np.repeat(v, h // kv, axis=1)
        scores = np.einsum("qhe,khe->hqk", q, k) / np.sqrt(e)
        scores = np.where(causal, scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = np.einsum("hqk,khe->qhe", probs, v).reshape(length, h * e)
        x = x + attn @ t[p + "self_attn.o_proj.weight"].T
        y = rms_norm(x, t[p + "post_attention_layernorm.weight"], eps)
        gate, up = y @ t[p + "mlp.gate_proj.weight"].T, y @ t[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ t[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, t["model.norm.weight"], eps)
    out = t["model.embed_tokens.weight"] if hf["tie_word_embeddings"] else t["lm_head.weight"]
    return x @ out.T


def random_llama(hf: dict, seed: int) -> dict[str, np.ndarray]:
    """Random float32 HF-named tensors for the architecture in config dict `hf`."""
    rng = np.random.default_rng(seed)
    d, f, v = hf["hidden_size"], hf["intermediate_size"], hf["vocab_size"]
    h, kv = hf["num_attention_heads"], hf["num_key_value_heads"]
    e = hf.get("head_dim") or d // h

    def w(*shape: int, std: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    t = {"model.embed_tokens.weight": w(v, d, std=1.0), "model.norm.weight": 1 + w(d)}
    if not hf["tie_word_embeddings"]:
        t["lm_head.weight"] = w(v, d)
    for i in range(hf["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t |= {
            p + "self_attn.q_proj.weight": w(h * e, d), p + "self_attn.k_proj.weight": w(kv * e, d),
            p + "self_attn.v_proj.weight": w(kv * e, d), p + "self_attn.o_proj.weight": w(d, h * e),
            p + "mlp.gate_proj.weight": w(f, d), p + "mlp.up_proj.weight": w(f, d), p + "mlp.down_proj.weight": w(d, f),
            p + "input_layernorm.weight": 1 + w(d), p + "post_attention_layernorm.weight": 1 + w(d),
        }  # fmt: skip
    return t


def tiny_hf_config(tie: bool = False, n_kv_heads: int = 2) -> dict:
    """config.json of a tiny LlamaForCausalLM (grouped-query attention by default)."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96, "hidden_size": 32,
        "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": n_kv_heads,
        "hidden_act": "silu", "max_position_embeddings": 64, "rope_theta": 500.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": tie, "torch_dtype": "float32",
    }  # fmt: skip


def random_params(cfg, seed: int) -> dict:
    """Random float32 parameters in our layout (numpy), shaped by `param_shapes` (no jit init)."""
    from mergemix_jax.model import param_shapes

    rng = np.random.default_rng(seed)
    shapes = param_shapes(cfg)
    return _map_shapes(shapes, lambda s: (rng.standard_normal(s.shape) * 0.2).astype(np.float32))


def _map_shapes(tree, fn):
    return {k: _map_shapes(v, fn) if isinstance(v, dict) else fn(v) for k, v in tree.items()}
