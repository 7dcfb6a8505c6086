"""The end-to-end pipeline behind `mergemix run`: the stages and their order, resume.

The run folder, the Engine, training recipes, mixtures and the utility every stage shares live in
mergemix_jax/runkit/ (below pipeline, verify and validate); the names re-exported here are the public API."""

from mergemix_jax.pipeline.stages import (
    STAGES,
    Engine,
    PipelineResult,
    prepare_run_dir,
    read_table,
    run_pipeline,
    with_overrides,
)
from mergemix_jax.runkit.run_dir import config_hash, hashed_settings, read_stage_log, run_dir_for

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
