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


def newest_metadata(run_dir: str | os.PathLike) -> dict:
    """The JSON metadata of a run folder's newest checkpoint step ({} when it has none or it is unreadable)."""
    steps = Path(run_dir) / "checkpoints"
    numbers = sorted(int(p.name) for p in steps.iterdir() if p.name.isdigit()) if steps.is_dir() else []
    if not numbers:
        return {}
    try:
        return json.loads((steps / str(numbers[-1]) / "meta" / "metadata").read_text())
    except (OSError, ValueError):
        return {}


def check_experts_share_base(base_dir: str | os.PathLike, expert_dirs: Sequence[str | os.PathLike]) -> None:
    """Raise CheckpointError when an expert's metadata says it was not fine-tuned from `base_dir`.

    Merging is only meaningful for experts fine-tuned from one shared base. Training records
    `train.init_from` in each checkpoint; runs without that record (imported models) are not judged.
    A base folder that moved keeps its name, so a matching folder name is accepted.
    """
    from mergemix_jax.train.checkpoint import CheckpointError

    base = Path(base_dir).resolve()
    for expert in expert_dirs:
        meta = newest_metadata(expert)
        if "init_from" not in meta:
            continue
        origin = meta["init_from"]
        if not origin:
            raise CheckpointError(
                f"expert {expert} was trained from scratch (train.init_from was empty), not fine-tuned from the base {base_dir}; "
                f"retrain it with train.init_from={base_dir}"
            )
        if Path(origin).resolve() != base and Path(origin).name != base.name:
            raise CheckpointError(
                f"expert {expert} was fine-tuned from {origin}, not from the base {base_dir}: experts from different bases "
                f"cannot be merged; pass --base {origin} or retrain the expert with train.init_from={base_dir}"
            )
