"""`evaluate_mixtures`: score a table of mixtures into one resumable results file (the CLI's engine),
plus loaders that build the expert stack and the evaluation suite from checkpoints and a config."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from mergemix_jax.config import Config, EvalConfig, ModelConfig
from mergemix_jax.eval.batched import (
    MergeFn,
    iter_scores,
    make_chunk_scorer,
    merge_fn_for,
    replicate,
    score_one,
    shard_expert_stack,
)
from mergemix_jax.eval.ensemble import ensemble_metric_names, ensemble_metrics
from mergemix_jax.eval.quadratic import quadratic_scores
from mergemix_jax.eval.results import ResultsFileError, append_results, open_results, result_columns, score_settings
from mergemix_jax.eval.suite import EvalSuite, make_suite, metric_names, smooth_metric_names
from mergemix_jax.eval.tasks import tokenize_task
from mergemix_jax.merge.operators import MERGE_OPERATORS
from mergemix_jax.merge.stack import ExpertStack, build_expert_stack
from mergemix_jax.merge.weights import validate_weights, weights_hash

log = logging.getLogger(__name__)
PROXIES = ("exact", "quadratic", "ensemble")


def _merge_key(eval_cfg: EvalConfig) -> tuple:
    operator = MERGE_OPERATORS.get(eval_cfg.merge)
    if operator is None:
        raise ValueError(f"eval.merge {eval_cfg.merge!r} is not a merge operator; choose one of {tuple(MERGE_OPERATORS)}")
    return eval_cfg.merge, eval_cfg.merge_scale, tuple(sorted(operator.options(eval_cfg).items()))


def merge_fn_from_config(eval_cfg: EvalConfig) -> MergeFn:
    """The merge operator and options named by the eval config."""
    method, scale, options = _merge_key(eval_cfg)
    return merge_fn_for(method, scale, **dict(options))


@functools.lru_cache(maxsize=16)
def _cached_scorer(model_cfg: ModelConfig, merge_key: tuple, mesh: jax.sharding.Mesh | None, shard_experts: bool = False, per_step: int = 1):
    method, scale, options = merge_key
    return make_chunk_scorer(model_cfg, merge_fn_for(method, scale, **dict(options)), mesh, shard_experts, per_step)


@functools.lru_cache(maxsize=16)
def _cached_metrics_fn(model_cfg: ModelConfig, merge_key: tuple, names: tuple[str, ...]):
    method, scale, options = merge_key
    merge_fn = merge_fn_for(method, scale, **dict(options))

    def fn(weights_K, stack, suite):
        scores = score_one(model_cfg, stack, weights_K, suite, merge_fn)
        return jax.numpy.stack([scores[n] for n in names])

    return fn


def proxy_metrics_fn(model_cfg: ModelConfig, eval_cfg: EvalConfig, names: tuple[str, ...]) -> Callable:
    """(weights [K], stack, suite) -> the named metrics [M] of the merged model, one object per
    (model, merge, names) so the quadratic proxy's compiled fit is reused across calls."""
    return _cached_metrics_fn(model_cfg, _merge_key(eval_cfg), tuple(names))


def chunk_scorer_for(model_cfg: ModelConfig, eval_cfg: EvalConfig, mesh: jax.sharding.Mesh | None = None):
    """The jitted chunk scorer for this model, merge and mesh, built once per process and reused, so
    repeated `evaluate_mixtures` calls (a search, a resumed job) trace and compile it only once."""
    return _cached_scorer(model_cfg, _merge_key(eval_cfg), mesh, eval_cfg.shard_experts and mesh is not None, eval_cfg.mixtures_per_step)


def load_expert_stack(
    base_dir: str | os.PathLike, expert_dirs: Sequence[str | os.PathLike], model_cfg: ModelConfig | None = None, step: int | None = None
) -> tuple[ExpertStack, ModelConfig]:
    """Read the base and expert checkpoints (train run folders) into an ExpertStack named by folder
    (each expert's newest checkpoint, or its checkpoint `step`)."""
    from mergemix_jax.reliability.lineage import check_experts_share_base
    from mergemix_jax.train.checkpoint import load_params  # orbax import only when checkpoints are read

    check_experts_share_base(base_dir, expert_dirs)
    base, cfg = load_params(base_dir, model_cfg)
    experts = [load_params(d, cfg, step=step)[0] for d in expert_dirs]
    names = [Path(d).resolve().name for d in expert_dirs]
    if len(set(names)) != len(names):
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    return build_expert_stack(base, experts, names), cfg


def build_suite(config: Config, tokenizer=None) -> EvalSuite:
    """Held-out batches of every configured domain plus the tasks in `eval.task_dir`, tokenised once."""
    from mergemix_jax.data import heldout_batches, load_task_dir, load_tokenizer
    from mergemix_jax.data.contamination import warn_contamination
    from mergemix_jax.data.errors import DataError

    e = config.eval
    tokenizer = tokenizer or load_tokenizer(config.data)
    heldout = {}
    for domain in config.data.domains:
        (batch,) = heldout_batches(config.data, domain.name, seq_len=e.seq_len, n_sequences=e.heldout_sequences, batch_size=e.heldout_sequences, skip=e.heldout_offset)
        heldout[domain.name] = batch
    tasks = {}
    if e.task_dir:
        loaded = load_task_dir(e.task_dir)
        for key, names in (("eval.tasks", e.tasks), ("eval.choice_as_answer", e.choice_as_answer)):
            unknown = sorted(set(names) - set(loaded))
            if unknown:
                raise DataError(f"{key} names task(s) {unknown} with no <name>.jsonl in eval.task_dir {e.task_dir}; it holds {sorted(loaded)}")
        loaded = {name: task_items(name, items, e.task_offset, e.task_max_items) for name, items in loaded.items() if not e.tasks or name in e.tasks}
        loaded = {name: [as_answer_item(i) for i in items] if name in e.choice_as_answer else items for name, items in loaded.items()}
        if config.data.domains:  # a warning names every task item found verbatim in a training split
            warn_contamination(config.data, loaded)
        for name, items in sorted(loaded.items()):
            tasks[name] = tokenize_task(items, tokenizer, name, e.task_max_len, e.task_truncate)
    return make_suite(heldout, tasks, micro_batch=e.micro_batch)


def task_items(name: str, items: list, offset: int, max_items: int) -> list:
    """Items [offset, offset + max_items) of task `name` (max_items 0 = all after the offset); an offset
    that leaves no item is an error naming the task and the fix."""
    from mergemix_jax.data.errors import DataError

    if offset and offset >= len(items):
        raise DataError(f"task '{name}' has {len(items)} items, all inside eval.task_offset = {offset}; add items to its .jsonl or lower the offset (validation sets it to the search's eval.task_max_items)")
    kept = items[offset:]
    return kept[:max_items] if max_items else kept


def as_answer_item(item):
    """A multiple-choice item as an exact-answer item whose answer is its correct choice (eval.choice_as_answer):
    scored by the per-token NLL of the right continuation alone (answer_nll), one row instead of one per choice."""
    from mergemix_jax.data.tasks import TaskItem

    if item.choices is None:
        return item
    return TaskItem(item.id, item.context, item.choices[item.correct_index], None, item.meta)


_STALE = 2  # a row of the results file scored for other weights


def _row_state(out: str | os.PathLike, columns: list[str], hashes: list[str], settings: dict | None = None) -> np.ndarray:
    """[B] int8: 1 = already in the results file, 0 = to score, _STALE = scored for other weights.
    Process 0 opens (or creates) the file; on several processes it tells the others."""
    state = np.zeros(len(hashes), np.int8)
    if jax.process_index() == 0:
        for row, h in open_results(out, columns, settings).items():
            state[min(row, len(hashes) - 1)] = 1 if row < len(hashes) and hashes[row] == h else _STALE
    if jax.process_count() > 1:
        state = np.asarray(multihost_utils.broadcast_one_to_all(state))
    return state


def evaluate_mixtures(
    model_cfg: ModelConfig,
    stack: ExpertStack,
    weights,
    suite: EvalSuite,
    out: str | os.PathLike,
    eval_cfg: EvalConfig | None = None,
    proxy: str = "exact",
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
) -> dict:
    """Score every row of `weights` [B, K] into the CSV `out`, skipping rows it already holds.

    proxy="exact" merges and evaluates each mixture (all metrics), mixtures split over `mesh`;
    "quadratic" fits the second-order proxy of the smooth metrics (see eval/quadratic.py) and writes
    its predictions (one program on the default device: `mesh` is not used); "ensemble" writes the
    output-space ensemble's held-out losses (eval/ensemble.py; its expert log-probabilities cached in
    `<folder of out>/ensemble-cache`), and refuses a suite with tasks, whose metrics it cannot score.
    Returns {"out", "scored", "skipped", "metrics"} (plus "centres"/"checks" for the proxy).
    """
    eval_cfg = eval_cfg or EvalConfig()
    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}; choose one of {PROXIES}")
    weights = validate_weights(weights, stack.num_experts)
    hashes = [weights_hash(w) for w in weights]
    names = metric_names(suite) if proxy == "exact" else smooth_metric_names(suite)
    if proxy == "ensemble":
        names = ensemble_metric_names(suite)
        if not names:
            raise ValueError(f"the ensemble proxy scores held-out losses and exact-answer tasks; the suite has neither (tasks {sorted(suite.tasks)}): use the exact proxy")
    columns = result_columns(stack.names, names)
    state = _row_state(out, columns, hashes, score_settings(model_cfg, stack, suite, eval_cfg, proxy))
    if (state == _STALE).any():
        row = int(np.argmax(state == _STALE))
        raise ResultsFileError(f"{out}: row {row} was scored for other weights than this job's; write to a new --out file or delete it")
    todo = np.flatnonzero(state == 0).astype(np.int64)
    summary: dict = {"out": str(out), "scored": len(todo), "skipped": int((state == 1).sum()), "metrics": names}
    if len(todo) == 0:
        return summary
    writer = jax.process_index() == 0  # several processes (jax.distributed): all score, process 0 writes
    bar = tqdm(total=len(weights), initial=summary["skipped"], desc=f"mixtures ({proxy})", unit="mix", disable=not progress)
    if proxy == "exact":
        shard = eval_cfg.shard_experts and mesh is not None
        stack = shard_expert_stack(model_cfg, stack, mesh) if shard else replicate(stack, mesh)
        suite = replicate(suite, mesh)
        scorer = chunk_scorer_for(model_cfg, eval_cfg, mesh)
        chunks = iter_scores(
            model_cfg, stack, weights, suite, rows=todo, mixtures_per_device=eval_cfg.mixtures_per_device, mesh=mesh,
            scorer=scorer, shard_experts=shard,
        )  # fmt: skip
        non_finite: list[int] = []
        for rows, metrics in chunks:
            if writer:
                append_results(out, rows, [hashes[r] for r in rows], weights[rows], metrics, names)
            finite = np.all([np.isfinite(np.asarray(metrics[n], np.float64)) for n in names], axis=0)
            non_finite += [int(r) for r in np.asarray(rows)[~finite]]
            bar.update(len(rows))
        summary["non_finite_rows"] = non_finite
        if non_finite:
            log.warning(
                "%s: %d mixtures scored NaN/inf (rows %s...); they are written as nan/inf and search ranks them last",
                out, len(non_finite), non_finite[:10],
            )  # fmt: skip
    elif proxy == "ensemble":
        predictions = ensemble_metrics(model_cfg, stack, suite, weights[todo], cache_dir=Path(out).parent / "ensemble-cache")
        if writer:
            append_results(out, todo, [hashes[r] for r in todo], weights[todo], predictions, names)
        bar.update(len(todo))
    else:
        if eval_cfg.objective not in names:
            raise ValueError(f"eval.objective {eval_cfg.objective!r} is not a smooth metric of this suite; choose one of {names}")

        fn = proxy_metrics_fn(model_cfg, eval_cfg, tuple(names))
        result = quadratic_scores(
            fn, weights[todo], objective=names.index(eval_cfg.objective), tol=eval_cfg.quadratic_tol,
            max_centres=eval_cfg.quadratic_max_centres, args=(stack, suite), radius=eval_cfg.quadratic_radius,
        )  # fmt: skip
        predictions = {n: result.predictions[:, j] for j, n in enumerate(names)}
        if writer:
            append_results(out, todo, [hashes[r] for r in todo], weights[todo], predictions, names)
        bar.update(len(todo))
        summary.update(centres=[c.tolist() for c in result.centres], checks=result.checks, exact_rows=[int(r) for r in todo[result.exact]])
    bar.close()
    return summary
