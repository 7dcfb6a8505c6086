"""Imported bases as run directories (what `train.init_from` and `pipeline.base_dir` read) and run directories to HF.

The layout is the training run's (mergemix_jax/train/checkpoint.py): `<run>/checkpoints/<step>/`
with a `params` and a `meta` item; an imported base is step 0 with no optimizer state, its metadata
records `imported_from`, and its tokenizer (when the source had one) lies beside it as
`tokenizer.json` or `tokenizer.model`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mergemix_jax.config import ModelConfig
from mergemix_jax.interop.llama_layout import InteropError

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")  # HF `tokenizers`, sentencepiece: the names load_tokenizer reads


def save_base(params: dict, model_cfg: ModelConfig, run_dir: str | os.PathLike, source: str) -> Path:
    """Write `params` as step 0 of run directory `run_dir`, readable by `train.init_from`."""
    from mergemix_jax.train.checkpoint import latest_step, save_params

    if latest_step(run_dir) is not None:
        raise InteropError(f"{run_dir} already holds checkpoints; choose a new --out folder")
    save_params(run_dir, params, model_cfg, step=0, metadata={"imported_from": source})
    return Path(run_dir)


def is_imported_base(run_dir: str | os.PathLike) -> bool:
    """True for a folder `mergemix import-base` wrote (its newest checkpoint records `imported_from`)."""
    from mergemix_jax.reliability.lineage import newest_metadata

    return "imported_from" in newest_metadata(run_dir)


def copy_tokenizer(checkpoint_dir: Path, run_dir: Path) -> Path | None:
    """Copy the checkpoint folder's own tokenizer (tokenizer.json, else sentencepiece tokenizer.model)
    beside the run; None when the folder has neither (nothing is taken from anywhere else)."""
    for name in TOKENIZER_FILES:
        found = checkpoint_dir / name
        if found.is_file():
            shutil.copyfile(found, run_dir / name)
            return run_dir / name
    return None


def base_tokenizer_file(run_dir: str | os.PathLike) -> Path | None:
    """The tokenizer file stored beside a run (imported bases), or None."""
    for name in TOKENIZER_FILES:
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_base_tokenizer(base_dir: str | os.PathLike, tokenizer: str, key: str) -> None:
    """Refuse a config whose `data.tokenizer` is not the tokenizer an imported base carries.

    A base imported with its tokenizer was trained on that tokenizer's ids: training or scoring it on
    another tokenizer's ids is a silent wrong answer. `data.tokenizer` must name a file with the same
    contents (the copy in the base folder, or the original). Raises ConfigError naming `key` (the
    option that named the base) and the fix. A base with no tokenizer file is not judged (a warning).
    """
    from mergemix_jax.config import ConfigError

    stored = base_tokenizer_file(base_dir)
    if stored is None:
        if is_imported_base(base_dir):
            log.warning("%s %s was imported without a tokenizer: data.tokenizer (%s) is assumed to be the one it was trained with", key, base_dir, tokenizer)
        return
    given = Path(tokenizer) if tokenizer not in ("", "byte") else None
    if given is not None and given.is_file() and _digest(given) == _digest(stored):
        return
    raise ConfigError(
        f"{key} {base_dir} carries its own tokenizer ({stored}) but data.tokenizer is {tokenizer!r}: its weights only make sense with "
        f"the token ids they were trained on; set data.tokenizer={stored} (and model.vocab_size to the base's)"
    )


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
