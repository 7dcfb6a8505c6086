"""Which model-config fields define the parameters and their maths (vs. run-time choices)."""

from __future__ import annotations

import math
from typing import Any

from mergemix_jax.config import ModelConfig

# Fields that change parameter shapes or what the parameters compute. compute_dtype, remat and
# max_seq_len are run-time choices: a float32 base may start a bfloat16 or rematerialised expert.
ARCHITECTURE_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "tie_embeddings")
TOLERANT_FIELDS = ("rope_theta", "norm_eps")


def architecture_differences(saved: ModelConfig, wanted: ModelConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (saved, wanted)} for every architecture field that differs; empty when compatible."""
    diff = {k: (getattr(saved, k), getattr(wanted, k)) for k in ARCHITECTURE_FIELDS if getattr(saved, k) != getattr(wanted, k)}
    if saved.resolved_head_dim != wanted.resolved_head_dim:
        diff["head_dim"] = (saved.resolved_head_dim, wanted.resolved_head_dim)
    if saved.rope_scaling != wanted.rope_scaling:
        diff["rope_scaling"] = (saved.rope_scaling, wanted.rope_scaling)
    for key in TOLERANT_FIELDS:
        if not math.isclose(getattr(saved, key), getattr(wanted, key), rel_tol=1e-6):
            diff[key] = (getattr(saved, key), getattr(wanted, key))
    return diff
