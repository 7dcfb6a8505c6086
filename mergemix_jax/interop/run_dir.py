"""Imported bases as run directories (what `train.init_from` reads) and run directories to HF.

The layout is the training run's (mergemix_jax/train/checkpoint.py): `<run>/checkpoints/<step>/`
with a `params` and a `meta` item; an imported base is step 0 with no optimizer state.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mergemix_jax.config import ModelConfig
from mergemix_jax.interop.llama_layout import InteropError


def save_base(params: dict, model_cfg: ModelConfig, run_dir: str | os.PathLike, source: str) -> Path:
    """Write `params` as step 0 of run directory `run_dir`, readable by `train.init_from`."""
    from mergemix_jax.train.checkpoint import latest_step, save_params

    if latest_step(run_dir) is not None:
        raise InteropError(f"{run_dir} already holds checkpoints; choose a new --out folder")
    save_params(run_dir, params, model_cfg, step=0, metadata={"imported_from": source})
    return Path(run_dir)


def copy_tokenizer(source_dir: Path, run_dir: Path) -> Path | None:
    """Copy a Hugging Face folder's tokenizer.json beside the run, if it has one."""
    found = source_dir / "tokenizer.json"
    if not found.is_file():
        return None
    shutil.copyfile(found, run_dir / "tokenizer.json")
    return run_dir / "tokenizer.json"


def run_tokenizer(run_dir: str | os.PathLike):
    """(tokenizer, "") for the tokenizer a run used: its own tokenizer.json (imported bases), else its
    config.yaml's data.tokenizer; (None, why not) when it names none or it cannot be read."""
    import yaml

    from mergemix_jax.config import DataConfig
    from mergemix_jax.data import DataError, load_tokenizer

    run_dir = Path(run_dir)
    name = str(run_dir / "tokenizer.json") if (run_dir / "tokenizer.json").is_file() else None
    if name is None:
        try:
            name = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("data", {}).get("tokenizer")
        except (OSError, yaml.YAMLError, AttributeError):
            name = None
    if not isinstance(name, str) or not name:
        return None, f"{run_dir} names no tokenizer (no tokenizer.json, no data.tokenizer in config.yaml)"
    try:
        return load_tokenizer(DataConfig(tokenizer=name)), ""
    except DataError as err:
        return None, f"its tokenizer cannot be read ({err})"
