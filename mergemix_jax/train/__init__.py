"""Sharded training of bases, domain experts and mixture references, with orbax resume."""

from mergemix_jax.train.checkpoint import CheckpointError, latest_step, load_params
from mergemix_jax.train.loop import TrainingDiverged, TrainResult, is_finished, train

__all__ = ["CheckpointError", "TrainResult", "TrainingDiverged", "is_finished", "latest_step", "load_params", "train"]
