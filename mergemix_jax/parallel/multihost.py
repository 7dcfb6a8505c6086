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

`sync` and `agree` go through jax.distributed's coordination service (a barrier, a key-value store),
not a device collective: CPU collectives (gloo) give up when one process arrives 30 s after the
other, which a process 0 rendering the report on a loaded machine can exceed. The helpers do not
start jax's backend on a job that never called `jax.distributed.initialize`.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import jax

T = TypeVar("T")
TIMEOUT_MS = 60 * 60 * 1000  # how long a process waits for the others (a dead process fails the job sooner)
_calls = itertools.count()  # every process makes the same sync/agree calls in the same order


def is_multiprocess() -> bool:
    """True in a job of several processes joined by `jax.distributed`."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_writer() -> bool:
    """True in the one process that writes files: process 0, or the only process."""
    return not is_multiprocess() or jax.process_index() == 0


def _client():
    from jax._src import distributed

    return distributed.global_state.client


def sync(tag: str) -> None:
    """Barrier across every process of the job (no-op on one process). Processes that reach
    different tags wait for each other in vain and fail after TIMEOUT_MS naming the barrier."""
    if is_multiprocess():
        _client().wait_at_barrier(f"mergemix-sync-{next(_calls)}-{zlib.crc32(tag.encode()):08x}", TIMEOUT_MS)


def write_once(write: Callable[[], T], tag: str) -> T | None:
    """Run `write` on process 0 only, then make every process wait for it; returns its result on
    process 0 and None elsewhere."""
    result = write() if is_writer() else None
    sync(tag)
    return result


def agree(value: Any) -> Any:
    """Process 0's `value` (anything JSON holds: a bool, a number, a string, lists and dicts of them)
    on every process."""
    if not is_multiprocess():
        return value
    key = f"mergemix-agree-{next(_calls)}"
    if jax.process_index() == 0:
        _client().key_value_set(key, json.dumps(value))
        return value
    return json.loads(_client().blocking_key_value_get(key, TIMEOUT_MS))
