"""An imported base's own tokenizer: a base folder written by `mergemix import-base` may carry the
tokenizer its weights were trained with (`tokenizer.json` or `tokenizer.model` beside the run), and
training or scoring it on another tokenizer's ids is refused (`check_base_tokenizer`)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from mergemix_jax.config import ConfigError
from mergemix_jax.reliability.lineage import newest_metadata

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")  # HF `tokenizers`, sentencepiece: the names load_tokenizer reads


def is_imported_base(run_dir: str | os.PathLike) -> bool:
    """True for a folder `mergemix import-base` wrote (its newest checkpoint records `imported_from`)."""
    return "imported_from" in newest_metadata(run_dir)


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
