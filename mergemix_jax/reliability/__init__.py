"""Shared reliability helpers: atomic writes, disk-space and out-of-memory errors that say the fix,
and checks that tell a finished checkpoint step from a partial or corrupt one."""

from mergemix_jax.reliability.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from mergemix_jax.reliability.checkpoints import quarantine_step, short_error, step_problem
from mergemix_jax.reliability.lineage import check_experts_share_base, params_fingerprint
from mergemix_jax.reliability.resources import (
    DiskFullError,
    OutOfMemoryError,
    check_can_create,
    check_free_space,
    oom_hint,
)

__all__ = [
    "DiskFullError",
    "OutOfMemoryError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_can_create",
    "check_experts_share_base",
    "check_free_space",
    "oom_hint",
    "params_fingerprint",
    "quarantine_step",
    "short_error",
    "step_problem",
]
