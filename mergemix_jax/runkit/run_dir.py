"""The run folder: named by a hash of the config, with a stage log so a rerun reuses finished stages.

`runs/<name>-<hash8>/` holds base/, experts/<domain>/, eval/, search/, diagnostics.json,
mixture.json, report/ and stages.jsonl (one line per stage event: done or reused, with seconds).
Only settings that change results enter the hash: output locations, progress bars, logging,
the `validate` section (validation writes its own sub-folder) and the verification settings (the
verify stage records and checks their own hash) are left out.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mergemix_jax.config import Config
from mergemix_jax.config.hashing import config_hash
from mergemix_jax.parallel.multihost import agree, is_writer, sync, write_once
from mergemix_jax.reliability.atomic import atomic_write_json, json_default

STAGE_LOG = "stages.jsonl"
# keys added later, left out at their defaults so run folders named before them keep their names
_NEWER_DEFAULTS = (
    ("data", "split_by_process", True), ("eval", "task_offset", 0), ("model", "rope_scaling", None),
    ("model", "remat_policy", "full"), ("model", "attention_block", 0), ("train", "grad_accum_steps", 1), ("pipeline", "expert_dirs", {}),
)  # fmt: skip
_NEWER_VERIFY_DEFAULTS = {"verify_baselines_first": False, "verify_features": ["merged", "ensemble"]}  # the same for the verification records' key
_UNHASHED = {("pipeline", "output_root"), ("pipeline", "name"), ("train", "output_dir"), ("train", "progress"), ("train", "log_every"), ("data", "cache_dir"), ("train", "divergence_factor")}


def hashed_settings(config: Config) -> dict[str, Any]:
    """The config as a dict without the keys that do not change results (see module doc)."""
    raw = config.to_dict()
    raw.pop("validate", None)
    for section, key in _UNHASHED:
        raw.get(section, {}).pop(key, None)
    for key in [k for k in raw["pipeline"] if k.startswith("verify_")]:  # the verify stage checks its own settings (verification_key)
        raw["pipeline"].pop(key)
    for section, key, default in _NEWER_DEFAULTS:
        if raw.get(section, {}).get(key, default) == default:
            raw.get(section, {}).pop(key, None)
    return raw


def verification_settings(config: Config) -> dict[str, Any]:
    """The `pipeline.verify_*` keys and the reference steps: they change only the verify stage, which records
    their hash in verify/verification.json and reruns when it differs (its real runs are cached per mixture
    and seed), so changing them reuses the experts, probe and searches of the same run folder."""
    p = config.pipeline
    settings = {k: v for k, v in vars(p).items() if k.startswith("verify_") and _NEWER_VERIFY_DEFAULTS.get(k, object()) != v}
    settings["reference_steps"] = config.validate.reference_steps or p.expert_steps
    return settings


def verification_key(config: Config) -> str:
    """Hash of `verification_settings`."""
    return config_hash(verification_settings(config), 8)


def run_dir_for(config: Config, config_path: str | os.PathLike | None = None) -> Path:
    """<output_root>/<name>-<hash8>, name = pipeline.name or the config file's stem."""
    name = config.pipeline.name or (Path(config_path).stem if config_path else "run")
    return Path(config.pipeline.output_root) / f"{name}-{config_hash(hashed_settings(config), 8)}"


def log_stage(run_dir: Path, stage: str, status: str, seconds: float, **extra: Any) -> None:
    """Append one event to the stage log (a line is written whole with one write call)."""
    record = {"stage": stage, "status": status, "seconds": round(seconds, 3), "time": time.time(), **extra}
    if not is_writer():  # multi-host: process 0 logs for the job
        return
    with open(run_dir / STAGE_LOG, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_stage_log(run_dir: str | os.PathLike) -> list[dict]:
    """Every stage event of a run folder, oldest first (empty when none ran)."""
    path = Path(run_dir) / STAGE_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_stage(run_dir: Path, stage: str, is_done: Callable[[], bool], work: Callable[[], Any]) -> bool:
    """Run `work` unless `is_done()`; log "reused" or "done" with its wall and CPU time. True if it ran.

    Multi-host: every process runs `work` (its computations span them all), process 0's `is_done()`
    decides for all, and all wait at the end of the stage, so the next one reads finished files."""
    if agree(bool(is_done())):
        log_stage(run_dir, stage, "reused", 0.0)
        return False
    start, cpu = time.perf_counter(), cpu_seconds()
    work()
    log_stage(run_dir, stage, "done", time.perf_counter() - start, cpu_seconds=round(cpu_seconds() - cpu, 3))
    sync(f"stage {stage} done")
    return True


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: a load-independent measure of a stage's work
    (on an otherwise idle machine its wall time is at most this)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_json_atomic(path: Path, payload: Any) -> Path:
    """Write a run record: reliability.atomic.atomic_write_json with numpy values as lists and NaN
    allowed (e.g. an undefined rank correlation). Multi-host: process 0 writes and every process
    waits for it (call it on all of them), so a read right after finds the file."""
    write_once(lambda: atomic_write_json(path, payload, allow_nan=True, default=json_default), f"write {path}")
    return Path(path)
