"""Training throughput and model FLOPs utilisation (MFU) against this machine's measured matmul peak.

    python benchmarks/train_throughput.py [--config configs/demo.yaml] [--steps 20] [key=value ...]

Prints tokens/s of the jitted sharded train step (with the config's remat, attention blocks and
gradient accumulation) and MFU = model FLOPs/s / peak FLOPs/s against two peaks: a large float32
matmul timed in the same run (ratios, not absolute times, are comparable across shared machines)
and, on a TPU named in parallel/estimates.py's table, the chip's bf16 spec peak: that MFU is the
one to pass to `mergemix plan --mfu X --measured`. Model FLOPs per token: estimates.flops_per_token
(6 N for the matmul weights + attention, forward + backward, the PaLM paper's MFU definition).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from mergemix_jax.config import load_config
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.model import count_params, init_params
from mergemix_jax.parallel.estimates import ACCELERATORS, flops_per_token
from mergemix_jax.parallel.mesh import build_mesh
from mergemix_jax.train.optimizer import make_optimizer
from mergemix_jax.train.step import batch_sharding, init_train_state, make_train_step, train_state_shardings


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a float32 [size, size] matmul chain on the default devices."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)

    @jax.jit
    def chain(x):
        for _ in range(repeats):
            x = (x @ a) * (1.0 / size**0.5)
        return x

    chain(a).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        chain(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 * repeats / best


def spec_peak_flops() -> float | None:
    """Peak bf16 FLOP/s of all devices from the accelerator table, when this is a TPU generation in it."""
    device = jax.devices()[0]
    kind = device.device_kind.lower().replace(" ", "")
    names = {"tpuv4": "v4", "tpuv5lite": "v5litepod", "tpuv5e": "v5litepod", "tpuv5p": "v5p", "tpuv5": "v5p", "tpuv6lite": "v6e", "tpuv6e": "v6e"}
    name = next((v for k, v in sorted(names.items(), key=lambda kv: -len(kv[0])) if kind.startswith(k)), None)
    return ACCELERATORS[name].peak_flops * jax.device_count() if name and device.platform == "tpu" else None


def measure_training(config, steps: int) -> dict:
    """Tokens/s of `steps` train steps after one compile step, on random tokens."""
    mesh = build_mesh(config.mesh)
    tx = make_optimizer(config.optim, steps + 1)
    b, length = config.train.batch_size, config.train.seq_len
    rng = np.random.default_rng(0)
    batch = batch_from_sequences(rng.integers(1, config.model.vocab_size, (b, length + 1)))
    with jax.set_mesh(mesh):
        params = init_params(config.model, 0, mesh)
        n_params = count_params(params)
        state = jax.device_put(init_train_state(params, tx), train_state_shardings(config.model, tx, mesh))
        step = make_train_step(config.model, tx, mesh, accum_steps=config.train.grad_accum_steps)
        batch = jax.device_put(batch, batch_sharding(mesh))
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        t0 = time.perf_counter()
        for _ in range(steps):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - t0
    return {"params": n_params, "tokens_per_second": steps * b * length / elapsed, "seconds_per_step": elapsed / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    peak = matmul_peak_flops()
    result = measure_training(config, args.steps)
    m = config.model
    achieved = result["tokens_per_second"] * flops_per_token(m, config.train.seq_len)
    print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}")
    print(f"matmul peak (float32, measured): {peak / 1e9:,.1f} GFLOP/s")
    print(f"model: {result['params'] / 1e6:.2f}M params, batch {config.train.batch_size} x {config.train.seq_len}")
    print(f"train step: {result['seconds_per_step'] * 1e3:,.1f} ms, {result['tokens_per_second']:,.0f} tokens/s")
    print(f"model FLOP/s: {achieved / 1e9:,.2f} GFLOP/s   MFU vs measured peak: {achieved / peak:.1%}")
    spec = spec_peak_flops()
    if spec:
        print(f"MFU vs the chips' spec peak ({spec / 1e12:,.0f} TFLOP/s): {achieved / spec:.3f}  (mergemix plan --mfu {achieved / spec:.3f} --measured)")


if __name__ == "__main__":
    main()
