"""Diagnostics of cross-domain interference: task-vector cosines and MergeMix curvature ratios."""

from mergemix_jax.diagnostics.interference import (
    curvature_ratios,
    diagnostics,
    domain_loss_fn,
    hvp,
    hvp_norms,
    task_vector_cosines,
)

__all__ = ["curvature_ratios", "diagnostics", "domain_loss_fn", "hvp", "hvp_norms", "task_vector_cosines"]
