"""GGUF import: a tiny random Llama written as GGUF by the test, checked against llama.cpp's maths."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

gguf = pytest.importorskip("gguf", reason="needs the 'interop' extra: pip install -e .[interop]")
from gguf.quants import dequantize, quantize  # noqa: E402

from mergemix_jax.interop import InteropError, import_gguf  # noqa: E402
from mergemix_jax.interop.gguf_import import permute_rotary_rows, unpermute_rotary_rows  # noqa: E402
from mergemix_jax.model import forward  # noqa: E402
from tests.interop_reference import llama_logits, random_llama, tiny_hf_config  # noqa: E402

TOKENS = np.array([[3, 17, 42, 5, 88, 1, 60, 9, 33, 71, 2, 95]], np.int32)
# byte-level BPE symbols: 'Ġ' is the space byte, printable ASCII maps to itself
VOCAB = ["Ġ", *(chr(c) for c in range(33, 126)), "Ġt", "<|end|>"]


def write_gguf(path, hf: dict, tensors: dict, qtype, tokenizer_model: str = "gpt2") -> dict:
    """Write `tensors` (taken as already in llama.cpp's layout) to GGUF; return what the file holds."""
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_block_count(hf["num_hidden_layers"])
    writer.add_context_length(hf["max_position_embeddings"])
    writer.add_embedding_length(hf["hidden_size"])
    writer.add_feed_forward_length(hf["intermediate_size"])
    writer.add_head_count(hf["num_attention_heads"])
    writer.add_head_count_kv(hf["num_key_value_heads"])
    writer.add_rope_freq_base(hf["rope_theta"])
    writer.add_layer_norm_rms_eps(hf["rms_norm_eps"])
    writer.add_vocab_size(hf["vocab_size"])
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(VOCAB)
    writer.add_token_types([1] * (len(VOCAB) - 1) + [3])
    writer.add_token_merges(["Ġ t"])
    writer.add_eos_token_id(len(VOCAB) - 1)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hf["num_hidden_layers"])
    stored = {}
    for hf_name, w in tensors.items():
        name = name_map.get_name(hf_name, try_suffixes=(".weight",))
        if w.ndim == 2 and w.shape[1] % 32 == 0 and qtype != gguf.GGMLQuantizationType.F32:
            q = quantize(w, qtype)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
            stored[hf_name] = dequantize(q, qtype)
        else:
            writer.add_tensor(name, w)
            stored[hf_name] = w
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_gguf_import_reproduces_llama_cpp_forward(tmp_path, qtype):
    hf = {**tiny_hf_config(tie=qtype == "Q8_0"), "intermediate_size": 64}
    stored = write_gguf(tmp_path / "m.gguf", hf, random_llama(hf, seed=7), gguf.GGMLQuantizationType[qtype])
    cfg, params, tok = import_gguf(tmp_path / "m.gguf")
    assert (cfg.n_layers, cfg.n_kv_heads, cfg.d_ff, cfg.tie_embeddings) == (2, 2, 64, qtype == "Q8_0")
    ours = np.asarray(jax.jit(lambda p, x: forward(cfg, p, x))(params, TOKENS))[0]
    # llama.cpp pairs adjacent dimensions in rotary: the reference runs the file's weights that way
    ref = llama_logits(stored, hf, TOKENS[0], pairing="adjacent")
    np.testing.assert_allclose(ours, ref, rtol=2e-4, atol=2e-4)
    assert tok.model == "gpt2" and tok.eos_id == len(VOCAB) - 1 and tok.special_tokens == ["<|end|>"]


def test_gguf_tokenizer_is_a_working_byte_level_bpe(tmp_path):
    hf = tiny_hf_config()
    write_gguf(tmp_path / "m.gguf", hf, random_llama(hf, seed=8), gguf.GGMLQuantizationType.F32)
    tok = import_gguf(tmp_path / "m.gguf")[2].tokenizer
    text = "a to 42!<|end|>"
    ids = tok.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert ids[1] == VOCAB.index("Ġt")  # the merge applied
    assert ids[-1] == VOCAB.index("<|end|>")  # special token kept whole
    assert [VOCAB[i] for i in ids[4:6]] == ["4", "2"]  # digits one by one (smollm pre-tokenizer)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3))
def test_rotary_row_permutation_is_inverted(heads, half, cols):
    w = np.arange(heads * 2 * half * cols, dtype=np.float32).reshape(heads * 2 * half, cols)
    np.testing.assert_array_equal(unpermute_rotary_rows(permute_rotary_rows(w, heads), heads), w)


def test_gguf_errors(tmp_path):
    with pytest.raises(InteropError, match="no such GGUF file"):
        import_gguf(tmp_path / "missing.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(InteropError, match="not a readable GGUF file"):
        import_gguf(tmp_path / "bad.gguf")
    writer = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), arch="gpt2")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InteropError, match="architecture is 'gpt2'; only 'llama'"):
        import_gguf(tmp_path / "gpt2.gguf")
