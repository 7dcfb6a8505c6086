"""Hugging Face Llama tensor names and shapes <-> our parameter dict, and config.json <-> ModelConfig.

HF (PyTorch `nn.Linear`) weights are [out, in]; ours keep the input dimension first and split
heads: q_proj [H*E, D] <-> wq_DxHxE [D, H, E], o_proj [D, H*E] <-> wo_HxExD [H, E, D].
Both use the half-split rotary convention, so no permutation is needed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from mergemix_jax.config import ModelConfig
from mergemix_jax.config.schema import RopeScaling

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
# Present in some older checkpoints; recomputed by every implementation, so safe to drop.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class InteropError(ValueError):
    """A checkpoint that cannot be converted; the message names the file, key and the fix."""


def model_config_from_hf(hf: Mapping[str, Any], source: str = "config.json", **overrides: Any) -> ModelConfig:
    """ModelConfig from a Hugging Face Llama config.json dict; `overrides` set our own fields."""
    model_type = hf.get("model_type", "llama")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise InteropError(f"{source}: model_type {model_type!r} is not a Llama-family model; supported: {SUPPORTED_MODEL_TYPES}")
    if hf.get("hidden_act", "silu") != "silu":
        raise InteropError(f"{source}: hidden_act {hf['hidden_act']!r} is not supported; the model uses SwiGLU (silu)")
    rope_scaling = rope_scaling_from_hf(hf.get("rope_scaling"), source)
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise InteropError(f"{source}: {flag}=true is not supported; the model has no bias terms")
    if hf.get("sliding_window") and model_type == "mistral":
        raise InteropError(f"{source}: sliding_window attention is not supported; set it to null if unused")
    try:
        n_heads = int(hf["num_attention_heads"])
        d_model = int(hf["hidden_size"])
        fields = dict(
            vocab_size=int(hf["vocab_size"]),
            d_model=d_model,
            n_layers=int(hf["num_hidden_layers"]),
            n_heads=n_heads,
            n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
            head_dim=int(hf.get("head_dim") or d_model // n_heads),
            d_ff=int(hf["intermediate_size"]),
            max_seq_len=int(hf.get("max_position_embeddings", 2048)),
            rope_theta=float(hf.get("rope_theta", 10_000.0)),
            rope_scaling=rope_scaling,
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
    except KeyError as err:
        raise InteropError(f"{source}: required key {err.args[0]!r} is missing") from None
    if fields["head_dim"] == d_model // n_heads:
        fields["head_dim"] = 0  # our "auto" value, so configs compare equal after a round trip
    return ModelConfig(**{**fields, **overrides})


def rope_scaling_from_hf(raw: Any, source: str) -> RopeScaling | None:
    """Our RopeScaling from config.json's `rope_scaling` (None when absent or "default"); other kinds
    (linear, dynamic, yarn, ...) are refused naming the key."""
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise InteropError(f"{source}: rope_scaling should be a mapping, got {raw!r}")
    kind = raw.get("rope_type", raw.get("type"))
    if kind == "default":
        return None
    if kind != "llama3":
        raise InteropError(f"{source}: rope_scaling of type {kind!r} is not supported; only Llama-3's (rope_type: llama3) is")
    try:
        fields = {f.name: type(f.default)(raw[f.name]) for f in dataclasses.fields(RopeScaling) if f.name != "rope_type"}
    except KeyError as err:
        raise InteropError(f"{source}: rope_scaling (llama3) needs the key {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:
        raise InteropError(f"{source}: rope_scaling has a value that is not a number ({err})") from None
    return RopeScaling(**fields)


def hf_config_from_model(cfg: ModelConfig, torch_dtype: str = "float32", token_ids: dict[str, int | None] | None = None) -> dict[str, Any]:
    """The config.json of a `LlamaForCausalLM` with the same architecture as `cfg`.

    `token_ids` ({"bos_token_id", "eos_token_id", "pad_token_id"}) are the run's tokenizer's: without
    them transformers assumes Llama's (bos 1, eos 2), which generation would then use.
    """
    return {
        **(token_ids or {}),
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.resolved_head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None if cfg.rope_scaling is None else dataclasses.asdict(cfg.rope_scaling),
        "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": torch_dtype,
    }


def _layer_names(i: int) -> dict[tuple[str, str], str]:
    prefix = f"model.layers.{i}."
    return {
        ("attn", "wq_DxHxE"): prefix + "self_attn.q_proj.weight",
        ("attn", "wk_DxKxE"): prefix + "self_attn.k_proj.weight",
        ("attn", "wv_DxKxE"): prefix + "self_attn.v_proj.weight",
        ("attn", "wo_HxExD"): prefix + "self_attn.o_proj.weight",
        ("mlp", "w_gate_DxF"): prefix + "mlp.gate_proj.weight",
        ("mlp", "w_up_DxF"): prefix + "mlp.up_proj.weight",
        ("mlp", "w_down_FxD"): prefix + "mlp.down_proj.weight",
        ("attn_norm", "scale"): prefix + "input_layernorm.weight",
        ("mlp_norm", "scale"): prefix + "post_attention_layernorm.weight",
    }


def hf_tensor_names(cfg: ModelConfig) -> list[str]:
    """Every tensor name a `LlamaForCausalLM` checkpoint of this shape holds."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not cfg.tie_embeddings:
        names.append("lm_head.weight")
    for i in range(cfg.n_layers):
        names.extend(_layer_names(i).values())
    return names


def _from_hf(ours: str, w: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """One HF tensor in our layout."""
    d, e = cfg.d_model, cfg.resolved_head_dim
    if ours == "wq_DxHxE":
        return w.T.reshape(d, cfg.n_heads, e)
    if ours in ("wk_DxKxE", "wv_DxKxE"):
        return w.T.reshape(d, cfg.n_kv_heads, e)
    if ours == "wo_HxExD":
        return w.T.reshape(cfg.n_heads, e, d)
    if ours in ("w_gate_DxF", "w_up_DxF", "w_down_FxD"):
        return w.T
    return w  # norm scales


def _to_hf(ours: str, w: np.ndarray) -> np.ndarray:
    """One of our tensors in the HF layout."""
    if ours in ("wq_DxHxE", "wk_DxKxE", "wv_DxKxE"):
        return w.reshape(w.shape[0], -1).T
    if ours == "wo_HxExD":
        return w.reshape(-1, w.shape[-1]).T
    if ours in ("w_gate_DxF", "w_up_DxF", "w_down_FxD"):
        return w.T
    return w


def _expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    d, f, v, e = cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.resolved_head_dim
    per_layer = {
        "q_proj": (cfg.n_heads * e, d), "k_proj": (cfg.n_kv_heads * e, d), "v_proj": (cfg.n_kv_heads * e, d),
        "o_proj": (d, cfg.n_heads * e), "gate_proj": (f, d), "up_proj": (f, d), "down_proj": (d, f),
        "input_layernorm": (d,), "post_attention_layernorm": (d,),
    }  # fmt: skip
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,), "lm_head.weight": (v, d)}
    for name in hf_tensor_names(cfg):
        if name.startswith("model.layers."):
            shapes[name] = per_layer[name.split(".")[-2]]
    return shapes


def check_hf_tensors(names_and_shapes: Mapping[str, tuple[int, ...]], cfg: ModelConfig, source: str) -> None:
    """Raise InteropError naming every missing, unexpected or mis-shaped tensor."""
    expected = _expected_shapes(cfg)
    needed = set(hf_tensor_names(cfg))
    present = {n for n in names_and_shapes if not n.endswith(IGNORED_SUFFIXES)}
    if cfg.tie_embeddings:
        present.discard("lm_head.weight")  # some tied checkpoints store a copy; the embedding wins
    problems = []
    if missing := sorted(needed - present):
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra := sorted(present - needed):
        problems.append(f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''} (biases or another architecture?)")
    for name in sorted(needed & present):
        if tuple(names_and_shapes[name]) != expected[name]:
            problems.append(f"{name} has shape {tuple(names_and_shapes[name])}, config.json implies {expected[name]}")
    if problems:
        raise InteropError(f"{source}: " + "; ".join(problems))


def params_from_hf(get_tensor, cfg: ModelConfig, convert=np.asarray) -> dict:
    """Our parameter dict from a `get_tensor(hf_name) -> np.ndarray` callable.

    `convert(array, path)` places each converted leaf (e.g. casts, or shards on a mesh);
    tensors are fetched one at a time so peak host memory stays near one tensor.
    """
    def leaf(hf_name: str, ours: str, path: tuple) -> Any:
        return convert(_from_hf(ours, np.asarray(get_tensor(hf_name)), cfg), path)

    params: dict = {
        "embed_VxD": leaf("model.embed_tokens.weight", "embed_VxD", ("embed_VxD",)),
        "final_norm": {"scale": leaf("model.norm.weight", "scale", ("final_norm", "scale"))},
        "blocks": {},
    }
    if not cfg.tie_embeddings:
        params["unembed_DxV"] = convert(np.asarray(get_tensor("lm_head.weight")).T, ("unembed_DxV",))
    for i in range(cfg.n_layers):
        block: dict = {}
        for (module, ours), hf_name in _layer_names(i).items():
            block.setdefault(module, {})[ours] = leaf(hf_name, ours, ("blocks", i, module, ours))
        params["blocks"][i] = block
    return params


def hf_from_params(params: Mapping[str, Any], cfg: ModelConfig, to_numpy=np.asarray) -> dict[str, np.ndarray]:
    """HF-named tensors ([out, in] layout, contiguous) from our parameter dict."""
    def get(x, ours: str) -> np.ndarray:
        return np.ascontiguousarray(_to_hf(ours, to_numpy(x)))

    tensors = {
        "model.embed_tokens.weight": get(params["embed_VxD"], "embed_VxD"),
        "model.norm.weight": get(params["final_norm"]["scale"], "scale"),
    }
    if not cfg.tie_embeddings:
        tensors["lm_head.weight"] = np.ascontiguousarray(to_numpy(params["unembed_DxV"]).T)
    for i in range(cfg.n_layers):
        block = params["blocks"][i]
        for (module, ours), hf_name in _layer_names(i).items():
            tensors[hf_name] = get(block[module][ours], ours)
    return tensors
