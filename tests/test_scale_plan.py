"""The compiled scale plan (benchmarks/scale_plan.py) at tiny shapes on the 8 test devices: the train
step and both merged-evaluation chunks compile from abstract arrays alone, and the memory it reports
follows the sharding (sharded experts hold 1/8 of the replicated stack per device)."""

import importlib.util
from pathlib import Path

import pytest

from mergemix_jax.config.schema import (
    Config,
    DataConfig,
    DomainConfig,
    EvalConfig,
    MeshConfig,
    ModelConfig,
    TrainConfig,
)
from mergemix_jax.model.params import count_params, param_shapes

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_plan.py"
GIB = 1024**3


@pytest.fixture(scope="module")
def scale_plan():
    spec = importlib.util.spec_from_file_location("scale_plan", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config() -> Config:
    """Never loaded from disk: the plan needs shapes only (no data, tokenizer or checkpoint)."""
    domains = [DomainConfig(name=n, paths=[f"/nowhere/{n}.jsonl"]) for n in ("web", "code", "math")]
    return Config(
        model=ModelConfig(vocab_size=128, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq_len=32),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        train=TrainConfig(batch_size=16, seq_len=16),
        eval=EvalConfig(heldout_sequences=4, seq_len=16, mixtures_per_device=2),
        data=DataConfig(domains=domains),
    )


@pytest.mark.slow  # compiles every program of a plan
def test_tiny_plan_compiles_every_program_and_sizes_follow_the_sharding(scale_plan):
    config = tiny_config()
    rows = {r["program"].split(" (")[0]: r for r in scale_plan.plan(config, 8, 16 * GIB)}
    assert set(rows) == {"train step", "eval chunk, experts replicated", "eval chunk, experts sharded"}
    for row in rows.values():
        assert row["flops_per_device"] > 0 and row["per_device_bytes"] > 0 and row["fits"]
        assert row["headroom_bytes"] == 16 * GIB - row["per_device_bytes"]
    model_bytes = 4 * count_params(param_shapes(config.model))  # float32 parameters
    replicated = rows["eval chunk, experts replicated"]["argument_bytes"]
    sharded = rows["eval chunk, experts sharded"]["argument_bytes"]
    assert replicated >= 4 * model_bytes  # base + 3 experts on every device
    assert sharded < replicated / 4  # split 8 ways (norm scales stay whole)
    # train state (params + 2 Adam moments) sharded 8 ways: well under one replicated copy of it
    assert rows["train step"]["argument_bytes"] < 3 * model_bytes / 2
    table = scale_plan.format_rows("tiny", list(rows.values()), 16 * GIB)
    assert table.count("| yes |") == 3


def test_a_program_that_does_not_fit_says_so(scale_plan):
    (row,) = scale_plan.plan(tiny_config(), 8, 1024, programs=("eval",))
    assert not row["fits"] and row["headroom_bytes"] < 0
    assert "| NO |" in scale_plan.format_rows("tiny", [row], 1024)


@pytest.mark.slow
def test_shipped_pod_configs_fit_in_the_compiled_plan():
    """The benchmark smoke: both real-scale configs, the programs their runs execute, at full size
    (a subprocess: the plan needs 32 and 64 fake devices; minutes on 2 cores)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(PATH)], capture_output=True, text=True, timeout=3000, cwd=PATH.parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| train step") or line.startswith("| eval chunk")]
    assert len(rows) == 4 and all("| yes |" in row for row in rows), result.stdout
    assert "experts sharded" in result.stdout  # the 8B config evaluates with eval.shard_experts
