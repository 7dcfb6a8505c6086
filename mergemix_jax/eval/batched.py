"""Score many merged models: one compiled chunk function, called in a host loop over fixed-size chunks.

Within a chunk, `lax.map` merges and scores `mixtures_per_step` mixtures at a time per device (vmapped;
1 = one at a time), so memory holds that many merged models per device whatever B is. On a mesh the chunk's mixtures are split across devices with
`shard_map` over the logical "mixture" axis (each device scores different mixtures, with the
experts and eval arrays replicated). When the experts do not fit on one device, `shard_experts`
places them FSDP/tensor-sharded by the model's parameter specs instead (`shard_expert_stack`) and
every mixture of the chunk uses all devices in turn (XLA gathers each weight as it is used). The
last chunk is padded with copies of a real row, so every call has the same shape and nothing
recompiles. On several processes (jax.distributed) every process passes the same host arrays, the
mesh spans all of them, and the scores are gathered with `multihost_utils.process_allgather`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval.suite import EvalSuite, evaluate
from mergemix_jax.merge.operators import merge
from mergemix_jax.merge.stack import ExpertStack
from mergemix_jax.model import param_partition_specs
from mergemix_jax.parallel.partitioning import logical_to_spec

MergeFn = Callable[[ExpertStack, jax.Array], dict]


def merge_fn_for(method: str = "linear", scale: float = 1.0, **options) -> MergeFn:
    """A (stack, weights [K]) -> params function for `merge` with fixed method and options."""
    return functools.partial(merge, method=method, scale=scale, **options)


def score_one(cfg: ModelConfig, stack: ExpertStack, weights_K: jax.Array, suite: EvalSuite, merge_fn: MergeFn = merge) -> dict:
    """All metrics of the model merged with weights [K] (pure; jit/grad friendly)."""
    return evaluate(cfg, merge_fn(stack, weights_K), suite)


def shard_expert_stack(cfg: ModelConfig, stack: ExpertStack, mesh: jax.sharding.Mesh) -> ExpertStack:
    """The stack with base and experts sharded like the model's parameters on `mesh` (the expert axis
    K stays whole), so its memory per device falls with the number of fsdp x tensor devices."""
    specs = param_partition_specs(cfg)
    is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
    base_shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=is_spec)
    expert_shardings = jax.tree.map(lambda spec: NamedSharding(mesh, PartitionSpec(None, *spec)), specs, is_leaf=is_spec)
    return ExpertStack(_put(stack.base, base_shardings), _put(stack.experts, expert_shardings), stack.names, stack.dilution)


def replicate(tree, mesh: jax.sharding.Mesh | None):
    """`tree` replicated on every device of `mesh` (unchanged without a mesh)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return _put(tree, jax.tree.map(lambda _: sharding, tree))


def _put(tree, shardings):
    """device_put that also works when the shardings span several processes: each process passes its
    (identical) host copy, so committed single-device arrays are fetched to the host first."""
    if jax.process_count() > 1:
        tree = jax.tree.map(np.asarray, tree)
    return jax.device_put(tree, shardings)


def mixture_devices(mesh: jax.sharding.Mesh | None, shard_experts: bool = False) -> int:
    """How many devices split the mixtures of a chunk (1 without a mesh or with sharded experts)."""
    if mesh is None or shard_experts:
        return 1
    spec = logical_to_spec(("mixture",))[0]
    axes = spec if isinstance(spec, tuple) else (spec,)
    return int(np.prod([mesh.shape[a] for a in axes if a is not None]))


def make_chunk_scorer(
    cfg: ModelConfig,
    merge_fn: MergeFn = merge,
    mesh: jax.sharding.Mesh | None = None,
    shard_experts: bool = False,
    mixtures_per_step: int = 1,
) -> Callable:
    """A jitted (stack, weights [C, K], suite) -> {metric: [C]} scoring C mixtures per chunk,
    `mixtures_per_step` at a time per device (vmapped); C must be a multiple of `mixture_devices(mesh)`.
    With `shard_experts` the shardings come from the arguments (a `shard_expert_stack` stack); call
    it inside `jax.set_mesh(mesh)`."""
    if mixtures_per_step < 1:
        raise ValueError(f"eval.mixtures_per_step must be >= 1 (1 = one mixture at a time), got {mixtures_per_step}")
    per_step = None if mixtures_per_step == 1 else mixtures_per_step

    def local(stack, weights_CxK, suite):
        return jax.lax.map(lambda w: score_one(cfg, stack, w, suite, merge_fn), weights_CxK, batch_size=per_step)

    if mesh is None or shard_experts:
        return jax.jit(local)
    mixture_spec = logical_to_spec(("mixture",))
    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(*mixture_spec, None), PartitionSpec()),
        out_specs=PartitionSpec(*mixture_spec),
        check_vma=False,
    )
    return jax.jit(sharded)


def iter_scores(
    cfg: ModelConfig,
    stack: ExpertStack,
    weights_BxK: np.ndarray,
    suite: EvalSuite,
    rows: Sequence[int] | None = None,
    mixtures_per_device: int = 4,
    merge_fn: MergeFn = merge,
    mesh: jax.sharding.Mesh | None = None,
    scorer: Callable | None = None,
    shard_experts: bool = False,
    mixtures_per_step: int = 1,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Yield (row indices [c], {metric: [c]}) chunk by chunk for the given rows (default: all).

    Chunk c+1 is dispatched before chunk c's results are fetched, so the host never idles the devices.
    With `shard_experts`, `stack` must come from `shard_expert_stack` on `mesh`.
    """
    weights_BxK = np.asarray(weights_BxK, np.float32)
    rows = np.arange(len(weights_BxK)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return
    chunk = mixtures_per_device * mixture_devices(mesh, shard_experts)
    scorer = scorer or make_chunk_scorer(cfg, merge_fn, mesh, shard_experts, mixtures_per_step)
    weight_spec = PartitionSpec() if shard_experts else PartitionSpec(*logical_to_spec(("mixture",)), None)
    weight_sharding = NamedSharding(mesh, weight_spec) if mesh is not None else None
    pending = None
    for start in range(0, len(rows), chunk):
        chunk_rows = rows[start : start + chunk]
        padded = np.concatenate([chunk_rows, np.full(chunk - len(chunk_rows), chunk_rows[0])])
        w = weights_BxK[padded]
        w = _put(w, weight_sharding) if weight_sharding is not None else jnp.asarray(w)
        with jax.set_mesh(mesh) if shard_experts else contextlib.nullcontext():
            result = scorer(stack, w, suite)
        if pending is not None:
            yield _fetch(*pending)
        pending = (chunk_rows, result)
    yield _fetch(*pending)


def _fetch(chunk_rows: np.ndarray, result: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The chunk's scores on the host; on several processes gathered from every process's devices."""
    host = multihost_utils.process_allgather(result, tiled=True) if jax.process_count() > 1 else jax.device_get(result)
    return chunk_rows, {k: np.asarray(v)[: len(chunk_rows)] for k, v in host.items()}


def score_mixtures(cfg: ModelConfig, stack: ExpertStack, weights_BxK: np.ndarray, suite: EvalSuite, **options) -> dict[str, np.ndarray]:
    """{metric: [B]} for every row of weights [B, K] (collects `iter_scores`; options as there)."""
    parts = list(iter_scores(cfg, stack, weights_BxK, suite, **options))
    return {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
