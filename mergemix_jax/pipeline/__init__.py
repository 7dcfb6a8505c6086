"""The end-to-end pipeline behind `mergemix run`: stages, the config-hash run folder, resume."""

from mergemix_jax.pipeline.stages import (
    STAGES,
    Engine,
    PipelineResult,
    prepare_run_dir,
    read_table,
    run_pipeline,
    with_overrides,
)
from mergemix_jax.runs.run_dir import config_hash, hashed_settings, read_stage_log, run_dir_for

__all__ = [
    "STAGES",
    "Engine",
    "PipelineResult",
    "config_hash",
    "hashed_settings",
    "prepare_run_dir",
    "read_stage_log",
    "read_table",
    "run_dir_for",
    "run_pipeline",
    "with_overrides",
]
