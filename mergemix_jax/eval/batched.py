"""Score many merged models: one compiled chunk function, called in a host loop over fixed-size chunks.

Within a chunk, `lax.map` merges and scores one mixture at a time per device, so memory holds one
merged model per device whatever B is. On a mesh the chunk's mixtures are split across devices with
`shard_map` over the logical "mixture" axis (each device scores different mixtures, with the
experts and eval arrays replicated). The last chunk is padded with copies of a real row, so every
call has the same shape and nothing recompiles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval.suite import EvalSuite, evaluate
from mergemix_jax.merge.operators import merge
from mergemix_jax.merge.stack import ExpertStack
from mergemix_jax.parallel.partitioning import logical_to_spec

MergeFn = Callable[[ExpertStack, jax.Array], dict]


def merge_fn_for(method: str = "linear", scale: float = 1.0, **options) -> MergeFn:
    """A (stack, weights [K]) -> params function for `merge` with fixed method and options."""
    return functools.partial(merge, method=method, scale=scale, **options)


def score_one(cfg: ModelConfig, stack: ExpertStack, weights_K: jax.Array, suite: EvalSuite, merge_fn: MergeFn = merge) -> dict:
    """All metrics of the model merged with weights [K] (pure; jit/grad friendly)."""
    return evaluate(cfg, merge_fn(stack, weights_K), suite)


def mixture_devices(mesh: jax.sharding.Mesh | None) -> int:
    """How many devices split the mixtures of a chunk (1 without a mesh)."""
    if mesh is None:
        return 1
    spec = logical_to_spec(("mixture",))[0]
    axes = spec if isinstance(spec, tuple) else (spec,)
    return int(np.prod([mesh.shape[a] for a in axes if a is not None]))


def make_chunk_scorer(cfg: ModelConfig, merge_fn: MergeFn = merge, mesh: jax.sharding.Mesh | None = None) -> Callable:
    """A jitted (stack, weights [C, K], suite) -> {metric: [C]} scoring C mixtures sequentially per
    device; C must be a multiple of `mixture_devices(mesh)`."""

    def local(stack, weights_CxK, suite):
        return jax.lax.map(lambda w: score_one(cfg, stack, w, suite, merge_fn), weights_CxK)

    if mesh is None:
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
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Yield (row indices [c], {metric: [c]}) chunk by chunk for the given rows (default: all).

    Chunk c+1 is dispatched before chunk c's results are fetched, so the host never idles the devices.
    """
    weights_BxK = np.asarray(weights_BxK, np.float32)
    rows = np.arange(len(weights_BxK)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return
    chunk = mixtures_per_device * mixture_devices(mesh)
    scorer = scorer or make_chunk_scorer(cfg, merge_fn, mesh)
    weight_sharding = NamedSharding(mesh, PartitionSpec(*logical_to_spec(("mixture",)), None)) if mesh is not None else None
    pending = None
    for start in range(0, len(rows), chunk):
        chunk_rows = rows[start : start + chunk]
        padded = np.concatenate([chunk_rows, np.full(chunk - len(chunk_rows), chunk_rows[0])])
        w = weights_BxK[padded]
        w = jax.device_put(w, weight_sharding) if weight_sharding is not None else jnp.asarray(w)
        result = scorer(stack, w, suite)
        if pending is not None:
            yield _fetch(*pending)
        pending = (chunk_rows, result)
    yield _fetch(*pending)


def _fetch(chunk_rows: np.ndarray, result: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    host = jax.device_get(result)
    return chunk_rows, {k: np.asarray(v)[: len(chunk_rows)] for k, v in host.items()}


def score_mixtures(cfg: ModelConfig, stack: ExpertStack, weights_BxK: np.ndarray, suite: EvalSuite, **options) -> dict[str, np.ndarray]:
    """{metric: [B]} for every row of weights [B, K] (collects `iter_scores`; options as there)."""
    parts = list(iter_scores(cfg, stack, weights_BxK, suite, **options))
    return {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
