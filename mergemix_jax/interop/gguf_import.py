"""Import a Llama-family GGUF file (llama.cpp format): architecture, dequantized weights, tokenizer.

The `gguf` package reads the file and dequantizes (Q4_0, Q4_1, Q8_0, K-quants, F16, ...).
llama.cpp's converter reorders the rows of q/k projections so rotary pairs are adjacent
(x[2i], x[2i+1]); our model uses the half-split pairing (x[i], x[i+E/2]) as Hugging Face does,
so that reordering is undone here and the rest reuses the Hugging Face layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import jax
import numpy as np
from gguf.quants import dequantize

from mergemix_jax.config import ModelConfig
from mergemix_jax.interop.hf import _leaf_placer
from mergemix_jax.interop.llama_layout import (
    InteropError,
    check_hf_tensors,
    hf_tensor_names,
    model_config_from_hf,
    params_from_hf,
)

TOKEN_TYPE_CONTROL = 3  # gguf.TokenType.CONTROL: special tokens such as <|im_start|>


@dataclass
class GGUFTokenizerInfo:
    """The tokenizer stored in a GGUF file; `tokenizer` is a `tokenizers.Tokenizer` (or None)."""

    model: str  # tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (sentencepiece), ...
    pre: str  # tokenizer.ggml.pre: llama.cpp's name for the pre-tokenizer regex
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    chat_template: str | None
    tokenizer: Any = None
    special_tokens: list[str] = field(default_factory=list)


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def unpermute_rotary_rows(w_OxD: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation: per head, rows (pair, 2) -> (2, pair)."""
    out, d = w_OxD.shape
    return w_OxD.reshape(n_heads, out // n_heads // 2, 2, d).swapaxes(1, 2).reshape(out, d)


def permute_rotary_rows(w_OxD: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (HF half-split -> adjacent pairs); the inverse of the above."""
    out, d = w_OxD.shape
    return w_OxD.reshape(n_heads, 2, out // n_heads // 2, d).swapaxes(1, 2).reshape(out, d)


def _hf_config_from_gguf(reader: gguf.GGUFReader, source: str, arch: str) -> dict:
    def key(template: str, default: Any = None) -> Any:
        value = _field(reader, template.format(arch=arch), default)
        if value is None:
            raise InteropError(f"{source}: metadata key {template.format(arch=arch)!r} is missing")
        return value

    n_heads = int(key(gguf.Keys.Attention.HEAD_COUNT))
    d_model = int(key(gguf.Keys.LLM.EMBEDDING_LENGTH))
    names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in names:
        raise InteropError(
            f"{source}: has rope_freqs (Llama-3.1-style rope scaling), which GGUF import does not read; "
            "import the Hugging Face safetensors checkpoint instead (its config.json rope_scaling is supported)"
        )
    vocab = _field(reader, gguf.Keys.LLM.VOCAB_SIZE.format(arch=arch))
    if vocab is None:
        vocab = len(_field(reader, gguf.Keys.Tokenizer.LIST, []))
    return {
        "model_type": "llama",
        "vocab_size": int(vocab),
        "hidden_size": d_model,
        "num_hidden_layers": int(key(gguf.Keys.LLM.BLOCK_COUNT)),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(key(gguf.Keys.Attention.HEAD_COUNT_KV, n_heads)),
        "head_dim": int(key(gguf.Keys.Attention.KEY_LENGTH, key(gguf.Keys.Rope.DIMENSION_COUNT, d_model // n_heads))),
        "intermediate_size": int(key(gguf.Keys.LLM.FEED_FORWARD_LENGTH)),
        "max_position_embeddings": int(key(gguf.Keys.LLM.CONTEXT_LENGTH, 2048)),
        "rope_theta": float(key(gguf.Keys.Rope.FREQ_BASE, 10_000.0)),
        "rms_norm_eps": float(key(gguf.Keys.Attention.LAYERNORM_RMS_EPS)),
        "tie_word_embeddings": "output.weight" not in names,
    }


def gguf_tokenizer(reader: gguf.GGUFReader) -> GGUFTokenizerInfo:
    """The file's tokenizer; byte-level BPE ("gpt2") files become a `tokenizers.Tokenizer`."""
    tokens = _field(reader, gguf.Keys.Tokenizer.LIST, [])
    types = _field(reader, gguf.Keys.Tokenizer.TOKEN_TYPE, [])
    info = GGUFTokenizerInfo(
        model=_field(reader, gguf.Keys.Tokenizer.MODEL, ""),
        pre=_field(reader, gguf.Keys.Tokenizer.PRE, "default"),
        bos_id=_field(reader, gguf.Keys.Tokenizer.BOS_ID),
        eos_id=_field(reader, gguf.Keys.Tokenizer.EOS_ID),
        add_bos=bool(_field(reader, gguf.Keys.Tokenizer.ADD_BOS, False)),
        chat_template=_field(reader, gguf.Keys.Tokenizer.CHAT_TEMPLATE),
        special_tokens=[t for t, kind in zip(tokens, types, strict=False) if kind == TOKEN_TYPE_CONTROL],
    )
    if info.model == "gpt2" and tokens:
        info.tokenizer = _byte_level_bpe(tokens, _field(reader, gguf.Keys.Tokenizer.MERGES, []), info)
    return info


def _byte_level_bpe(tokens: list[str], merges: list[str], info: GGUFTokenizerInfo):
    """A `tokenizers` byte-level BPE with the pre-tokenizer llama.cpp names in `info.pre`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    bpe = models.BPE(
        vocab={tok: i for i, tok in enumerate(tokens)},
        merges=[tuple(m.split(" ", 1)) for m in merges],
        fuse_unk=False,
    )
    tokenizer = Tokenizer(bpe)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if info.pre in ("smollm", "starcoder", "refact"):  # digits split one by one before GPT-2's regex
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(info.special_tokens)
    return tokenizer


def import_gguf(
    path: str | os.PathLike,
    *,
    dtype: Any = np.float32,
    mesh: jax.sharding.Mesh | None = None,
    **model_overrides: Any,
) -> tuple[ModelConfig, dict, GGUFTokenizerInfo]:
    """(ModelConfig, params, tokenizer info) from a Llama-architecture GGUF file.

    Quantized tensors are dequantized to `dtype`; `model_overrides` set our own ModelConfig
    fields (e.g. compute_dtype="bfloat16"); with `mesh` the params come back sharded.
    """
    source = str(path)
    if not Path(path).is_file():
        raise InteropError(f"{source}: no such GGUF file")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as err:
        raise InteropError(f"{source}: not a readable GGUF file ({err})") from None
    arch = _field(reader, gguf.Keys.General.ARCHITECTURE)
    if arch != "llama":
        raise InteropError(f"{source}: general.architecture is {arch!r}; only 'llama' GGUF files are supported")
    cfg = model_config_from_hf(_hf_config_from_gguf(reader, source, arch), source, **model_overrides)

    by_gguf_name = {t.name: t for t in reader.tensors}
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.n_layers)
    hf_to_gguf = {hf: name_map.get_name(hf, try_suffixes=(".weight",)) for hf in hf_tensor_names(cfg)}
    shapes = {hf: tuple(int(s) for s in reversed(by_gguf_name[g].shape)) for hf, g in hf_to_gguf.items() if g in by_gguf_name}
    check_hf_tensors(shapes, cfg, source)

    def get_tensor(hf_name: str) -> np.ndarray:
        t = by_gguf_name[hf_to_gguf[hf_name]]
        w = dequantize(t.data, t.tensor_type).reshape(tuple(int(s) for s in reversed(t.shape)))
        if hf_name.endswith("q_proj.weight"):
            w = unpermute_rotary_rows(w, cfg.n_heads)
        elif hf_name.endswith("k_proj.weight"):
            w = unpermute_rotary_rows(w, cfg.n_kv_heads)
        return w

    params = params_from_hf(get_tensor, cfg, _leaf_placer(cfg, dtype, mesh))
    return cfg, params, gguf_tokenizer(reader)
