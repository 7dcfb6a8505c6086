"""Size/memory/step-time estimates, and the real-scale configs shipped in configs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergemix_jax.config import ConfigError, ModelConfig, load_config
from mergemix_jax.model import count_params, param_shapes
from mergemix_jax.parallel.estimates import estimate, flops_per_token, main, param_counts, parse_accelerator_type

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LLAMA3_8B = ModelConfig(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, d_ff=14336, tie_embeddings=False)
LLAMA32_1B = ModelConfig(vocab_size=128256, d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, d_ff=8192, tie_embeddings=True)


def test_parameter_counts_match_the_published_llama_figures():
    assert param_counts(LLAMA3_8B)["total"] == 8_030_261_248  # Llama-3-8B
    assert param_counts(LLAMA32_1B)["total"] == 1_235_814_400  # Llama-3.2-1B


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, tie_embeddings=False),
        ModelConfig(vocab_size=96, d_model=32, n_layers=3, n_heads=4, n_kv_heads=4, d_ff=40, head_dim=16),
    ],
)
def test_parameter_count_equals_the_model_built_from_the_shape(cfg):
    assert param_counts(cfg)["total"] == count_params(param_shapes(cfg))


def test_accelerator_names_count_chips_as_jax_devices():
    assert parse_accelerator_type("v5p-64")[1] == 32  # v5p names count TensorCores, 2 per chip
    assert parse_accelerator_type("v4-8")[1] == 4
    assert parse_accelerator_type("v6e-64")[1] == 64
    assert parse_accelerator_type("v5litepod-16")[1] == 16
    with pytest.raises(ConfigError, match="'v9-8' is not one of"):
        parse_accelerator_type("v9-8")


def test_flops_per_token_is_6n_plus_attention():
    n = param_counts(LLAMA3_8B)["matmul"]
    assert flops_per_token(LLAMA3_8B, 4096) == 6 * n + 12 * 32 * 32 * 128 * 4096
    assert flops_per_token(LLAMA3_8B, 2048) < flops_per_token(LLAMA3_8B, 4096)


def test_memory_falls_with_more_sharding_and_with_remat():
    config = load_config(CONFIGS / "llama_8b_v6e.yaml", ["train.grad_accum_steps=1"])  # 128 rows over 128 chips
    big, small = estimate(config, "v6e-64"), estimate(config, "v6e-128", mfu=0.4)
    assert small["memory_per_device_gib"]["params_grads_adam"] == pytest.approx(big["memory_per_device_gib"]["params_grads_adam"] / 2)
    no_remat = estimate(load_config(CONFIGS / "llama_8b_v6e.yaml", ["train.grad_accum_steps=1", "model.remat=false"]), "v6e-64")
    assert no_remat["memory_per_device_gib"]["total"] > big["memory_per_device_gib"]["total"]
    assert big["step_seconds"] == pytest.approx(2 * estimate(config, "v6e-64", mfu=0.8)["step_seconds"])


@pytest.mark.parametrize("name,accelerator,params", [("llama_1b_v5p", "v5p-64", 1_235_814_400), ("llama_8b_v6e", "v6e-64", 8_030_261_248)])
def test_shipped_real_scale_configs_load_and_fit(name, accelerator, params, capsys):
    config = load_config(CONFIGS / f"{name}.yaml")
    est = estimate(config, accelerator)
    assert est["params"]["total"] == params
    assert est["fits"], est["memory_per_device_gib"]
    assert config.optim.schedule == "constant" and config.model.remat
    assert est["tokens_total"] >= 1e9  # a real expert budget
    assert main([str(CONFIGS / f"{name}.yaml"), "--accelerator", accelerator]) == 0
    assert "fits" in capsys.readouterr().out


def test_batch_not_divisible_by_the_mesh_is_named():
    config = load_config(CONFIGS / "llama_8b_v6e.yaml", ["train.batch_size=100"])
    with pytest.raises(ConfigError, match=r"train.batch_size \(100\) must be divisible by mesh data\*fsdp \(64\)"):
        estimate(config, "v6e-64")


def test_memory_falls_with_gradient_accumulation_and_attention_blocks():
    path = CONFIGS / "llama_1b_v5p.yaml"
    whole = estimate(load_config(path, ["train.grad_accum_steps=1", "model.attention_block=0"]), "v5p-64")
    accumulated = estimate(load_config(path, ["train.grad_accum_steps=4", "model.attention_block=0"]), "v5p-64")
    blocked = estimate(load_config(path, ["train.grad_accum_steps=1", "model.attention_block=512"]), "v5p-64")
    for est in (accumulated, blocked):
        assert est["memory_per_device_gib"]["activations_and_logits"] < whole["memory_per_device_gib"]["activations_and_logits"]
        assert est["flops_per_step"] == whole["flops_per_step"]  # the same step, in less memory
    with pytest.raises(ConfigError, match=r"train.grad_accum_steps \(16\)"):
        estimate(load_config(path, ["train.grad_accum_steps=16"]), "v5p-64")
