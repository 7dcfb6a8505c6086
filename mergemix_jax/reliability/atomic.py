"""Whole-file writes that never leave a half-written file: temp name in the same folder, fsync, os.replace.

A reader sees either the old file or the new one, even if the process is killed (SIGKILL,
preemption) or the disk fills up mid-write; a full disk raises `DiskFullError` naming the file.
In a multi-host job only process 0 writes (parallel/multihost.py): the others return at once, and
code that reads the file back on every process syncs first (`write_once`).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mergemix_jax.parallel.multihost import is_writer
from mergemix_jax.reliability.resources import DiskFullError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (parent folders are created); returns the path.
    A no-op on processes other than 0 of a multi-host job."""
    path = Path(path)
    if not is_writer():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; the file gets the mode `open` would give it
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise DiskFullError(f"disk full while writing {path} ({len(data):,} bytes); free space on that disk or write elsewhere") from err
        raise
    _fsync_dir(path.parent)
    return path


def _mode_for(path: Path) -> int:
    """The permission bits a plain `open(path, "w")` would leave: an existing file's, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(
    path: str | os.PathLike, payload: Any, indent: int | None = 2, *, allow_nan: bool = False, default: Callable[[Any], Any] | None = None
) -> Path:
    """Write `payload` as JSON plus a newline atomically; returns the path. The one JSON writer of
    the package: every JSON output file (run records, mixture files, calibrations, exports) goes
    through it, so each is written whole, with the usual permissions (0644 under umask 022).

    Strict by default (NaN/inf refused: they are not JSON); `allow_nan=True` for records where an
    undefined statistic is NaN. `default` converts what json cannot (e.g. `json_default`)."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, allow_nan=allow_nan, default=default) + "\n")


def json_default(value: Any) -> Any:
    """For `atomic_write_json(default=...)`: numpy arrays and scalars as lists/numbers, anything else as str."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry), where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
