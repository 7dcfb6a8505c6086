"""The evaluation suite: fixed held-out batches per domain and tokenised tasks, scored as one pytree.

Metric names: loss/<domain>, loss/mean (the unweighted mean over domains); for a multiple-choice
task acc/, acc_norm/, ce/, ce_norm/<task>; for an exact-answer task exact/, answer_nll/<task>.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from mergemix_jax.config import ModelConfig
from mergemix_jax.data.batches import BATCH_KEYS
from mergemix_jax.eval.metrics import heldout_loss, sequence_nll
from mergemix_jax.eval.tasks import TASK_KINDS, TaskArrays

SMOOTH_PREFIXES = ("loss/", "ce/", "ce_norm/", "answer_nll/")  # differentiable w.r.t. merge weights
LOWER_IS_BETTER_PREFIXES = SMOOTH_PREFIXES


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class EvalSuite:
    """heldout: domain -> batch-format dict [N, L]; tasks: task name -> TaskArrays.
    micro_batch (static): rows per forward pass (0 = all rows of a component at once)."""

    heldout: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    micro_batch: int = field(default=0, metadata={"static": True})


def make_suite(heldout: Mapping[str, Mapping] | None = None, tasks: Mapping[str, TaskArrays] | None = None, micro_batch: int = 0) -> EvalSuite:
    """Build a suite, checking every held-out batch has the batch-format keys and matching shapes."""
    heldout = dict(heldout or {})
    for domain, batch in heldout.items():
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise ValueError(f"held-out batch of domain {domain!r} lacks keys {missing}; expected {list(BATCH_KEYS)}")
        shapes = {k: np.shape(batch[k]) for k in BATCH_KEYS}
        if len(set(shapes.values())) != 1 or len(shapes["inputs"]) != 2:
            raise ValueError(f"held-out batch of domain {domain!r}: every key must be [rows, seq], got {shapes}")
    if not heldout and not tasks:
        raise ValueError("an evaluation suite needs at least one held-out domain or task")
    clean = {d: {k: jnp.asarray(b[k]) for k in BATCH_KEYS} for d, b in heldout.items()}
    return EvalSuite(heldout=clean, tasks=dict(tasks or {}), micro_batch=micro_batch)


def evaluate(cfg: ModelConfig, params: dict, suite: EvalSuite) -> dict[str, jax.Array]:
    """Every metric of one model on the suite, as float32 scalars keyed by name (see module doc)."""
    out: dict[str, jax.Array] = {}
    for domain, batch in suite.heldout.items():
        nll, count, _ = sequence_nll(cfg, params, batch, suite.micro_batch)
        out[f"loss/{domain}"] = heldout_loss(nll, count)
    if suite.heldout:
        out["loss/mean"] = jnp.mean(jnp.stack([out[f"loss/{d}"] for d in suite.heldout]))
    for name, task in suite.tasks.items():
        nll, count, greedy_ok = sequence_nll(cfg, params, task.batch, suite.micro_batch)
        metrics = TASK_KINDS[task.kind].score(nll, count, greedy_ok, task)
        out.update({f"{key}/{name}": value for key, value in metrics.items()})
    return {k: v.astype(jnp.float32) for k, v in out.items()}


def metric_names(suite: EvalSuite) -> list[str]:
    """Names `evaluate` returns for this suite, in order, without running a model."""
    names = [f"loss/{d}" for d in suite.heldout] + (["loss/mean"] if suite.heldout else [])
    for name, task in suite.tasks.items():
        names += [f"{k}/{name}" for k in TASK_KINDS[task.kind].metrics]
    return names


def smooth_metric_names(suite: EvalSuite) -> list[str]:
    """The differentiable metrics (lower is better), the ones a gradient or quadratic proxy can use."""
    return [n for n in metric_names(suite) if n.startswith(SMOOTH_PREFIXES)]
