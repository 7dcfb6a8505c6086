"""Verification: train the top proxy candidates and the baselines for real, calibrate, decide."""

from mergemix_jax.verify.candidates import Candidate, pool_from_tables, select_diverse, tv_distance
from mergemix_jax.verify.decide import BASELINES, Decision, SeedBlocks, decide, fit_seed_blocks, next_to_confirm

__all__ = ["BASELINES", "Candidate", "Decision", "SeedBlocks", "decide", "fit_seed_blocks", "next_to_confirm", "pool_from_tables", "select_diverse", "tv_distance"]
