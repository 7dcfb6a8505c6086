"""One writer per multi-host job: process 0 writes files, every process waits for the write.

Under `jax.distributed` every process runs the same code (they all take part in the sharded
computations) on a run folder they share (orbax checkpoints need a shared filesystem anyway).
So that no file is written twice or read half-made:

- `is_writer()`: True on process 0 (and on any single-process job). The atomic writer
  (reliability/atomic.py), the stage log and the training metrics log write only there.
- `sync(tag)`: every process waits until all reach the same `tag` (a barrier; a no-op on one
  process). Every process must pass the same tags in the same order.
- `write_once(write, tag)`: `write()` on process 0, then `sync(tag)`, so a read after it finds the file.
- `agree(value)`: process 0's value on every process, e.g. whether a stage is already done.
- `gather(x)`: a (possibly multi-host) jax array as one numpy array on every process.

The helpers do not start jax's backend on a job that never called `jax.distributed.initialize`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np

T = TypeVar("T")


def is_multiprocess() -> bool:
    """True in a job of several processes joined by `jax.distributed`."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_writer() -> bool:
    """True in the one process that writes files: process 0, or the only process."""
    return not is_multiprocess() or jax.process_index() == 0


def sync(tag: str) -> None:
    """Barrier across every process of the job (no-op on one process)."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(tag)


def write_once(write: Callable[[], T], tag: str) -> T | None:
    """Run `write` on process 0 only, then make every process wait for it; returns its result on
    process 0 and None elsewhere."""
    result = write() if is_writer() else None
    sync(tag)
    return result


def agree(value: Any) -> Any:
    """Process 0's `value` (a bool, number or numpy array) on every process."""
    if not is_multiprocess():
        return value
    from jax.experimental import multihost_utils

    out = multihost_utils.broadcast_one_to_all(np.asarray(value))
    return type(value)(out) if isinstance(value, bool | int | float) else np.asarray(out)


def gather(x: Any) -> np.ndarray:
    """`x` (a jax array, perhaps spanning devices of other processes) as a numpy array on every process."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
