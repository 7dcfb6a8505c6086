"""Content identity of parameters, and the check that experts were fine-tuned from the base they are merged with.

A folder name says nothing about what is inside (every pipeline base is called `base`), so each
checkpoint records `params_fingerprint` of its parameters and each run trained with
`train.init_from` records `base_fingerprint`, the fingerprint of the parameters it started from.
Stacking compares the two. The fingerprint hashes every leaf's path, shape and dtype and the bytes of
an evenly strided grid of at most ~4096 of its values, gathered on device: a few KB per leaf, so it
is cheap at any scale, independent of the mesh, and any two different bases (or a base trained on)
differ in it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mergemix_jax.reliability.checkpoints import CheckpointError

log = logging.getLogger(__name__)

SAMPLES_PER_LEAF = 4096


def params_fingerprint(params: Any, samples_per_leaf: int | None = SAMPLES_PER_LEAF) -> str:
    """A short hex identity of a pytree of arrays (see the module doc); `samples_per_leaf=None` hashes every value."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        shape = tuple(np.shape(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{shape}|{np.dtype(leaf.dtype).name}|".encode())
        digest.update(np.ascontiguousarray(_strided_sample(leaf, samples_per_leaf)).tobytes())
    return digest.hexdigest()[:32]


def _strided_sample(leaf: Any, limit: int | None) -> np.ndarray:
    shape = np.shape(leaf)
    if limit is None or not shape or int(np.prod(shape)) <= limit:
        picked = leaf
    else:
        per_dim = max(1, int(limit ** (1 / len(shape))))
        picked = leaf[tuple(slice(None, None, max(1, size // per_dim)) for size in shape)]
    if isinstance(picked, jax.Array) and not picked.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(picked, tiled=True))
    return np.asarray(picked)


def newest_metadata(run_dir: str | os.PathLike) -> dict:
    """The JSON metadata of a run folder's newest checkpoint step ({} when it has none or it is unreadable)."""
    steps = Path(run_dir) / "checkpoints"
    numbers = sorted(int(p.name) for p in steps.iterdir() if p.name.isdigit()) if steps.is_dir() else []
    if not numbers:
        return {}
    try:
        return json.loads((steps / str(numbers[-1]) / "meta" / "metadata").read_text())
    except (OSError, ValueError):
        return {}


def recorded_fingerprint(run_dir: str | os.PathLike) -> str | None:
    """The `params_fingerprint` recorded in a run's newest checkpoint (None for runs saved before it existed)."""
    return newest_metadata(run_dir).get("params_fingerprint")


def run_identity(run_dir: str | os.PathLike) -> str:
    """What a run folder holds now: its newest checkpoint's fingerprint, else (older runs) its path and newest step."""
    recorded = recorded_fingerprint(run_dir)
    if recorded:
        return recorded
    steps = Path(run_dir) / "checkpoints"
    numbers = sorted(int(p.name) for p in steps.iterdir() if p.name.isdigit()) if steps.is_dir() else []
    return f"{Path(run_dir).resolve()} step {numbers[-1] if numbers else None}"


def check_run_folders(base_dir: str | os.PathLike, expert_dirs: Sequence[str | os.PathLike]) -> None:
    """Raise CheckpointError naming the option to fix when the base or an expert folder does not exist."""
    if not Path(base_dir).is_dir():
        raise CheckpointError(f"base run folder {base_dir} does not exist; check --base (a folder that `mergemix train` or `mergemix import-base` wrote)")
    missing = [str(d) for d in expert_dirs if not Path(d).is_dir()]
    if missing:
        raise CheckpointError(f"expert run folder {missing[0]} holds no finished checkpoint: the folder does not exist; check --experts")


_NO_FINGERPRINT = (
    "no parameter fingerprint recorded (a run saved by an older mergemix), so lineage is judged by the folder name "
    "of train.init_from only; retrain the run to have it checked by content"
)


def check_experts_share_base(base_dir: str | os.PathLike, expert_dirs: Sequence[str | os.PathLike]) -> None:
    """Raise CheckpointError when an expert was not fine-tuned from the parameters in `base_dir`.

    Merging is only meaningful for experts fine-tuned from one shared base. Experts record the
    fingerprint of the parameters they started from and checkpoints record their own; those two are
    compared. Runs saved before fingerprints were recorded are judged by the folder name of
    `train.init_from`, with a warning; runs without any record (imported models) are not judged.
    """
    check_run_folders(base_dir, expert_dirs)
    base = Path(base_dir).resolve()
    base_print = recorded_fingerprint(base_dir)
    if base_print is None:
        log.warning("%s: %s", base_dir, _NO_FINGERPRINT)
    for expert in expert_dirs:
        meta = newest_metadata(expert)
        if "init_from" not in meta:
            continue
        origin = meta["init_from"]
        if not origin:
            raise CheckpointError(
                f"expert {expert} was trained from scratch (train.init_from was empty), not fine-tuned from the base {base_dir}; "
                f"retrain it with train.init_from={base_dir}"
            )
        expert_print = meta.get("base_fingerprint")
        if expert_print and base_print:
            if expert_print != base_print:
                raise CheckpointError(
                    f"expert {expert} was fine-tuned from other parameters than the base {base_dir} holds (it started from "
                    f"{origin}, parameter fingerprint {expert_print}; {base_dir} has {base_print}): experts from different bases "
                    f"cannot be merged; pass the expert's own base with --base, or retrain the expert with train.init_from={base_dir}"
                )
            continue
        if not expert_print:
            log.warning("%s: %s", expert, _NO_FINGERPRINT)
        if Path(origin).resolve() != base and Path(origin).name != base.name:
            raise CheckpointError(
                f"expert {expert} was fine-tuned from {Path(origin).resolve()}, not from the base {base}: experts from different bases "
                f"cannot be merged; pass --base {Path(origin).resolve()} or retrain the expert with train.init_from={base_dir}"
            )
