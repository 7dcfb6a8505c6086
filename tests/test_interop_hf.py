"""Hugging Face safetensors import/export: a tiny random Llama written by the test itself."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the 'interop' extra: pip install -e .[interop]")
from safetensors import safe_open
from safetensors.numpy import save_file

from mergemix_jax.config import MeshConfig, ModelConfig
from mergemix_jax.interop import InteropError, export_hf_safetensors, import_hf_safetensors
from mergemix_jax.model import forward
from mergemix_jax.parallel.mesh import build_mesh
from tests.interop_reference import llama_logits, random_llama, random_params, tiny_hf_config

TOKENS = np.array([[3, 17, 42, 5, 88, 1, 60, 9, 33, 71, 2, 95]], np.int32)


def write_checkpoint(folder, hf: dict, tensors: dict, shards: int = 1) -> None:
    """config.json + one model.safetensors, or `shards` shards and their model.safetensors.index.json, as HF writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf))
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    names, weight_map = sorted(tensors), {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("tie,n_kv,shards", [(False, 2, 2), (True, 4, 1)])
def test_import_reproduces_reference_forward(tmp_path, tie, n_kv, shards):
    hf = tiny_hf_config(tie=tie, n_kv_heads=n_kv)
    tensors = random_llama(hf, seed=1)
    write_checkpoint(tmp_path / "ckpt", hf, tensors, shards=shards)
    cfg, params = import_hf_safetensors(tmp_path / "ckpt")
    assert (cfg.n_kv_heads, cfg.tie_embeddings, cfg.rope_theta) == (n_kv, tie, 500.0)
    ours = np.asarray(jax.jit(lambda p, x: forward(cfg, p, x))(params, TOKENS))[0]
    ref = llama_logits(tensors, hf, TOKENS[0])
    np.testing.assert_allclose(ours, ref, rtol=2e-4, atol=2e-4)


def test_import_of_a_single_file_and_sharded_onto_a_mesh(tmp_path):
    hf = tiny_hf_config()
    tensors = random_llama(hf, seed=2)
    write_checkpoint(tmp_path, hf, tensors)
    mesh = build_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    file = next(tmp_path.glob("*.safetensors"))
    _, sharded = import_hf_safetensors(file, mesh=mesh)
    _, plain = import_hf_safetensors(tmp_path)
    wq = sharded["blocks"][0]["attn"]["wq_DxHxE"]
    assert wq.sharding.mesh.shape == mesh.shape and len(wq.addressable_shards) == 8
    assert wq.addressable_shards[0].data.shape == (32 // 4, 4 // 2, 8)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), sharded, plain)


@pytest.mark.parametrize("tie", [False, True])
def test_export_then_import_round_trips_exactly(tmp_path, tie):
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, tie_embeddings=tie, rope_theta=1e4)
    params = random_params(cfg, seed=3)
    out = export_hf_safetensors(params, cfg, tmp_path / "export")
    cfg2, params2 = import_hf_safetensors(out)
    assert cfg2 == cfg
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), params, params2)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left


def test_export_uses_llama_for_causal_lm_names_and_layout(tmp_path):
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=48, tie_embeddings=False)
    params = random_params(cfg, seed=4)
    out = export_hf_safetensors(params, cfg, tmp_path, dtype="bfloat16")
    hf = json.loads((out / "config.json").read_text())
    assert hf["architectures"] == ["LlamaForCausalLM"] and hf["torch_dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), framework="np") as f:
        assert f.metadata() == {"format": "pt"}  # transformers refuses files without it
        q = f.get_tensor("model.layers.0.self_attn.q_proj.weight")
        o = f.get_tensor("model.layers.0.self_attn.o_proj.weight")
        names = set(f.keys())
    assert "lm_head.weight" in names and len(names) == 3 + 9
    assert q.shape == (4 * 8, 32) and o.shape == (32, 4 * 8) and str(q.dtype) == "bfloat16"
    wq = np.asarray(params["blocks"][0]["attn"]["wq_DxHxE"])
    # HF row h*E+e, column d  ==  our [d, h, e]
    np.testing.assert_allclose(q.astype(np.float32)[1 * 8 + 5, 7], wq[7, 1, 5], rtol=1e-2)
    # the bfloat16 export imports and runs close to the float32 model
    cfg2, params2 = import_hf_safetensors(out)
    x = TOKENS % 64
    np.testing.assert_allclose(forward(cfg2, params2, x), forward(cfg, params, x), atol=0.05)


def test_errors_name_the_file_and_the_problem(tmp_path):
    hf = tiny_hf_config()
    tensors = random_llama(hf, seed=5)
    with pytest.raises(InteropError, match=r"config\.json: missing"):
        save_file(tensors, str(tmp_path / "model.safetensors"))
        import_hf_safetensors(tmp_path)
    write_checkpoint(tmp_path / "a", {**hf, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}, tensors)
    with pytest.raises(InteropError, match="rope_scaling"):
        import_hf_safetensors(tmp_path / "a")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    write_checkpoint(tmp_path / "b", hf, {**tensors, "model.layers.0.self_attn.q_proj.bias": np.zeros(32, np.float32)})
    with pytest.raises(InteropError, match=r"missing tensors \['model.layers.1.mlp.up_proj.weight'\].*unexpected.*q_proj.bias"):
        import_hf_safetensors(tmp_path / "b")
    write_checkpoint(tmp_path / "c", {**hf, "intermediate_size": 50}, random_llama(hf, seed=5))
    with pytest.raises(InteropError, match=r"gate_proj.weight has shape \(48, 32\), config.json implies \(50, 32\)"):
        import_hf_safetensors(tmp_path / "c")
    with pytest.raises(InteropError, match="no such file"):
        import_hf_safetensors(tmp_path / "nope")
