"""Train a base model, a domain expert or a reference model on a mixture; resumable."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from mergemix_jax.config import Config, save_config
from mergemix_jax.data.sources import split_signature
from mergemix_jax.model import count_params, init_params
from mergemix_jax.model.params import param_shapes
from mergemix_jax.parallel.mesh import build_mesh, maybe_initialize_distributed
from mergemix_jax.reliability import atomic_write_json, check_free_space
from mergemix_jax.reliability.lineage import newest_metadata, params_fingerprint
from mergemix_jax.train.checkpoint import (
    latest_step,
    load_params,
    make_manager,
    restore_newest_good,
    save_checkpoint,
)
from mergemix_jax.train.guards import DivergenceGuard, TrainingDiverged, check_resumable
from mergemix_jax.train.metrics import MetricsLog
from mergemix_jax.train.step import (
    BATCH_KEYS,
    TrainState,
    abstract_train_state,
    batch_sharding,
    init_train_state,
    train_state_shardings,
    training_parts,
)

log = logging.getLogger(__name__)

DONE_FILE = "done.json"
__all__ = ["DONE_FILE", "TrainResult", "TrainingDiverged", "build_dataset", "checkpoint_bytes", "is_finished", "train"]


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    tokens_per_second: float
    resumed_from: int | None


def build_dataset(config: Config):
    """The grain dataset of training batches for this process (mixture from `train.mixture`): its own
    rows, or the whole global batch with `data.split_by_process=false` (see `_whole_batches`)."""
    from mergemix_jax.data import make_train_dataset

    split = not _whole_batches(config)
    return make_train_dataset(
        config.data,
        config.train.mixture,
        seq_len=config.train.seq_len,
        global_batch_size=config.train.batch_size,
        seed=config.train.data_seed,
        process_index=jax.process_index() if split else 0,
        process_count=jax.process_count() if split else 1,
    )


def _whole_batches(config: Config) -> bool:
    """True when every process reads the whole global batch (several processes, data.split_by_process=false)."""
    return jax.process_count() > 1 and not config.data.split_by_process


def is_finished(run_dir: str | os.PathLike) -> bool:
    """True once a run wrote its final checkpoint and done marker."""
    return (Path(run_dir) / DONE_FILE).is_file()


def train(config: Config, *, resume: bool = True, dataset: Any = None, config_source: str = "config") -> TrainResult:
    """Run `config.train.steps` steps and leave a final checkpoint in `train.output_dir`.

    With `resume`, a run directory holding checkpoints continues from the newest one (params,
    optimizer state, data position), giving the same result as an uninterrupted run.
    `dataset` (a grain dataset or any iterable with get_state/set_state iterators) overrides
    the configured data, for notebooks and tests.
    """
    maybe_initialize_distributed()
    tc = config.train
    run_dir = Path(tc.output_dir).resolve()
    finished = _recorded_result(run_dir, tc.steps) if resume else None
    if tc.init_from and dataset is None:  # an imported base's own tokenizer must be the one that makes the data
        from mergemix_jax.train.base_tokenizer import check_base_tokenizer

        check_base_tokenizer(tc.init_from, config.data.tokenizer, "train.init_from")
    if resume:  # refuse, before anything is written, a resume that would mix two trainings
        check_resumable(config, run_dir, latest_step(run_dir))
    if dataset is None:  # the tokenizer's ids must fit the embedding table
        from mergemix_jax.data.tokenizer import check_vocab, load_tokenizer

        check_vocab(load_tokenizer(config.data), config.model)
    mesh = build_mesh(config.mesh, source=config_source)
    _check_batch_fits_mesh(config, mesh, config_source)
    tx, step_fn = training_parts(config.model, config.optim, tc.steps, mesh, tc.grad_accum_steps)
    data = dataset if dataset is not None else build_dataset(config)
    whole = dataset is None and _whole_batches(config)  # every process holds the whole global batch
    data_iterator = iter(data)
    base_params = None
    if tc.init_from and not (resume and latest_step(run_dir) is not None):
        with jax.set_mesh(mesh):  # a wrong or unreadable base fails here, before anything is written
            base_params, _ = load_params(tc.init_from, config.model, mesh)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_free_space(run_dir, checkpoint_bytes(config) * (tc.keep_checkpoints + 1), f"keeping {tc.keep_checkpoints} checkpoint(s)")
    manager = make_manager(run_dir, tc.keep_checkpoints)

    with jax.set_mesh(mesh):
        start, state = _initial_state(config, tx, mesh, manager, resume, data_iterator, base_params)
        _write_config(config, run_dir)  # after a restore succeeded: config.yaml stays that of the checkpoints
        lineage = _lineage(config, run_dir, start, state.params)
        if finished is not None and start == tc.steps:  # restored (so verified) the final step
            manager.close()
            log.info("%s already finished %d steps; nothing to do", run_dir, tc.steps)
            return finished
        metrics_log = MetricsLog(run_dir / "metrics.jsonl", resume_step=start if start is not None else -1)
        try:
            final_loss, tps = _run_steps(config, state, step_fn, data_iterator, mesh, manager, metrics_log, start or 0, lineage, whole)
        finally:
            manager.wait_until_finished()
            metrics_log.close()
            manager.close()
    if jax.process_index() == 0:
        atomic_write_json(run_dir / DONE_FILE, {"steps": tc.steps, "final_loss": final_loss, "tokens_per_second": tps, **lineage})
    return TrainResult(run_dir, tc.steps, final_loss, tps, start)


def _check_batch_fits_mesh(config: Config, mesh, source: str) -> None:
    """ConfigError when train.batch_size does not split evenly over the mesh's data x fsdp devices."""
    from mergemix_jax.config import ConfigError

    devices = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.train.batch_size % devices:
        raise ConfigError(f"{source}: key 'train.batch_size' ({config.train.batch_size}) must be divisible by the {devices} devices of mesh axes data x fsdp that a batch is split over")


def _recorded_result(run_dir: Path, steps: int) -> TrainResult | None:
    """The result `done.json` records for a run that finished exactly `steps` steps, else None."""
    if not is_finished(run_dir):
        return None
    try:
        done = json.loads((run_dir / DONE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if done.get("steps") != steps:
        return None
    return TrainResult(run_dir, steps, float(done["final_loss"]), float(done.get("tokens_per_second", 0.0)), steps)


def checkpoint_bytes(config: Config) -> int:
    """Bytes of one checkpoint step: float32 params plus AdamW's two moments (the data state is tiny)."""
    return 3 * sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(param_shapes(config.model)))


def _initial_state(config: Config, tx, mesh, manager, resume: bool, data_iterator, base_params=None) -> tuple[int | None, TrainState]:
    """(step resumed from or None, state): the newest restorable checkpoint, else a fresh start (from
    `base_params` when `train.init_from` was already loaded)."""
    model_cfg = config.model
    if resume and manager.all_steps():
        abstract = abstract_train_state(model_cfg, tx, mesh)
        start, params, opt_state = restore_newest_good(manager, abstract.params, abstract.opt_state, data_iterator)
        log.info("resumed %s from step %d", config.train.output_dir, start)
        return start, TrainState(jax.device_put(np.int32(start), abstract.step.sharding), params, opt_state)
    if config.train.init_from:
        params = base_params if base_params is not None else load_params(config.train.init_from, model_cfg, mesh)[0]
        log.info("initialised from %s", config.train.init_from)
    else:
        params = init_params(model_cfg, config.train.seed, mesh)
    log.info("model: %.2fM parameters", count_params(params) / 1e6)
    init = jax.jit(lambda p: init_train_state(p, tx), out_shardings=train_state_shardings(model_cfg, tx, mesh))
    return None, init(params)


def _lineage(config: Config, run_dir: Path, start: int | None, params) -> dict:
    """{"base_fingerprint": ...} of the parameters a `train.init_from` run started from ({} from scratch).

    Computed from the loaded base on a fresh start, carried over from the checkpoint metadata on a
    resume (where the base parameters are no longer at hand); stacking experts compares it with
    the base's own `params_fingerprint` (mergemix_jax/reliability/lineage.py).
    """
    if not config.train.init_from:
        return {}
    if start is None:
        return {"base_fingerprint": params_fingerprint(params)}
    recorded = newest_metadata(run_dir).get("base_fingerprint")
    return {"base_fingerprint": recorded} if recorded else {}


def _global_batch(batch: dict, sharding, whole: bool = False) -> dict:
    """The global batch array from this process's rows, or (`whole`) from the whole batch every process holds."""
    arrays = {k: np.asarray(batch[k]) for k in BATCH_KEYS}
    if whole:
        return {k: jax.make_array_from_callback(x.shape, sharding, x.__getitem__) for k, x in arrays.items()}
    return {k: jax.make_array_from_process_local_data(sharding, x) for k, x in arrays.items()}


def _run_steps(config, state, step_fn, data_iterator: Iterator, mesh, manager, metrics_log, start: int, lineage: dict, whole: bool = False):
    tc = config.train
    sharding = batch_sharding(mesh)
    metadata = {"model": dataclasses.asdict(config.model), "mixture": tc.mixture, "init_from": tc.init_from, "data_split": split_signature(config.data), **lineage}
    bar = tqdm(total=tc.steps, initial=start, disable=not tc.progress or jax.process_index() != 0, desc="train")
    pending: tuple[int, dict] | None = None
    throughput = Throughput()
    guard = DivergenceGuard(tc.divergence_factor, tc.output_dir, f"lower optim.learning_rate (now {config.optim.learning_rate:g})")
    last_loss = math.nan
    with bar:  # closed on an error too, so the message starts on its own line
        for step in range(start, tc.steps):
            state, metrics = step_fn(state, _global_batch(next(data_iterator), sharding, whole))
            if pending is not None:  # fetch step t's metrics after step t+1 is dispatched
                last_loss = _report(pending, throughput, tc, bar, metrics_log, guard)
            pending = (step + 1, metrics)
            if (step + 1) % tc.checkpoint_every == 0 or step + 1 == tc.steps:
                last_loss = _report(pending, throughput, tc, bar, metrics_log, guard)  # checked before it is saved
                pending = None
                save_checkpoint(manager, step + 1, state.params, state.opt_state, data_iterator, metadata)
        if pending is not None:
            last_loss = _report(pending, throughput, tc, bar, metrics_log, guard)
    return last_loss, throughput.rate


class Throughput:
    """Tokens per second, timed from the end of the first step so compilation is not counted."""

    def __init__(self):
        self.tokens, self.started = 0.0, None

    def add(self, tokens: float) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        else:
            self.tokens += tokens

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started if self.started is not None else 0.0
        return self.tokens / elapsed if elapsed > 0 else 0.0


def _report(pending, throughput: Throughput, tc, bar, metrics_log, guard: DivergenceGuard) -> float:
    step, metrics = pending
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    guard.check(step, values["loss"])
    throughput.add(values["tokens"])
    bar.update(step - bar.n)
    rate = throughput.rate
    bar.set_postfix(loss=f"{values['loss']:.4f}", tok_s=f"{rate:,.0f}")
    if step % tc.log_every == 0 or step == tc.steps:
        metrics_log.write({"step": step, **values, "tokens_per_second": rate, "time": time.time()})
    return values["loss"]


def _write_config(config: Config, run_dir: Path) -> None:
    if jax.process_index() == 0:
        save_config(config, run_dir / "config.yaml")
