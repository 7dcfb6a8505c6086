"""Verification: train the top proxy candidates and the baselines for real, calibrate, decide."""

from mergemix_jax.verify.candidates import Candidate, pool_from_tables, select_diverse, tv_distance
from mergemix_jax.verify.decide import BASELINES, Decision, decide, next_to_confirm, seed_noise

__all__ = ["BASELINES", "Candidate", "Decision", "decide", "next_to_confirm", "pool_from_tables", "seed_noise", "select_diverse", "tv_distance"]
