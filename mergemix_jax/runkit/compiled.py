"""The compiled plan: lower and compile (never run) the train step and the merged-evaluation chunk of
a config on a mesh of the target's device count (on CPU: fake devices), from abstract arrays
(jax.ShapeDtypeStruct) only, and read per-device memory and FLOPs.

Per-device bytes = arguments + outputs - aliased (donated) + temporaries of the SPMD-partitioned
program (`compiled.memory_analysis()`); FLOPs from `compiled.cost_analysis()` (per device; a loop
body counts once: the rematerialised layer scan, gradient accumulation and an evaluation chunk's
`lax.map` make them a lower bound; docs/cost.md has the analytic figures). Arguments (parameters,
optimizer moments, the expert stack) are exact. Temporaries are XLA:CPU's: the blocks run as a
rematerialised `lax.scan` (model.remat), so the backward pass holds one block's activations on any
backend; XLA:TPU's own scheduling and fusion differ, so treat the temporaries as an estimate.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from mergemix_jax.config import Config
from mergemix_jax.eval.api import merge_fn_from_config
from mergemix_jax.eval.batched import make_chunk_scorer, mixture_devices
from mergemix_jax.eval.suite import BATCH_KEYS, EvalSuite
from mergemix_jax.merge.stack import ExpertStack
from mergemix_jax.model.params import param_partition_specs, param_shapes
from mergemix_jax.parallel.mesh import build_mesh
from mergemix_jax.parallel.partitioning import logical_to_spec
from mergemix_jax.train.optimizer import make_optimizer
from mergemix_jax.train.step import BATCH_KEYS as TRAIN_KEYS
from mergemix_jax.train.step import abstract_train_state, batch_sharding, make_train_step


def request_fake_devices(n_devices: int) -> None:
    """Ask XLA for `n_devices` CPU devices (effective only before jax starts its backend)."""
    flag = f"--xla_force_host_platform_device_count={n_devices}"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def default_programs(config: Config) -> tuple[str, ...]:
    """The programs a run of `config` executes: the train step and its evaluation mode."""
    return ("train", "eval_sharded" if config.eval.shard_experts else "eval")


GIB = 1024**3
TARGETS = (("configs/llama_1b_v5p.yaml", "v5p-64"), ("configs/llama_8b_v6e.yaml", "v6e-64"))


def _abstract(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=sharding)


def _measure(name: str, lowered) -> dict:
    """Compile a lowered program and read its per-device memory and FLOPs."""
    start = time.perf_counter()
    compiled = lowered.compile()
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    args, out, alias, temp = (int(getattr(mem, f"{k}_size_in_bytes")) for k in ("argument", "output", "alias", "temp"))
    return {
        "program": name,
        "argument_bytes": args,
        "temp_bytes": temp,
        "per_device_bytes": args + out - alias + temp,
        "flops_per_device": float(cost.get("flops", 0.0)),
        "compile_s": time.perf_counter() - start,
    }


def train_step_plan(config: Config, mesh: jax.sharding.Mesh) -> dict:
    """Compile one sharded train step (donated state) of the config's model, batch and optimizer."""
    tx = make_optimizer(config.optim, config.train.steps)
    state = abstract_train_state(config.model, tx, mesh)
    data = batch_sharding(mesh)
    shape = (config.train.batch_size, config.train.seq_len)
    batch = {k: _abstract(shape, jnp.float32 if k == "loss_mask" else jnp.int32, data) for k in TRAIN_KEYS}
    step = make_train_step(config.model, tx, mesh, accum_steps=config.train.grad_accum_steps)
    with jax.set_mesh(mesh):
        return _measure("train step", step.lower(state, batch))


def _abstract_suite(config: Config, sharding) -> EvalSuite:
    e = config.eval
    shape = (e.heldout_sequences, e.seq_len)
    batch = {k: _abstract(shape, jnp.float32 if k == "loss_mask" else jnp.int32, sharding) for k in BATCH_KEYS}
    return EvalSuite(heldout={d.name: batch for d in config.data.domains}, tasks={}, micro_batch=e.micro_batch)


def _abstract_stack(config: Config, mesh: jax.sharding.Mesh, shard: bool) -> ExpertStack:
    k = len(config.data.domains)
    shapes = param_shapes(config.model)
    specs = param_partition_specs(config.model)
    is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
    base_spec = specs if shard else jax.tree.map(lambda _: PartitionSpec(), specs, is_leaf=is_spec)
    base = jax.tree.map(lambda a, s: _abstract(a.shape, a.dtype, NamedSharding(mesh, s)), shapes, base_spec)
    experts = jax.tree.map(lambda a, s: _abstract((k, *a.shape), a.dtype, NamedSharding(mesh, PartitionSpec(None, *s))), shapes, base_spec)
    return ExpertStack(base, experts, tuple(d.name for d in config.data.domains))


def eval_chunk_plan(config: Config, mesh: jax.sharding.Mesh, shard: bool) -> dict:
    """Compile one merged-evaluation chunk: experts replicated (mixtures split) or sharded."""
    replicated = NamedSharding(mesh, PartitionSpec())
    scorer = make_chunk_scorer(config.model, merge_fn_from_config(config.eval), mesh, shard, config.eval.mixtures_per_step)
    chunk = config.eval.mixtures_per_device * mixture_devices(mesh, shard)
    k = len(config.data.domains)
    weight_sharding = replicated if shard else NamedSharding(mesh, PartitionSpec(*logical_to_spec(("mixture",)), None))
    weights = _abstract((chunk, k), jnp.float32, weight_sharding)
    name = f"eval chunk, experts {'sharded' if shard else 'replicated'} ({chunk} mixtures)"
    with jax.set_mesh(mesh):
        lowered = scorer.lower(_abstract_stack(config, mesh, shard), weights, _abstract_suite(config, replicated))
        return _measure(name, lowered)


def plan(config: Config, n_devices: int, hbm_bytes: float, programs: tuple[str, ...] = ("train", "eval", "eval_sharded")) -> list[dict]:
    """Rows (one per compiled program) with per-device bytes, FLOPs and the headroom left in `hbm_bytes`."""
    devices = jax.devices()
    if len(devices) < n_devices:
        from mergemix_jax.config import ConfigError

        raise ConfigError(f"the compiled plan needs {n_devices} devices, jax has {len(devices)}; set XLA_FLAGS=--xla_force_host_platform_device_count={n_devices} before jax starts")
    mesh = build_mesh(config.mesh, "scale plan", devices=devices[:n_devices])
    builders = {
        "train": lambda: train_step_plan(config, mesh),
        "eval": lambda: eval_chunk_plan(config, mesh, False),
        "eval_sharded": lambda: eval_chunk_plan(config, mesh, True),
    }
    rows = []
    for name in programs:
        row = builders[name]()
        row["fits"] = row["per_device_bytes"] <= hbm_bytes
        row["headroom_bytes"] = hbm_bytes - row["per_device_bytes"]
        rows.append(row)
    return rows


def format_rows(title: str, rows: list[dict], hbm_bytes: float) -> str:
    """A markdown table of `plan` rows."""
    lines = [
        f"{title} (HBM {hbm_bytes / GIB:.0f} GiB per chip)",
        "",
        "| program | per-device GiB (args / temp) | compiled TFLOP per device (a loop body once) | fits | headroom GiB | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['program']} | {r['per_device_bytes'] / GIB:.2f} ({r['argument_bytes'] / GIB:.2f} / {r['temp_bytes'] / GIB:.2f}) "
            f"| {r['flops_per_device'] / 1e12:.2f} | {'yes' if r['fits'] else 'NO'} | {r['headroom_bytes'] / GIB:.2f} | {r['compile_s']:.0f} |"
        )
    return "\n".join(lines)
