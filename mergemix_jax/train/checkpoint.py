"""Orbax checkpoints of a training run: params, optimizer state, data-iterator state, metadata.

Layout of a run directory::

    <run>/config.yaml            the config that produced it
    <run>/metrics.jsonl          one JSON line per logged step
    <run>/checkpoints/<step>/    params | opt_state | data | meta   (orbax items, atomic commits)

Params are their own item, so the merge engine reads an expert without its optimizer state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from mergemix_jax.config import ModelConfig
from mergemix_jax.model.architecture import architecture_differences
from mergemix_jax.model.params import Params, param_shapes
from mergemix_jax.parallel.multihost import is_multiprocess
from mergemix_jax.reliability.checkpoints import CheckpointError, quarantine_step, short_error, step_problem
from mergemix_jax.reliability.lineage import params_fingerprint

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """`<run>/checkpoints` as an absolute path (orbax wants absolute paths)."""
    return Path(run_dir).resolve() / CHECKPOINTS


def make_manager(run_dir: str | os.PathLike, keep: int = 2) -> ocp.CheckpointManager:
    """A CheckpointManager for `<run>/checkpoints` keeping the newest `keep` steps."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(checkpoint_dir(run_dir), options=options)


def save_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    params: Params,
    opt_state: Any,
    data_iterator: Any | None,
    metadata: dict,
) -> None:
    """Save everything needed to resume at `step` (async; orbax commits it atomically).

    The metadata also records the parameters' content identity (`params_fingerprint`), which the
    lineage check of experts fine-tuned from this checkpoint compares against.
    """
    items = {
        "params": ocp.args.StandardSave(params),
        "opt_state": ocp.args.StandardSave(opt_state),
        "meta": ocp.args.JsonSave({**metadata, "step": int(step), "params_fingerprint": params_fingerprint(params)}),
    }
    if data_iterator is not None:
        import grain

        items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    manager.save(int(step), args=ocp.args.Composite(**items), force=True)


def save_params(run_dir: str | os.PathLike, params: Params, model_cfg: ModelConfig, step: int = 0, metadata: dict | None = None) -> None:
    """Write `params` alone as checkpoint `step` of a run (e.g. an imported base; no optimizer state).

    `load_params` and `train.init_from` read it like any training checkpoint.
    """
    manager = make_manager(run_dir, keep=1)
    meta = {**(metadata or {}), "model": dataclasses.asdict(model_cfg), "step": int(step), "params_fingerprint": params_fingerprint(params)}
    manager.save(int(step), args=ocp.args.Composite(params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()
    manager.close()


def restore_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    abstract_params: Any,
    abstract_opt_state: Any,
    data_iterator: Any | None,
) -> tuple[Params, Any, dict]:
    """Restore (params, opt_state, metadata) into the given abstract targets (any mesh).

    The data iterator, when given, is restored in place to continue the identical stream.
    """
    items = {
        "params": ocp.args.StandardRestore(abstract_params),
        "opt_state": ocp.args.StandardRestore(abstract_opt_state),
        "meta": ocp.args.JsonRestore(),
    }
    if data_iterator is not None:
        import grain

        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    step_dir = Path(manager.directory) / str(step)
    problem = step_problem(step_dir, tuple(items))
    if problem:
        raise CheckpointError(f"checkpoint step {step} is incomplete: {problem}; {_way_out(step_dir)}", damaged=step_dir.parent.parent)
    check_fits(step_dir, abstract_params)
    try:
        restored = manager.restore(int(step), args=ocp.args.Composite(**items))
    except Exception as err:  # TensorStore reports truncated or garbled files as a bare Exception
        raise CheckpointError(
            f"checkpoint step {step} in {manager.directory} cannot be restored ({short_error(err)}); {_way_out(step_dir)}", damaged=step_dir.parent.parent
        ) from err
    return restored["params"], restored["opt_state"], dict(restored["meta"])


def restore_newest_good(
    manager: ocp.CheckpointManager, abstract_params: Any, abstract_opt_state: Any, data_iterator: Any | None
) -> tuple[int, Params, Any] | None:
    """Restore the newest step that reads back: (step, params, opt_state), or None without checkpoints.

    When the newest step is partial or corrupt but an older one restores into the same targets,
    the bad step is moved to `<run>/corrupt_checkpoints/` with a warning and training goes on
    from the older one: it replays the same batches, so the final result is unchanged. When no
    step restores (e.g. the config changed), the newest step's error is raised and nothing moves.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    first_error: CheckpointError | None = None
    for step in steps:
        try:
            params, opt_state, _ = restore_checkpoint(manager, step, abstract_params, abstract_opt_state, data_iterator)
        except CheckpointError as err:
            if err.damaged is None:  # an intact checkpoint of another model: no older step is any better
                raise
            first_error = first_error or err
            log.warning("%s; trying the previous checkpoint", err)
            continue
        for bad in [s for s in steps if s > step and jax.process_index() == 0]:
            moved = quarantine_step(manager.directory, bad)
            log.warning("checkpoint step %d could not be restored: moved it to %s; resuming from step %d", bad, moved, step)
        manager.reload()
        return step, params, opt_state
    if first_error is not None:
        raise first_error
    return None


def check_fits(step_dir: Path, abstract_params: Any) -> None:
    """Raise CheckpointError when the checkpoint in `step_dir` was saved for another architecture than
    `abstract_params` (e.g. model.d_model changed between a run and its resume): the checkpoint is
    fine, the config no longer matches the run folder."""
    try:
        saved = ModelConfig(**json.loads((step_dir / "meta" / "metadata").read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no architecture recorded: orbax's restore is the check
    wanted = {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_params)}
    have = {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(param_shapes(saved))}
    if wanted == have:
        return
    name = next((k for k in sorted(set(wanted) | set(have)) if wanted.get(k) != have.get(k)), "")
    run_dir = step_dir.parent.parent
    fields = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len")
    raise CheckpointError(
        f"the config no longer matches the run folder {run_dir}: its checkpoints hold another model (parameter {name}: saved {have.get(name)}, "
        f"configured {wanted.get(name)}; the run was saved with {' '.join(f'model.{f}={getattr(saved, f)}' for f in fields)}). The checkpoints are intact: "
        "start a new run in another folder (train.output_dir, or a changed config for `mergemix run`), or use the run's model settings to resume it"
    )


def _way_out(step_dir: Path) -> str:
    """What to do about the damaged checkpoint `step_dir` (for `mergemix train` run folders; `mergemix
    run` retrains a damaged stage of its own run folder by itself)."""
    earlier = [s for s in _step_numbers(step_dir.parent) if s < int(step_dir.name)]
    rerun = "a stage of `mergemix run` is retrained by rerunning `mergemix run`"
    if not earlier:
        return f"no earlier checkpoint exists: delete {step_dir} and train again (mergemix train --no-resume); {rerun}"
    return (
        f"use the previous checkpoint (step {max(earlier)}): resuming `mergemix train` falls back to it by itself, "
        f"or move {step_dir} away so step {max(earlier)} is the newest (`mergemix export-hf RUN --step {max(earlier)}` reads it directly); {rerun}"
    )


def _step_numbers(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def latest_step(run_dir: str | os.PathLike) -> int | None:
    """The newest committed checkpoint step of a run, or None."""
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return None
    steps = ocp.utils.checkpoint_steps(directory)
    return max(steps) if steps else None


def check_loadable(run_dir: str | os.PathLike, model_cfg: ModelConfig | None = None, step: int | None = None) -> tuple[Path, ModelConfig]:
    """(step folder, model config) that `load_params` would read, checked without reading any array.

    Raises CheckpointError naming the run and the fix when the folder is missing, holds no finished
    checkpoint, or was saved for another architecture than `model_cfg`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} holds no finished checkpoint: the folder does not exist; check the path (train.init_from, --base, --experts or RUN)")
    found = latest_step(run_dir) if step is None else step
    if found is None:
        raise CheckpointError(f"{run_dir} holds no finished checkpoint under {CHECKPOINTS}/; train it first (mergemix train)", damaged=run_dir)
    step_dir = checkpoint_dir(run_dir) / str(found)
    problem = step_problem(step_dir, ("params", "meta"))
    if problem:
        raise CheckpointError(f"{run_dir}: an incomplete checkpoint: {problem}; {_way_out(step_dir)}", damaged=run_dir)
    meta = json.loads((step_dir / "meta" / "metadata").read_text())
    saved_cfg = ModelConfig(**meta["model"])
    if model_cfg is not None:
        diff = architecture_differences(saved_cfg, model_cfg)
        if diff:
            raise CheckpointError(
                f"{run_dir}: model architecture differs from the expected one (saved, expected): {diff}; "
                f"use the run's own architecture ({_overrides_for(saved_cfg, model_cfg, diff)}) or another run"
            )
        saved_cfg = model_cfg
    return step_dir, saved_cfg


def _overrides_for(saved: ModelConfig, wanted: ModelConfig, diff: dict) -> str:
    """`model.key=value` overrides that give `wanted` the saved architecture (head_dim only when set by hand)."""
    keys = [k for k in diff if k != "head_dim" or saved.head_dim != wanted.head_dim]
    return " ".join(f"model.{k}={getattr(saved, k)}" for k in keys)


def load_params(
    run_dir: str | os.PathLike,
    model_cfg: ModelConfig | None = None,
    mesh: jax.sharding.Mesh | None = None,
    step: int | None = None,
) -> tuple[Params, ModelConfig]:
    """Read only the parameters of a run's checkpoint (newest step unless `step`).

    Returns (params, model config). With `model_cfg` given, a checkpoint of a different
    architecture is an error and `model_cfg` is returned (its run-time fields, such as
    compute_dtype, win). With `mesh`, params are placed with the model's shardings; without, on one
    device (in a multi-host job: each process reads a whole copy onto its first local device).
    """
    step_dir, saved_cfg = check_loadable(run_dir, model_cfg, step)
    abstract = param_shapes(saved_cfg)
    if mesh is not None:
        from mergemix_jax.model.params import param_shardings

        abstract = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, param_shardings(saved_cfg, mesh)
        )
    elif is_multiprocess():  # orbax would restore the saved (multi-process) sharding
        local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=local), abstract)
    with ocp.StandardCheckpointer() as checkpointer:
        try:
            params = checkpointer.restore(step_dir / "params", abstract)
        except Exception as err:  # TensorStore reports truncated or garbled files as a bare Exception
            raise CheckpointError(f"{step_dir}/params cannot be read ({short_error(err)}); {_way_out(step_dir)}", damaged=run_dir) from err
    return params, saved_cfg
