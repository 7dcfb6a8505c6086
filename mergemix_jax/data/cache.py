"""The domain index and token counts on disk, once per data version, shared by a job's processes.

An entry's key is a hash of what decides its value: the domain's files with their sizes and
mtimes (a URL: its fsspec ukey; the same stamps as sources.index_domain's in-process cache), its
parsing fields and split settings, and for token counts the tokenizer file's bytes. A changed
file, field or tokenizer is a new key, so nothing is ever invalidated by hand.

Process 0 computes a missing entry and writes it atomically; in a multi-host job it then posts
the key on jax.distributed's key-value store, and the other processes wait for that post (not
for a barrier, so a process 0 that computes alone, e.g. for its report, blocks nobody) and read
the file, or compute the entry themselves when the cache folder is not shared with process 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mergemix_jax.config.schema import DataConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
ENV = "MERGEMIX_CACHE_DIR"


def cache_root(data_cfg: DataConfig) -> Path:
    """data.cache_dir, else $MERGEMIX_CACHE_DIR, else $XDG_CACHE_HOME/mergemix (~/.cache/mergemix)."""
    if data_cfg.cache_dir:
        return Path(data_cfg.cache_dir).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mergemix"


def entry_key(*parts: Any) -> str:
    """A short hash of JSON-able `parts` (file stamps, fields, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def file_digest(path: str) -> str:
    """sha256 of a (small) file's bytes, e.g. a tokenizer."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shared(path: Path, build: Callable[[], T], dump: Callable[[T], bytes], load: Callable[[bytes], T]) -> T:
    """The value cached at `path`: read when present, else built by process 0 and written atomically
    (other processes wait for it, see the module docstring). An unreadable or unwritable cache is
    skipped with a warning: the value is then built here."""
    from mergemix_jax.parallel import multihost
    from mergemix_jax.reliability.atomic import atomic_write_bytes

    cached = _read(path, load)
    if cached is not None:
        _post(path)
        return cached
    if multihost.is_writer():
        value = build()
        try:
            atomic_write_bytes(path, dump(value))
        except OSError as err:
            log.warning("cannot write the data cache %s (%s); set data.cache_dir to a writable folder", path, err)
        _post(path)
        return value
    _wait_for_writer(path)
    cached = _read(path, load)
    if cached is None:
        log.info("data cache %s is not shared with process 0; computing it here", path)
        return build()
    return cached


def _read(path: Path, load: Callable[[bytes], T]) -> T | None:
    try:
        return load(path.read_bytes()) if path.is_file() else None
    except Exception as err:  # a truncated or foreign file: rebuild it
        log.warning("ignoring unreadable data cache %s (%s: %s)", path, type(err).__name__, err)
        return None


def _kv_key(path: Path) -> str:
    return f"mergemix-data-cache-{path.name}"


def _post(path: Path) -> None:
    """Tell the other processes of a multi-host job that `path` is written (process 0 only)."""
    from mergemix_jax.parallel import multihost

    if multihost.is_multiprocess() and multihost.is_writer():
        with contextlib.suppress(Exception):  # already posted by an earlier call of this job
            multihost._client().key_value_set(_kv_key(path), "1")


def _wait_for_writer(path: Path) -> None:
    from mergemix_jax.parallel import multihost

    if multihost.is_multiprocess():
        multihost._client().blocking_key_value_get(_kv_key(path), multihost.TIMEOUT_MS)


def dump_json(value: Any) -> bytes:
    """JSON bytes of a cache entry."""
    return json.dumps(value, sort_keys=True).encode()


def load_json(data: bytes) -> Any:
    """A JSON cache entry."""
    return json.loads(data)


def dump_arrays(arrays: dict[str, Any]) -> bytes:
    """An .npz of named numpy arrays."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_arrays(data: bytes) -> dict[str, Any]:
    """The arrays of an .npz written by dump_arrays."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
