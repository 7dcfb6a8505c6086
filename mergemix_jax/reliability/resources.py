"""Running out of disk or device memory, or an output folder that cannot be made: errors that name what
ran out (or what is in the way) and the setting to change."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM when allocating")


class DiskFullError(OSError):
    """Not enough free disk space for an output; the message names the folder and the need."""


class OutOfMemoryError(MemoryError):
    """XLA could not allocate device memory; the message says which setting to lower."""


def check_free_space(folder: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """Raise `DiskFullError` unless the disk holding `folder` has `needed_bytes` free.

    Checked before a long job starts, so it fails in seconds rather than at its first save.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise DiskFullError(
            f"{what} needs about {_human(needed_bytes)} in {folder} but that disk has {_human(free)} free; "
            "free some space or choose another output folder"
        )


def is_out_of_memory(err: BaseException) -> bool:
    """True for XLA's RESOURCE_EXHAUSTED (and numpy/host MemoryError) failures."""
    return isinstance(err, MemoryError) or any(marker in str(err) for marker in OOM_MARKERS)


@contextlib.contextmanager
def oom_hint(what: str, fix: str) -> Iterator[None]:
    """Turn an out-of-memory failure inside the block into `OutOfMemoryError("<what> ran out of memory; <fix>")`.

    Example: `with oom_hint("scoring 64 mixtures per chunk", "lower eval.mixtures_per_device (now 8)"): ...`
    """
    try:
        yield
    except OutOfMemoryError:
        raise
    except Exception as err:  # XlaRuntimeError has no stable public class across jax versions
        if not is_out_of_memory(err):
            raise
        first_line = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise OutOfMemoryError(f"{what} ran out of memory ({first_line}); {fix}") from err


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_can_create(path: str | os.PathLike) -> None:
    """Raise the OSError that creating folder `path` would raise (a file in the way, no permission), creating nothing."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    if existing != path and not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
