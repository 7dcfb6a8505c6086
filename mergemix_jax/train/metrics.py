"""Append-only JSONL metrics log that survives a kill: torn last lines are dropped on reopen."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mergemix_jax.parallel.multihost import is_writer
from mergemix_jax.reliability.atomic import atomic_write_text


class MetricsLog:
    """One JSON object per line; on resume, entries past the restored step are discarded.
    Multi-host: process 0 keeps the log, the others write nothing."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        self._file = None
        if not is_writer():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if resume_step is not None and r.get("step", 0) <= resume_step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a")

    def write(self, record: dict) -> None:
        """Append one record and flush it to the OS."""
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """All complete records of a metrics log (a torn final line from a kill is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
