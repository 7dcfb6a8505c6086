"""Merging K domain experts into one model per mixture vector."""

from mergemix_jax.merge.dilution import (
    Dilution,
    corrected_weights,
    effective_proportions,
    make_dilution,
    merge_coefficients,
)
from mergemix_jax.merge.operators import (
    MERGE_METHODS,
    MERGE_OPERATORS,
    MergeOperator,
    dare_merge,
    linear_merge,
    merge,
    ties_merge,
)
from mergemix_jax.merge.stack import ExpertStack, build_expert_stack, check_same_structure, deltas_f32, num_params
from mergemix_jax.merge.weights import read_weights_csv, sample_dirichlet, validate_weights, weights_hash

__all__ = [
    "MERGE_METHODS",
    "MERGE_OPERATORS",
    "Dilution",
    "ExpertStack",
    "MergeOperator",
    "build_expert_stack",
    "check_same_structure",
    "corrected_weights",
    "dare_merge",
    "deltas_f32",
    "effective_proportions",
    "linear_merge",
    "make_dilution",
    "merge",
    "merge_coefficients",
    "num_params",
    "read_weights_csv",
    "sample_dirichlet",
    "ties_merge",
    "validate_weights",
    "weights_hash",
]
