"""Training: sharded = single device, resume = uninterrupted (bit for bit), loss falls on real text."""

import grain
import jax
import numpy as np
import pytest

from mergemix_jax.config import MeshConfig, OptimConfig
from mergemix_jax.model import init_params
from mergemix_jax.parallel.mesh import build_mesh
from mergemix_jax.train import TrainingDiverged, load_params, train
from mergemix_jax.train.checkpoint import CheckpointError
from mergemix_jax.train.metrics import read_metrics
from mergemix_jax.train.optimizer import learning_rate_schedule, make_optimizer
from mergemix_jax.train.step import batch_sharding, init_train_state, make_train_step, train_state_shardings
from tests.helpers import random_dataset, real_text_tokens, tiny_config, windows_dataset


def leaves_max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(np.asarray(x) - np.asarray(y)).max()), a, b)))


def one_step(mesh_shape, batch):
    cfg = tiny_config().model
    tx = make_optimizer(OptimConfig(), 10)
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    mesh = build_mesh(MeshConfig(*mesh_shape), devices=devices)
    with jax.set_mesh(mesh):
        state = jax.device_put(init_train_state(init_params(cfg, 0, mesh), tx), train_state_shardings(cfg, tx, mesh))
        state, metrics = make_train_step(cfg, tx, mesh)(state, jax.device_put(batch, batch_sharding(mesh)))
        return jax.device_get(metrics), jax.device_get(state.params)


@pytest.mark.slow  # the train step compiled for an 8-device mesh and for one device
def test_sharded_step_equals_single_device():
    batch = next(iter(random_dataset(64, 8, 16)))
    metrics_1, params_1 = one_step((1, 1, 1), batch)
    metrics_8, params_8 = one_step((2, 2, 2), batch)
    assert metrics_1["loss"] == pytest.approx(metrics_8["loss"], rel=1e-6)
    assert metrics_1["grad_norm"] == pytest.approx(metrics_8["grad_norm"], rel=1e-5)
    # Adam divides by sqrt(v): on near-zero gradients float summation order moves an update by up
    # to a few percent of the learning rate (3e-3), so parameters agree to ~1e-4, not 1e-6.
    assert leaves_max_diff(params_1, params_8) < 1e-4


def test_resume_equals_uninterrupted_bit_for_bit(tmp_path):
    train_section = {"checkpoint_every": 3, "steps": 6}
    full = train(tiny_config(str(tmp_path / "full"), train=train_section), dataset=random_dataset(64, 8, 16))
    train(tiny_config(str(tmp_path / "cut"), train={**train_section, "steps": 3}), dataset=random_dataset(64, 8, 16))
    resumed = train(tiny_config(str(tmp_path / "cut"), train=train_section), dataset=random_dataset(64, 8, 16))
    assert resumed.resumed_from == 3 and resumed.final_loss == full.final_loss
    assert leaves_max_diff(load_params(tmp_path / "full")[0], load_params(tmp_path / "cut")[0]) == 0.0
    assert [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == list(range(1, 7))


def test_loss_falls_on_real_text(tmp_path):
    cfg = tiny_config(str(tmp_path), train={"steps": 40, "checkpoint_every": 40}, optim={"learning_rate": 1e-2})
    train(cfg, dataset=windows_dataset(real_text_tokens(), 8, 16))
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.8


def test_restore_into_a_different_mesh(tmp_path):
    cfg = tiny_config(str(tmp_path), train={"steps": 2, "checkpoint_every": 2}, mesh={"data": 1, "fsdp": 8, "tensor": 1})
    train(cfg, dataset=random_dataset(64, 8, 16))
    other = build_mesh(MeshConfig(2, 2, 2))
    params, saved_cfg = load_params(tmp_path, cfg.model, mesh=other)
    assert params["embed_VxD"].sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    assert leaves_max_diff(params, load_params(tmp_path)[0]) == 0.0 and saved_cfg == cfg.model


def test_expert_starts_from_base_and_architecture_must_match(tmp_path):
    base = tiny_config(str(tmp_path / "base"), train={"steps": 2, "checkpoint_every": 2})
    train(base, dataset=random_dataset(64, 8, 16))
    expert = tiny_config(str(tmp_path / "expert"), train={"steps": 1, "checkpoint_every": 1, "init_from": str(tmp_path / "base")})
    train(expert, dataset=random_dataset(64, 8, 16, seed=1))
    delta = leaves_max_diff(load_params(tmp_path / "base")[0], load_params(tmp_path / "expert")[0])
    assert 0 < delta < 0.05  # one AdamW step away from the base
    bf16 = tiny_config(str(tmp_path / "bf16"), model={"compute_dtype": "bfloat16", "remat": True}, train={"steps": 1, "checkpoint_every": 1, "init_from": str(tmp_path / "base")})
    assert np.isfinite(train(bf16, dataset=random_dataset(64, 8, 16)).final_loss)  # run-time fields may differ
    wider = tiny_config(str(tmp_path / "x"), model={"d_model": 64}, train={"init_from": str(tmp_path / "base")})
    with pytest.raises(CheckpointError, match="d_model"):
        train(wider, dataset=random_dataset(64, 8, 16))
    with pytest.raises(CheckpointError, match="no finished checkpoint"):
        load_params(tmp_path / "nothing")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    good = next(iter(random_dataset(64, 8, 16)))

    def batch_at(index):
        return {**good, "loss_mask": good["loss_mask"] * (np.nan if index == 3 else 1.0)}

    poisoned = grain.MapDataset.range(100).map(batch_at).to_iter_dataset()
    cfg = tiny_config(str(tmp_path), train={"steps": 6, "checkpoint_every": 2})
    with pytest.raises(TrainingDiverged, match="step 4"):
        train(cfg, dataset=poisoned)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    assert load_params(tmp_path)[0] is not None


@pytest.mark.parametrize("schedule", ["constant", "cosine", "wsd"])
def test_schedules(schedule):
    lr = learning_rate_schedule(OptimConfig(schedule=schedule, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1), 100)
    assert float(lr(0)) == pytest.approx(0.0) and float(lr(10)) == pytest.approx(1.0)
    final = {"constant": 1.0, "cosine": 0.1, "wsd": 0.1}[schedule]
    assert float(lr(100)) == pytest.approx(final, abs=1e-3)
    if schedule == "wsd":
        assert float(lr(79)) == pytest.approx(1.0)


def test_rerunning_a_finished_run_returns_its_result_without_training(tmp_path):
    cfg = tiny_config(str(tmp_path), train={"steps": 2, "checkpoint_every": 2})
    first = train(cfg, dataset=random_dataset(64, 8, 16))
    stamp = (tmp_path / "done.json").stat().st_mtime_ns
    again = train(cfg, dataset=random_dataset(64, 8, 16))
    assert again.final_loss == first.final_loss and np.isfinite(again.final_loss) and again.resumed_from == 2
    assert (tmp_path / "done.json").stat().st_mtime_ns == stamp
