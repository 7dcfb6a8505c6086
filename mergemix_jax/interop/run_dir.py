"""Imported bases as run directories (what `train.init_from` reads) and run directories to HF.

The layout is the training run's (mergemix_jax/train/checkpoint.py): `<run>/checkpoints/<step>/`
with a `params` and a `meta` item; an imported base is step 0 with no optimizer state.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path
from typing import Any

from mergemix_jax.config import ModelConfig
from mergemix_jax.interop.llama_layout import InteropError

ARCHITECTURE_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "tie_embeddings")


def architecture_differences(imported: ModelConfig, wanted: ModelConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (imported, wanted)} for every shape-or-maths field that differs (empty if compatible)."""
    diff = {k: (getattr(imported, k), getattr(wanted, k)) for k in ARCHITECTURE_FIELDS if getattr(imported, k) != getattr(wanted, k)}
    if imported.resolved_head_dim != wanted.resolved_head_dim:
        diff["head_dim"] = (imported.resolved_head_dim, wanted.resolved_head_dim)
    for key in ("rope_theta", "norm_eps"):
        if not math.isclose(getattr(imported, key), getattr(wanted, key), rel_tol=1e-6):
            diff[key] = (getattr(imported, key), getattr(wanted, key))
    return diff


def save_base(params: dict, model_cfg: ModelConfig, run_dir: str | os.PathLike, source: str) -> Path:
    """Write `params` as step 0 of run directory `run_dir`, readable by `train.init_from`."""
    import orbax.checkpoint as ocp

    from mergemix_jax.train.checkpoint import latest_step, make_manager

    if latest_step(run_dir) is not None:
        raise InteropError(f"{run_dir} already holds checkpoints; choose a new --out folder")
    manager = make_manager(run_dir, keep=1)
    meta = {"model": dataclasses.asdict(model_cfg), "imported_from": source, "step": 0}
    manager.save(0, args=ocp.args.Composite(params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()
    manager.close()
    return Path(run_dir)


def copy_tokenizer(source_dir: Path, run_dir: Path) -> Path | None:
    """Copy a Hugging Face folder's tokenizer.json beside the run, if it has one."""
    found = source_dir / "tokenizer.json"
    if not found.is_file():
        return None
    shutil.copyfile(found, run_dir / "tokenizer.json")
    return run_dir / "tokenizer.json"
