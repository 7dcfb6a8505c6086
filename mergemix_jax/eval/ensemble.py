"""The output-space ensemble proxy: a mixture's model is the experts' probability average.

p_a(t) = sum_k a_k p_k(t) (as in the MDE paper). Only the target token's probability enters the
held-out loss, so the K experts' target log-probabilities are computed once (K forward passes over
the suite's held-out batches, `expert_logprobs`) and every mixture's loss per domain is a masked
mean over tokens of logsumexp_k(log a_k + log p_k(t)) -- no forward pass per mixture. It is computed
as log(a @ exp(logp - c_t)) + c_t with c_t = max_k log p_k(t), one matrix product per chunk of
mixtures; tokens where that underflows fall back to the log-sum-exp itself. On a CPU the numpy
backend (float64) scored ~1,600 mixtures/s of 8,192 tokens, the jitted jax one ~900/s
(benchmarks/ensemble_eval.py), so numpy is the default; "jax" is there for accelerators.

Defined: held-out losses (loss/<domain>, loss/mean) and the answer NLL of every exact-answer task
(answer_nll/<task>: the same log-sum-exp over the answer tokens, each item's tokens weighted
1 / (its length x items), the mean of per-item per-token NLLs as eval.metrics.answer_metrics). Choice
accuracies, exact match and choice cross-entropies need more than the target tokens' probabilities
(the mixture's argmax, every choice), which the cache does not hold.

The log-probabilities can be cached in a folder (`cache_dir`): one .npz per expert under
`ensemble-<hash>`, the hash naming the parameters (by content), the held-out tokens and the model
config; each file is written atomically, so a job killed midway resumes with the experts it has.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from mergemix_jax.config import ModelConfig
from mergemix_jax.config.hashing import config_hash
from mergemix_jax.eval.suite import BATCH_KEYS, EvalSuite
from mergemix_jax.eval.tasks import ANSWER
from mergemix_jax.merge.stack import ExpertStack
from mergemix_jax.model import forward, token_nll
from mergemix_jax.parallel.multihost import agree
from mergemix_jax.parallel.partitioning import logical_to_spec
from mergemix_jax.reliability.atomic import atomic_write_bytes
from mergemix_jax.reliability.lineage import params_fingerprint

CHUNK_ELEMENTS = 1 << 23  # mixtures x tokens per chunk (~64 MB of float64 on the host)


@dataclass(frozen=True)
class ExpertLogprobs:
    """Per held-out domain: logp_KxT, the K experts' log-probabilities of the T target tokens with a
    non-zero loss mask, and mask_T, those tokens' mask weights (the suite's loss_mask). Per
    exact-answer task the same in task_logp_KxT, with task_weight_T the weights that make the
    weighted sum the task's answer_nll (see module doc)."""

    names: tuple[str, ...]
    logp_KxT: dict[str, np.ndarray]
    mask_T: dict[str, np.ndarray]
    task_logp_KxT: dict[str, np.ndarray] = field(default_factory=dict)
    task_weight_T: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.logp_KxT)

    def losses(self, weights_NxK, backend: str = "numpy", chunk_elements: int = CHUNK_ELEMENTS) -> dict[str, np.ndarray]:
        """{loss/<domain>, loss/mean, answer_nll/<task>: [N] float64} of the probability-averaged experts,
        `chunk_elements` mixtures x tokens at a time; backend "numpy" (float64) or "jax" (jitted,
        float32 on the default device)."""
        w = _check_weights(weights_NxK, len(self.names))
        if backend not in ("numpy", "jax"):
            raise ValueError(f"backend must be 'numpy' or 'jax', got {backend!r}")
        one = _domain_loss_numpy if backend == "numpy" else _domain_loss_jax
        def weighted(logp: np.ndarray, weight_T: np.ndarray) -> np.ndarray:
            rows = max(1, chunk_elements // max(logp.shape[1], 1))
            parts = [one(w[s : s + rows], logp, weight_T, rows) for s in range(0, len(w), rows)]
            return np.concatenate(parts) if parts else np.zeros(0)

        out = {f"loss/{domain}": weighted(logp, self.mask_T[domain]) for domain, logp in self.logp_KxT.items()}
        if self.domains:
            out["loss/mean"] = np.mean([out[f"loss/{d}"] for d in self.domains], axis=0)
        out |= {f"answer_nll/{task}": weighted(logp, self.task_weight_T[task]) for task, logp in self.task_logp_KxT.items()}
        return out


def _check_weights(weights_NxK, k: int) -> np.ndarray:
    w = np.asarray(weights_NxK, np.float64)
    if w.ndim != 2 or w.shape[1] != k:
        raise ValueError(f"mixture weights must be [N, {k}] (one column per expert), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("mixture weights must be finite and >= 0")
    if len(w) and (w.sum(axis=1) <= 0).any():
        raise ValueError(f"mixture row {int(np.argmax(w.sum(axis=1) <= 0))} has no positive weight; every mixture needs one")
    return w


def _domain_loss_numpy(w_NxK: np.ndarray, logp_KxT: np.ndarray, mask_T: np.ndarray, rows: int = 0) -> np.ndarray:
    """-masked mean_t log sum_k w_k p_k(t), [N], via one matrix product per chunk (see module doc)."""
    logp = logp_KxT.astype(np.float64)
    top_T = logp.max(axis=0)
    with np.errstate(divide="ignore"):
        mixed_NxT = np.log(w_NxK @ np.exp(logp - top_T)) + top_T
    bad = ~np.isfinite(mixed_NxT)
    if bad.any():  # a zero-weighted expert held all the probability: the log-sum-exp itself
        with np.errstate(divide="ignore"):
            exact = np.logaddexp.reduce(np.log(w_NxK)[:, :, None] + logp[None], axis=1)
        mixed_NxT = np.where(bad, exact, mixed_NxT)
    return -(mixed_NxT @ mask_T.astype(np.float64)) / max(float(mask_T.sum()), 1.0)


@jax.jit
def _domain_loss_device(w_NxK: jax.Array, logp_KxT: jax.Array, mask_T: jax.Array) -> jax.Array:
    log_w = jnp.log(w_NxK)
    mixed_NxT = jax.nn.logsumexp(log_w[:, :, None] + logp_KxT[None], axis=1)
    return -(mixed_NxT @ mask_T) / jnp.maximum(mask_T.sum(), 1.0)


def _domain_loss_jax(w_NxK: np.ndarray, logp_KxT: np.ndarray, mask_T: np.ndarray, rows: int) -> np.ndarray:
    """The same as `_domain_loss_numpy`, jitted; a short chunk is padded to the next power of two (at
    most `rows`), so a few sizes compile."""
    n = len(w_NxK)
    size = min(rows, 1 << max(n - 1, 0).bit_length())
    padded = np.concatenate([w_NxK, np.ones((size - n, w_NxK.shape[1]))]) if n < size else w_NxK
    got = _domain_loss_device(jnp.asarray(padded, jnp.float32), jnp.asarray(logp_KxT, jnp.float32), jnp.asarray(mask_T, jnp.float32))
    return np.asarray(got, np.float64)[:n]


# ---- the K forward passes -------------------------------------------------------------------


def _token_logprobs(cfg: ModelConfig, params: dict, batch: dict) -> jax.Array:
    """log p(target) of every position of a batch [R, L] (float32)."""
    return -token_nll(forward(cfg, params, batch["inputs"], batch["positions"], batch["segment_ids"]), batch["targets"])


@functools.partial(jax.jit, static_argnums=(0, 1))
def _expert_logprobs(cfg: ModelConfig, micro_batch: int, experts: dict, k: jax.Array, batch: dict) -> jax.Array:
    """[R, L] target log-probabilities of expert k (sliced inside the program: experts are arguments,
    never constants), `micro_batch` rows per forward pass (0 = all)."""
    params = jax.tree.map(lambda e: e[k], experts)
    rows = batch["inputs"].shape[0]
    if not micro_batch or rows <= micro_batch:
        return _token_logprobs(cfg, params, batch)
    steps = -(-rows // micro_batch)
    pad = steps * micro_batch - rows

    def split(x):
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        return x.reshape(steps, micro_batch, *x.shape[1:])

    out = jax.lax.map(lambda b: _token_logprobs(cfg, params, b), {key: split(batch[key]) for key in BATCH_KEYS})
    return out.reshape(steps * micro_batch, -1)[:rows]


def _mesh_of(tree) -> jax.sharding.Mesh | None:
    sharding = getattr(jax.tree.leaves(tree)[0], "sharding", None)
    return sharding.mesh if isinstance(sharding, NamedSharding) else None


def _place_rows(batch: dict, mesh: jax.sharding.Mesh | None, experts_replicated: bool) -> dict:
    """The batch with its rows split over the mesh's mixture devices (data parallel), when the experts
    are replicated and the rows divide evenly; otherwise as it is (sharded experts: every device helps)."""
    if mesh is None or not experts_replicated:
        return batch
    spec = logical_to_spec(("mixture",))[0]
    axes = spec if isinstance(spec, tuple) else (spec,)
    devices = int(np.prod([mesh.shape[a] for a in axes if a is not None]))
    if devices <= 1 or batch["inputs"].shape[0] % devices:
        return batch
    sharding = NamedSharding(mesh, PartitionSpec(spec, None))
    return {key: jax.device_put(np.asarray(v) if jax.process_count() > 1 else v, sharding) for key, v in batch.items()}


def _host(x: jax.Array) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def answer_tasks(suite: EvalSuite) -> dict:
    """The suite's exact-answer tasks (name -> TaskArrays): the tasks whose answer_nll the ensemble scores."""
    return {name: task for name, task in suite.tasks.items() if task.kind == ANSWER}


def ensemble_metric_names(suite: EvalSuite) -> list[str]:
    """The metrics `ExpertLogprobs.losses` returns for this suite."""
    domains = [f"loss/{d}" for d in suite.heldout] + (["loss/mean"] if suite.heldout else [])
    return domains + [f"answer_nll/{t}" for t in answer_tasks(suite)]


def one_expert_logprobs(cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite, k: int) -> dict[str, np.ndarray]:
    """{"logp/<domain>": [T] float32 log-probabilities of expert k, "mask/<domain>": [T] the mask weights}
    over the held-out tokens with a non-zero loss mask, and {"tasklogp/<task>", "taskweight/<task>"}
    over each exact-answer task's answer tokens (one jitted forward pass per domain or task)."""
    mesh = _mesh_of(stack.experts)
    replicated = all(getattr(x, "sharding", None) is None or x.sharding.is_fully_replicated for x in jax.tree.leaves(stack.experts))
    out = {}

    def target_logprobs(batch: dict) -> tuple[np.ndarray, np.ndarray]:
        logp_RxL = _host(_expert_logprobs(cfg, suite.micro_batch, stack.experts, jnp.int32(k), _place_rows(batch, mesh, replicated)))
        return logp_RxL, _host(batch["loss_mask"]).astype(np.float32)

    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        for domain, batch in suite.heldout.items():
            logp_RxL, mask_RxL = target_logprobs(batch)
            keep = mask_RxL != 0
            out[f"logp/{domain}"], out[f"mask/{domain}"] = logp_RxL[keep].astype(np.float32), mask_RxL[keep]
        for name, task in answer_tasks(suite).items():
            logp_RxL, mask_RxL = target_logprobs({key: jnp.asarray(task.batch[key]) for key in BATCH_KEYS})
            count_R = mask_RxL.sum(axis=1, keepdims=True)
            weight_RxL = np.divide(mask_RxL, count_R * len(mask_RxL), out=np.zeros_like(mask_RxL), where=count_R > 0)
            keep = mask_RxL != 0
            out[f"tasklogp/{name}"], out[f"taskweight/{name}"] = logp_RxL[keep].astype(np.float32), weight_RxL[keep]
    return out


def cache_key(cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite) -> str:
    """Hex identity of what the cached log-probabilities depend on: expert names and parameters (by
    content), the held-out tokens (every value) and the model config."""
    identity = {
        "experts": list(stack.names),
        "params": params_fingerprint(stack.experts),
        "heldout": params_fingerprint(suite.heldout, samples_per_leaf=None),
        "answer_tasks": {name: params_fingerprint(dict(task.batch), samples_per_leaf=None) for name, task in answer_tasks(suite).items()},
        "model": asdict(cfg),
    }
    return config_hash(identity, compact=False)


def _iter_experts(cfg, stack, suite, folder: Path | None) -> Iterator[dict[str, np.ndarray]]:
    """Each expert's arrays, read from `folder` when cached there, else computed (and cached)."""
    for k, name in enumerate(stack.names):
        path = folder / f"{k}-{name}.npz" if folder is not None else None
        if path is not None and agree(path.exists()):  # multi-host: process 0's answer, so all compute or none
            with np.load(path) as cached:
                yield dict(cached)
            continue
        arrays = one_expert_logprobs(cfg, stack, suite, k)
        if path is not None and jax.process_index() == 0:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            atomic_write_bytes(path, buffer.getvalue())
        yield arrays


def expert_logprobs(cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite, cache_dir: str | os.PathLike | None = None) -> ExpertLogprobs:
    """The K experts' target log-probabilities on the suite's held-out batches (K forward passes, or
    none when `cache_dir` already holds them for this stack and suite; see the module doc)."""
    tasks = list(answer_tasks(suite))
    if not suite.heldout and not tasks:
        raise ValueError("the ensemble proxy scores held-out losses and exact-answer tasks: the evaluation suite has neither")
    folder = Path(cache_dir) / f"ensemble-{cache_key(cfg, stack, suite)}" if cache_dir is not None else None
    per_expert = list(_iter_experts(cfg, stack, suite, folder))
    domains = list(suite.heldout)
    logp = {d: np.stack([a[f"logp/{d}"] for a in per_expert]) for d in domains}
    task_logp = {t: np.stack([a[f"tasklogp/{t}"] for a in per_expert]) for t in tasks}
    return ExpertLogprobs(
        tuple(stack.names), logp, {d: per_expert[0][f"mask/{d}"] for d in domains}, task_logp, {t: per_expert[0][f"taskweight/{t}"] for t in tasks}
    )


def ensemble_metrics(model_cfg: ModelConfig, stack: ExpertStack, suite: EvalSuite, weights_NxK, cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """{loss/<domain>, loss/mean, answer_nll/<exact-answer task>: [N]} of the output-space ensemble
    of the experts for each mixture (weights [N, K]; for diluted experts weighted by the
    dilution-corrected coefficients, like the merge); merged evaluation's names. Other task metrics
    are not defined."""
    coefficients = weights_NxK if stack.dilution is None else np.asarray(stack.coefficients(np.asarray(weights_NxK, np.float32)), np.float64)
    return expert_logprobs(model_cfg, stack, suite, cache_dir).losses(coefficients)
