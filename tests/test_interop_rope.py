"""Llama-3 rope scaling: the model's frequencies against Meta's formula, and a scaled checkpoint's logits."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the 'interop' extra: pip install -e .[interop]")

from mergemix_jax.config import ConfigError, ModelConfig, load_config
from mergemix_jax.config.schema import RopeScaling
from mergemix_jax.interop import InteropError, export_hf_safetensors, import_hf_safetensors
from mergemix_jax.model import forward
from mergemix_jax.model.layers import rotary_frequencies
from tests.interop_reference import llama3_scaled, llama_logits, random_llama, random_params, tiny_hf_config
from tests.test_interop_hf import write_checkpoint

LLAMA_31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
# head size 8, theta 500: wavelengths 6.3, 30, 140, 664 against bounds 32 / 4 = 8 and 32 / 1 = 32,
# so the four rotary pairs fall in every band (kept, interpolated, stretched twice)
TINY_SCALING = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}


@pytest.mark.parametrize("head_dim,theta,scaling", [(128, 500_000.0, LLAMA_31), (64, 500_000.0, {**LLAMA_31, "factor": 32.0}), (8, 500.0, TINY_SCALING)])
def test_inverse_frequencies_follow_the_published_formula(head_dim, theta, scaling):
    ours = np.asarray(rotary_frequencies(head_dim // 2, theta, RopeScaling(**scaling)))
    plain = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
    expected = llama3_scaled(plain, scaling)
    np.testing.assert_allclose(ours, expected, rtol=2e-6)
    kept, stretched = np.isclose(expected, plain), np.isclose(expected, plain / scaling["factor"])
    assert kept.any() and stretched.any() and (~kept & ~stretched).any()  # every band is exercised
    np.testing.assert_allclose(np.asarray(rotary_frequencies(head_dim // 2, theta)), plain, rtol=2e-6)


def test_a_rope_scaled_checkpoint_imports_and_matches_the_reference_logits(tmp_path):
    hf = {**tiny_hf_config(), "rope_scaling": TINY_SCALING}
    tensors = random_llama(hf, seed=31)
    write_checkpoint(tmp_path / "ckpt", hf, tensors)
    cfg, params = import_hf_safetensors(tmp_path / "ckpt")
    assert cfg.rope_scaling == RopeScaling(**TINY_SCALING)
    tokens = (np.arange(48, dtype=np.int32) * 37 % 96)[None]
    ours = np.asarray(jax.jit(lambda p, x: forward(cfg, p, x))(params, tokens))[0]
    np.testing.assert_allclose(ours, llama_logits(tensors, hf, tokens[0]), rtol=2e-4, atol=2e-4)
    unscaled = llama_logits(tensors, {**hf, "rope_scaling": None}, tokens[0])
    assert np.abs(unscaled - ours).max() > 1e-2  # the scaling changes the logits: the test can fail
    # export writes it back; the exported folder imports to the same config
    out = export_hf_safetensors(params, cfg, tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["rope_scaling"] == TINY_SCALING
    assert import_hf_safetensors(out)[0] == cfg


def test_unsupported_or_incomplete_rope_scaling_is_refused_naming_it(tmp_path):
    hf = tiny_hf_config()
    tensors = random_llama(hf, seed=32)
    write_checkpoint(tmp_path / "a", {**hf, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, tensors)
    with pytest.raises(InteropError, match="rope_scaling of type 'yarn' is not supported"):
        import_hf_safetensors(tmp_path / "a")
    write_checkpoint(tmp_path / "b", {**hf, "rope_scaling": {"type": "llama3", "factor": 8.0}}, tensors)
    with pytest.raises(InteropError, match="needs the key 'low_freq_factor'"):
        import_hf_safetensors(tmp_path / "b")
    write_checkpoint(tmp_path / "c", {**hf, "rope_scaling": {"rope_type": "default"}}, tensors)
    assert import_hf_safetensors(tmp_path / "c")[0].rope_scaling is None


def test_model_rope_scaling_config_key_is_validated_and_kept_hashable():
    config = load_config(None, ["model.rope_scaling.factor=16"])
    assert config.model.rope_scaling == RopeScaling(factor=16)
    hash(config.model)  # jit static / lru_cache key
    with pytest.raises(ConfigError, match=r"model\.rope_scaling\.high_freq_factor"):
        load_config(None, ["model.rope_scaling.high_freq_factor=0.5"])
    with pytest.raises(ConfigError, match=r"model\.rope_scaling\.rope_type"):
        load_config(None, ["model.rope_scaling.rope_type=linear"])
    cfg = ModelConfig(d_model=32, n_heads=4, rope_scaling=RopeScaling(original_max_position_embeddings=16))
    params = random_params(cfg, seed=0)
    tokens = np.arange(40, dtype=np.int32)[None] % 64
    plain = ModelConfig(d_model=32, n_heads=4)
    assert not np.allclose(forward(cfg, params, tokens), forward(plain, params, tokens), atol=1e-3)
