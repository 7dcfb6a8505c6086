"""A run's training and search logs as TensorBoard event files, written with tensorboardX.

Every `metrics.jsonl` under the run folder (base, experts, verification and validation runs)
becomes one TensorBoard run named by its folder, with each numeric field as a `train/<field>`
scalar at its step (wall time kept); every search result (`search/<method>.json`) becomes a
`search/<method>` run with its best-so-far objective per evaluation step. Rewriting replaces the
event files this writer made, so the command can be rerun while a run is in progress.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from mergemix_jax.train.metrics import read_metrics

SKIP_FIELDS = ("step", "time")


def _writer(logdir: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise RuntimeError("TensorBoard export needs tensorboardX: pip install mergemix-jax[tensorboard]") from None
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.glob("events.out.tfevents.*"):
        old.unlink()
    return SummaryWriter(logdir=str(logdir))


def _scalars(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if k not in SKIP_FIELDS and isinstance(v, (int, float)) and math.isfinite(v)}


def write_tensorboard(run_dir: str | os.PathLike, logdir: str | os.PathLike | None = None) -> dict[str, int]:
    """Write event files under `logdir` (default <run>/tensorboard); returns {tensorboard run: points}."""
    run_dir = Path(run_dir)
    logdir = Path(logdir) if logdir else run_dir / "tensorboard"
    written: dict[str, int] = {}
    for path in sorted(run_dir.rglob("metrics.jsonl")):
        if logdir in path.parents:
            continue
        name = path.parent.relative_to(run_dir).as_posix() or "run"
        writer = _writer(logdir / "train" / name)
        for record in read_metrics(path):
            for key, value in _scalars(record).items():
                writer.add_scalar(f"train/{key}", value, int(record.get("step", 0)), walltime=record.get("time"))
                written[f"train/{name}"] = written.get(f"train/{name}", 0) + 1
        writer.close()
    for path in sorted((run_dir / "search").glob("*.json")):
        search = json.loads(path.read_text()).get("search") or {}
        trace = search.get("trace") or []
        if not trace:
            continue
        writer = _writer(logdir / "search" / path.stem)
        for step, value in enumerate(trace):
            if isinstance(value, (int, float)) and math.isfinite(value):
                writer.add_scalar("search/best_objective", float(value), step)
        writer.close()
        written[f"search/{path.stem}"] = len(trace)
    return written
