"""One process of the 2-process CPU job that tests/test_multihost.py launches.

Usage: python tests/multihost_worker.py OUT_DIR [merged | run CONFIG]  (with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID set; "run" also alone, as the 1-process reference). Default: each process feeds only its own rows of the global
batch; process 0 alone writes result.json. "merged": both processes score merged mixtures into one
results CSV (`evaluate_mixtures`, mixtures split over the 4 devices of both processes) and run a
gradient search with the stack and suite replicated on that mesh; process 0 alone writes the CSV and merged.json.
"run": `mergemix run --config CONFIG`, listing the files this process wrote (see `main_run`). Params,
experts and batches come from fixed seeds so the test can recompute them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from mergemix_jax.config import MeshConfig, ModelConfig
from mergemix_jax.interop import export_hf_safetensors
from mergemix_jax.model import forward, masked_mean, param_shardings, token_nll
from mergemix_jax.parallel.mesh import build_mesh, maybe_initialize_distributed
from mergemix_jax.parallel.partitioning import logical_to_spec

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64)
BATCH, LENGTH = 4, 16


def make_inputs() -> tuple[dict, dict]:
    """(params as numpy, batch as numpy): identical in every process and in the test."""
    from tests.interop_reference import random_params

    rng = np.random.default_rng(11)
    tokens = rng.integers(0, CFG.vocab_size, (BATCH, LENGTH + 1)).astype(np.int32)
    mask = (rng.random((BATCH, LENGTH)) < 0.8).astype(np.float32)
    return random_params(CFG, seed=12), {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "loss_mask": mask}


def loss_fn(params: dict, batch: dict) -> jax.Array:
    nll = token_nll(forward(CFG, params, batch["inputs"]), batch["targets"])
    return masked_mean(nll, batch["loss_mask"])[0]


def local_rows(sharding: jax.sharding.Sharding, global_shape: tuple[int, ...]) -> np.ndarray:
    """Indices of the batch rows that this process's devices hold."""
    rows = set()
    for index in sharding.addressable_devices_indices_map(global_shape).values():
        rows.update(range(*index[0].indices(global_shape[0])))
    return np.array(sorted(rows))


def save_and_restore(params: dict, shardings: dict, path: Path) -> bool:
    """orbax save from all processes, restore onto the same shardings; True if every shard matches."""
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path.resolve(), params)
        checkpointer.wait_until_finished()
        abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, shardings)
        restored = checkpointer.restore(path.resolve(), abstract)
    same = jax.tree.map(
        lambda a, b: all(np.array_equal(x.data, y.data) for x, y in zip(a.addressable_shards, b.addressable_shards, strict=True)),
        params,
        restored,
    )
    local = all(jax.tree.leaves(same))
    return bool(multihost_utils.process_allgather(np.array(local)).all())


def main(out_dir: Path) -> None:
    maybe_initialize_distributed()
    assert jax.process_count() == 2, jax.process_count()
    mesh = build_mesh(MeshConfig(data=2, fsdp=2, tensor=1))  # spans both processes
    params_np, batch_np = make_inputs()
    shardings = param_shardings(CFG, mesh)
    params = jax.tree.map(lambda a, s: jax.make_array_from_callback(a.shape, s, lambda i, a=a: a[i]), params_np, shardings)
    batch_sharding = jax.sharding.NamedSharding(mesh, logical_to_spec(("batch", "seq")))
    rows = local_rows(batch_sharding, (BATCH, LENGTH))
    batch = {
        k: jax.make_array_from_process_local_data(batch_sharding, v[rows], (BATCH, LENGTH)) for k, v in batch_np.items()
    }
    with jax.set_mesh(mesh):
        loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, batch)
    export_hf_safetensors(params, CFG, out_dir / "hf")  # every process gathers; process 0 writes
    restored_equal = save_and_restore(params, shardings, out_dir / "ckpt")
    grad_wq = multihost_utils.process_allgather(grads["blocks"][1]["attn"]["wq_DxHxE"], tiled=True)
    if jax.process_index() == 0:
        result = {
            "loss": float(loss),
            "grad_wq": np.asarray(grad_wq).tolist(),
            "local_rows": rows.tolist(),
            "restored_equal": restored_equal,
            "devices": jax.device_count(),
            "local_devices": jax.local_device_count(),
        }
        tmp = out_dir / "result.json.tmp"
        tmp.write_text(json.dumps(result))
        os.replace(tmp, out_dir / "result.json")
    else:
        (out_dir / "rows1.json").write_text(json.dumps(rows.tolist()))


MERGED_NAMES = ("web", "code", "math")
MERGED_OPTIONS = {"steps": 2, "chunk": 2, "restarts": 2, "rel_tol": 0.0}


def merged_inputs():
    """(expert stack, eval suite, weights [6, 3]) from fixed seeds, identical in every process."""
    from mergemix_jax.data import batch_from_sequences
    from mergemix_jax.eval import make_suite
    from mergemix_jax.merge import build_expert_stack, sample_dirichlet
    from tests.interop_reference import random_params

    base = random_params(CFG, seed=12)
    rng = np.random.default_rng(13)
    experts = [jax.tree.map(lambda b: b + 0.05 * rng.standard_normal(b.shape).astype(b.dtype), base) for _ in MERGED_NAMES]
    suite = make_suite({d: batch_from_sequences(rng.integers(1, CFG.vocab_size, (2, 9))) for d in MERGED_NAMES})
    return build_expert_stack(base, experts, MERGED_NAMES), suite, sample_dirichlet(6, len(MERGED_NAMES), 1.0, 3)


def main_merged(out_dir: Path) -> None:
    from mergemix_jax.config import EvalConfig
    from mergemix_jax.config.schema import GradientSearchConfig
    from mergemix_jax.eval import evaluate_mixtures
    from mergemix_jax.search.gradient import gradient_search
    from mergemix_jax.search.merged import merged_problem

    maybe_initialize_distributed()
    assert jax.process_count() == 2, jax.process_count()
    mesh = build_mesh(MeshConfig(data=1, fsdp=-1, tensor=1))  # 4 devices, 2 per process
    stack, suite, weights = merged_inputs()
    evaluate_mixtures(CFG, stack, weights, suite, out_dir / "scores.csv", EvalConfig(mixtures_per_device=1), mesh=mesh, progress=False)
    problem = merged_problem(CFG, stack, suite, {"loss/mean": 1.0}, mixtures_per_device=1, mesh=mesh)
    result = gradient_search(problem, GradientSearchConfig(**MERGED_OPTIONS))
    if jax.process_index() == 0:
        record = {
            "weights": result.weights.tolist(), "objective": result.objective, "trace": result.trace.tolist(),
            "devices": jax.device_count(),
        }  # fmt: skip
        (out_dir / "merged.json").write_text(json.dumps(record))


def main_run(out_dir: Path, config: str) -> None:
    """`mergemix run --config CONFIG` in this process (one of two under jax.distributed, or alone);
    every file this process opens for writing, renames or removes under the config's folder is
    listed in OUT_DIR/writes-<process>.json (read by the test: process 1 must write none)."""
    from mergemix_jax.cli.main import main as cli

    root, writes = str(Path(config).resolve().parent), []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | os.PathLike) and (args[2] or 0) & write_flags:
            paths = [args[0]]
        elif event in ("os.rename", "os.remove", "os.unlink"):
            paths = [a for a in args[:2] if isinstance(a, str | os.PathLike)]
        else:
            return
        writes.extend(p for p in map(os.path.abspath, map(os.fspath, paths)) if p.startswith(root))

    sys.addaudithook(audit)
    status = cli(["run", "--config", config, "--no-progress"])
    index = jax.process_index() if jax.distributed.is_initialized() else 0
    (out_dir / f"writes-{index}.json").write_text(json.dumps(sorted(set(writes))))
    sys.exit(status)


if __name__ == "__main__":
    if sys.argv[2:3] == ["run"]:
        main_run(Path(sys.argv[1]), sys.argv[3])
    else:
        (main_merged if sys.argv[2:] == ["merged"] else main)(Path(sys.argv[1]))
