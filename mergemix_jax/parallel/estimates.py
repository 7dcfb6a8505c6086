"""Back-of-the-envelope size, memory and step-time figures for a Config on a TPU slice.

Counts come from the model shape alone (no arrays are built), so an 8B config can be checked on a
laptop before renting a pod. Memory is a rough upper bound per device: float32 params, grads and
the two Adam moments sharded over fsdp x tensor (the rules table), plus saved activations and the
float32 logits. FLOPs follow the PaLM convention: 6 N per token for the matmul weights (N excludes
the embedding lookup, includes the output projection) plus 12 * n_layers * heads * head_dim * seq
for attention (counted as if not causal).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass

from mergemix_jax.config import Config, ConfigError, ModelConfig
from mergemix_jax.parallel.mesh import resolve_mesh_shape

GIB = 2**30


@dataclass(frozen=True)
class Accelerator:
    """One TPU generation: chips per slice name unit, HBM and peak dense bf16 FLOP/s per chip."""

    name: str
    cores_per_chip_in_name: int  # v4/v5p slice names count TensorCores (2 per chip); v5e/v6e count chips
    hbm_bytes: float
    peak_flops: float
    chips_per_host: int


def _host_memory_bytes() -> float:
    """Physical memory of this machine (the "HBM" of a CPU device); 0 where the OS does not say."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0.0


# Measured, not a spec: training FLOPs (6N + attention per token) per CPU-second (user + system) of one
# demo expert (`mergemix train`, 50 steps of 16 x 128 tokens, start-up and compilation included:
# 4.48e11 FLOPs in 22.4 CPU-seconds on 2 cores; docs/cost.md). On "cpu" the "chip" is one
# CPU-second of work, so chip-hours are CPU-hours and the rate is already peak x MFU (MFU 1).
CPU_FLOPS_PER_CPU_SECOND = 2.0e10

# The one accelerator table: peak dense bf16 FLOP/s and memory per chip (Cloud TPU system docs).
ACCELERATORS = {
    "v4": Accelerator("v4", 2, 32 * GIB, 275e12, 4),
    "v5litepod": Accelerator("v5e", 1, 16 * GIB, 197e12, 4),
    "v5p": Accelerator("v5p", 2, 95 * GIB, 459e12, 4),
    "v6e": Accelerator("v6e", 1, 32 * GIB, 918e12, 4),
    "cpu": Accelerator("cpu", 1, _host_memory_bytes(), CPU_FLOPS_PER_CPU_SECOND, 1),
}


def parse_accelerator_type(accelerator_type: str) -> tuple[Accelerator, int]:
    """(generation, number of chips = jax devices) from a Cloud TPU name such as "v5p-64", or "cpu"
    (this host as one device)."""
    if accelerator_type == "cpu":
        return ACCELERATORS["cpu"], 1
    match = re.fullmatch(r"(v4|v5litepod|v5p|v6e)-(\d+)", accelerator_type)
    if not match:
        raise ConfigError(
            f"accelerator type {accelerator_type!r} is not one of {sorted(set(ACCELERATORS) - {'cpu'})} followed by -<size> (e.g. v5p-64), or cpu"
        )
    acc = ACCELERATORS[match.group(1)]
    return acc, max(1, int(match.group(2)) // acc.cores_per_chip_in_name)


def param_counts(m: ModelConfig) -> dict[str, int]:
    """Parameter counts: total, embedding table, and matmul weights (what 6N FLOPs counts)."""
    d, e, f, v = m.d_model, m.resolved_head_dim, m.d_ff, m.vocab_size
    per_layer = d * e * (2 * m.n_heads + 2 * m.n_kv_heads) + 3 * d * f + 2 * d
    embed = v * d
    unembed = 0 if m.tie_embeddings else d * v
    total = embed + unembed + m.n_layers * per_layer + d
    matmul = m.n_layers * (per_layer - 2 * d) + d * v  # the output projection is a matmul, tied or not
    return {"total": total, "embedding": embed, "matmul": matmul}


def flops_per_token(m: ModelConfig, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token, PaLM convention."""
    attention = 12 * m.n_layers * m.n_heads * m.resolved_head_dim * seq_len
    return 6 * param_counts(m)["matmul"] + attention


def _activation_bytes(m: ModelConfig, tokens_per_device: int, tensor: int, seq_len: int) -> float:
    """Saved activations for the backward pass of one micro-batch, one device (rough: main tensors of
    each layer). `model.attention_block` bounds the float32 scores to that many query rows."""
    act = 2 if m.compute_dtype == "bfloat16" else 4
    d, e = m.d_model, m.resolved_head_dim
    per_token_layer = act * (4 * d + ((2 * m.n_heads + 2 * m.n_kv_heads) * e + 4 * m.d_ff) / tensor)
    score_rows = min(m.attention_block or seq_len, seq_len)
    scores = 2 * 4 * m.n_heads * score_rows * seq_len / tensor * (tokens_per_device // seq_len)  # float32 scores and softmax
    if m.remat:  # keep each block's input; recompute one block at a time
        stored = tokens_per_device * (m.n_layers * act * d + per_token_layer) + scores
    else:
        stored = tokens_per_device * m.n_layers * per_token_layer + m.n_layers * scores
    logits = 2 * 4 * tokens_per_device * m.vocab_size / tensor  # float32 logits and their gradient
    return stored + logits + _gathered_tables_bytes(m)


def _gathered_tables_bytes(m: ModelConfig) -> float:
    """The embedding lookup gathers the whole table (and FSDP the whole output projection) on every
    device: each once in float32 and once in the compute dtype (training: the float32 copy is its
    gradient). At 8B (untied, vocab 128256) that is 6 GiB per device, whatever the mesh."""
    act = 2 if m.compute_dtype == "bfloat16" else 4
    return (act + 4) * m.vocab_size * m.d_model * (1 if m.tie_embeddings else 2)


def eval_memory_bytes(config: Config, accelerator_type: str) -> float:
    """Per-device bytes of one merged-evaluation chunk (rough): the float32 expert stack (base + K
    experts; sharded over fsdp x tensor with `eval.shard_experts`, else whole on every device), one
    merged model, the gathered vocabulary tables and one micro-batch's forward activations (float32
    logits, one layer's scores; with sharded experts the micro-batch's rows split over the chips,
    else each chip runs its own)."""
    _, chips = parse_accelerator_type(accelerator_type)
    data, fsdp, tensor = resolve_mesh_shape(config.mesh, chips, f"mesh for {accelerator_type}")
    e, m = config.eval, config.model
    split = fsdp * tensor if e.shard_experts else 1
    per_step = e.mixtures_per_step
    params = 4 * param_counts(m)["total"]
    stack = (len(config.data.domains) + 1) * params / split
    merged = per_step * params / split
    rows = per_step * (e.micro_batch or e.heldout_sequences)
    if e.shard_experts:  # every mixture uses all chips: its rows split over data x fsdp
        rows = math.ceil(rows / (data * fsdp))
    length = max(e.seq_len, e.task_max_len if e.task_dir else 0)
    score_rows = min(m.attention_block or length, length)
    forward = rows * length * (4 * 2 * m.vocab_size / tensor + 4 * 4 * m.d_model) + rows * 2 * 4 * m.n_heads * score_rows * length / tensor
    return stack + merged + forward + _gathered_tables_bytes(m)


def estimate(config: Config, accelerator_type: str, mfu: float = 0.4) -> dict:
    """Sizes, per-device memory (bytes) and step time for `config` on `accelerator_type`.

    `mfu` is the assumed model-FLOPs utilisation for the step-time figure (0.4 is typical of a
    well-sharded dense model on TPU; measure yours and pass it).
    """
    acc, chips = parse_accelerator_type(accelerator_type)
    data, fsdp, tensor = resolve_mesh_shape(config.mesh, chips, f"mesh for {accelerator_type}")
    m, t = config.model, config.train
    if t.batch_size % (data * fsdp * t.grad_accum_steps):
        raise ConfigError(
            f"train.batch_size ({t.batch_size}) must be divisible by mesh data*fsdp ({data * fsdp}) x train.grad_accum_steps ({t.grad_accum_steps})"
        )
    counts = param_counts(m)
    tokens_per_step = t.batch_size * t.seq_len
    state_bytes = 16 * counts["total"] / (fsdp * tensor)  # f32 params + grads + Adam mu, nu
    activation_bytes = _activation_bytes(m, tokens_per_step // (data * fsdp * t.grad_accum_steps), tensor, t.seq_len)
    flops_per_step = flops_per_token(m, t.seq_len) * tokens_per_step
    step_seconds = flops_per_step / (chips * acc.peak_flops * mfu)
    memory = state_bytes + activation_bytes
    return {
        "accelerator": accelerator_type,
        "chips": chips,
        "hosts": max(1, chips // acc.chips_per_host),
        "mesh": {"data": data, "fsdp": fsdp, "tensor": tensor},
        "params": counts,
        "tokens_per_step": tokens_per_step,
        "tokens_total": tokens_per_step * t.steps,
        "flops_per_step": flops_per_step,
        "memory_per_device_gib": {
            "params_grads_adam": state_bytes / GIB,
            "activations_and_logits": activation_bytes / GIB,
            "total": memory / GIB,
            "hbm": acc.hbm_bytes / GIB,
        },
        "fits": memory < 0.9 * acc.hbm_bytes,  # leave ~10% for XLA scratch and fragmentation
        "step_seconds": step_seconds,
        "run_hours": step_seconds * t.steps / 3600,
        "assumed_mfu": mfu,
        "accelerator_spec": asdict(acc),
    }


def format_estimate(est: dict) -> str:
    """A few human-readable lines of `estimate`'s result."""
    mem = est["memory_per_device_gib"]
    return "\n".join(
        [
            f"{est['accelerator']}: {est['chips']} chips on {est['hosts']} hosts, mesh {est['mesh']}",
            f"params {est['params']['total'] / 1e9:.3f}B (matmul {est['params']['matmul'] / 1e9:.3f}B)",
            f"tokens/step {est['tokens_per_step']:,}, total {est['tokens_total'] / 1e9:.2f}B",
            f"memory/device {mem['total']:.1f} GiB of {mem['hbm']:.0f} (state {mem['params_grads_adam']:.1f}, "
            f"activations+logits {mem['activations_and_logits']:.1f}) -> {'fits' if est['fits'] else 'DOES NOT FIT'}",
            f"{est['flops_per_step']:.3e} FLOPs/step, ~{est['step_seconds']:.2f} s/step at MFU {est['assumed_mfu']}, "
            f"~{est['run_hours']:.1f} h for the run",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m mergemix_jax.parallel.estimates CONFIG --accelerator v5p-64 [key=value ...]`."""
    import argparse
    import json

    from mergemix_jax.config import load_config

    parser = argparse.ArgumentParser(description="Parameter count, memory per device and step time of a config")
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    parser.add_argument("--accelerator", required=True, help="Cloud TPU type, e.g. v5p-64, v6e-64, v4-32")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model-FLOPs utilisation")
    parser.add_argument("--json", action="store_true", help="print the full estimate as JSON")
    args = parser.parse_args(argv)
    est = estimate(load_config(args.config, args.overrides), args.accelerator, args.mfu)
    print(json.dumps(est, indent=2) if args.json else format_estimate(est))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
