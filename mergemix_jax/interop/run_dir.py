"""Imported bases as run directories (what `train.init_from` and `pipeline.base_dir` read) and run directories to HF.

The layout is the training run's (mergemix_jax/train/checkpoint.py): `<run>/checkpoints/<step>/`
with a `params` and a `meta` item; an imported base is step 0 with no optimizer state, its metadata
records `imported_from`, and its tokenizer (when the source had one) lies beside it as
`tokenizer.json` or `tokenizer.model`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mergemix_jax.config import ModelConfig
from mergemix_jax.interop.llama_layout import InteropError
from mergemix_jax.train.base_tokenizer import TOKENIZER_FILES, base_tokenizer_file

log = logging.getLogger(__name__)


def save_base(params: dict, model_cfg: ModelConfig, run_dir: str | os.PathLike, source: str) -> Path:
    """Write `params` as step 0 of run directory `run_dir`, readable by `train.init_from`."""
    from mergemix_jax.train.checkpoint import latest_step, save_params

    if latest_step(run_dir) is not None:
        raise InteropError(f"{run_dir} already holds checkpoints; choose a new --out folder")
    save_params(run_dir, params, model_cfg, step=0, metadata={"imported_from": source})
    return Path(run_dir)


def copy_tokenizer(checkpoint_dir: Path, run_dir: Path) -> Path | None:
    """Copy the checkpoint folder's own tokenizer (tokenizer.json, else sentencepiece tokenizer.model)
    beside the run; None when the folder has neither (nothing is taken from anywhere else)."""
    for name in TOKENIZER_FILES:
        found = checkpoint_dir / name
        if found.is_file():
            shutil.copyfile(found, run_dir / name)
            return run_dir / name
    return None


def run_tokenizer(run_dir: str | os.PathLike):
    """(tokenizer, "") for the tokenizer a run used: its own tokenizer.json / tokenizer.model (imported
    bases), else its config.yaml's data.tokenizer; (None, why not) when it names none or it cannot be read."""
    import yaml

    from mergemix_jax.config import DataConfig
    from mergemix_jax.data import DataError, load_tokenizer

    run_dir = Path(run_dir)
    stored = base_tokenizer_file(run_dir)
    name = str(stored) if stored is not None else None
    if name is None:
        try:
            name = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("data", {}).get("tokenizer")
        except (OSError, yaml.YAMLError, AttributeError):
            name = None
    if not isinstance(name, str) or not name:
        return None, f"{run_dir} names no tokenizer (no tokenizer.json or tokenizer.model, no data.tokenizer in config.yaml)"
    try:
        return load_tokenizer(DataConfig(tokenizer=name)), ""
    except DataError as err:
        return None, f"its tokenizer cannot be read ({err})"


@contextlib.contextmanager
def replacing_folder(out: str | os.PathLike, overwrite: bool, keep: str | os.PathLike) -> Iterator[Path]:
    """A new staging folder beside `out`, swapped in for `out` when the block succeeds (removed when it fails).

    `out` must be new or empty, or, with `overwrite`, is replaced whole (no stale files remain).
    It may not be or contain `keep` (the run being exported), nor be a run folder (checkpoints/).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InteropError(f"--out {out} is a file; give a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    target, source = out.resolve(), Path(keep).resolve()
    if target == source or target in source.parents:
        raise InteropError(f"--out {out} holds the run {keep} being exported; choose another folder")
    if entries and not overwrite:
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        raise InteropError(f"--out {out} is not empty ({shown}); pass --overwrite to replace it, or choose a new folder")
    if entries and (out / "checkpoints").is_dir():
        raise InteropError(f"--out {out} is a run folder (it has checkpoints/); --overwrite only replaces export folders; choose another")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes folders private; give the usual permissions
    try:
        yield staging
        old = staging.with_suffix(".old")
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
