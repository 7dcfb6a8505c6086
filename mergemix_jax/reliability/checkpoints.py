"""Tell a finished orbax checkpoint step from a partial or corrupt one, and move bad steps aside.

Orbax (0.12) writes each step under a temporary name and renames it when done, writing
`commit_success.txt` into the step folder and into every item folder first. A step folder that
lacks it, lacks an item, or holds unreadable metadata was not finished (or was damaged later).
Truncated array files are only found by reading them: `short_error` condenses TensorStore's
multi-kilobyte messages for the error that names the way out.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

COMMIT_FILE = "commit_success.txt"
QUARANTINE = "corrupt_checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not fit the model; says the way out.

    `damaged` is the run folder whose saved output is incomplete or unreadable (None when the
    checkpoint is intact but unsuitable, e.g. another architecture): `mergemix run` retrains such a
    folder when it is one of its own stages (pipeline/stages.py). Defined here, below train/ and
    reliability/lineage.py which both raise it (mergemix_jax.train re-exports it)."""

    def __init__(self, message: str, damaged: str | os.PathLike | None = None):
        super().__init__(message)
        self.damaged = None if damaged is None else Path(damaged)


def step_problem(step_dir: str | os.PathLike, items: Sequence[str] = ("params", "meta")) -> str | None:
    """Why `step_dir` is not a complete checkpoint step (None when its structure looks complete).

    Cheap: looks at files and the JSON metadata only; array contents are checked on restore.
    """
    step_dir = Path(step_dir)
    if not step_dir.is_dir():
        return f"{step_dir} does not exist"
    if not (step_dir / COMMIT_FILE).is_file():
        return f"{step_dir} has no {COMMIT_FILE} (the save never finished)"
    for item in items:
        if not (step_dir / item).is_dir():
            return f"{step_dir} has no '{item}' item"
        if not (step_dir / item / COMMIT_FILE).is_file():
            return f"{step_dir}/{item} has no {COMMIT_FILE} (the save never finished)"
    meta = step_dir / "meta" / "metadata"
    if "meta" in items:
        try:
            json.loads(meta.read_text())
        except (OSError, ValueError) as err:
            return f"{meta} is unreadable ({err.__class__.__name__})"
    return None


def short_error(err: BaseException, limit: int = 240) -> str:
    """The first line of an error message, cut to `limit` characters (TensorStore specs run to pages)."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    for cut in (" See full TensorStore details", " [tensorstore_spec="):
        line = line.split(cut)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def quarantine_done_marker(run_dir: str | os.PathLike, marker: str = "done.json") -> Path | None:
    """Move a run's done marker into `<run>/corrupt_checkpoints/` (so the run counts as unfinished and
    is trained again, resuming from its newest intact step); returns where it went, None if absent."""
    source = Path(run_dir) / marker
    if not source.is_file():
        return None
    target = Path(run_dir) / QUARANTINE / f"{marker}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


def quarantine_step(checkpoints_dir: str | os.PathLike, step: int) -> Path:
    """Move step folder `checkpoints_dir/<step>` to `<run>/corrupt_checkpoints/<step>-<time>` and return it.

    The bad step is kept for inspection but no longer seen by the checkpoint manager, so a
    resumed run can save that step number again.
    """
    source = Path(checkpoints_dir) / str(step)
    target = Path(checkpoints_dir).parent / QUARANTINE / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target
