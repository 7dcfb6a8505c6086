"""Checks around a training run: the loss diverging, and a resume whose config no longer matches.

Divergence: a NaN/inf loss, or (train.divergence_factor > 0) a smoothed loss above factor x the
best smoothed loss seen so far, stops the run with `TrainingDiverged`; checkpoints are saved only
after their step's loss has passed this check, so the newest one kept is from before the growth was
caught, and no done.json is written (docs/configuration.md).
Resume: a run folder holding checkpoints is continued only with the settings its checkpoints were
trained with (`resume_problems`); a changed learning rate, batch, data or model is refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mergemix_jax.config import Config, ConfigError

SMOOTHING = 0.9  # EMA coefficient of the smoothed loss (about the last 10 steps)
# (section, key) pairs that change what a resumed run trains; train.steps also does unless the LR schedule is constant
RESUME_KEYS = (
    *(("model", k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "max_seq_len", "rope_theta", "norm_eps", "tie_embeddings", "compute_dtype")),
    *(("optim", k) for k in ("learning_rate", "schedule", "warmup_steps", "decay_fraction", "min_lr_ratio", "weight_decay", "beta1", "beta2", "eps", "grad_clip_norm")),
    *(("train", k) for k in ("batch_size", "seq_len", "seed", "data_seed", "mixture", "init_from")),
    *(("data", k) for k in ("domains", "tokenizer", "heldout_fraction", "split_seed", "shuffle_buffer", "split_by_process")),
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or grew past train.divergence_factor; the last good checkpoint is kept."""


@dataclass
class DivergenceGuard:
    """Feed it every step's loss (`check`); it raises `TrainingDiverged` naming the step and the fix."""

    factor: float  # train.divergence_factor (0 = only NaN/inf)
    where: str  # the run folder, for the message
    fix: str  # what to change, e.g. "lower optim.learning_rate (now 3)"
    smoothed: float | None = None
    best: float = math.inf
    best_step: int = 0

    def check(self, step: int, loss: float) -> None:
        """Raise if the loss at `step` is not finite or its smoothed value outgrew factor x the best."""
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss} at step {step} (batch {step - 1} of the data stream); the last good checkpoint is kept in "
                f"{self.where}/checkpoints and no done.json is written; {self.fix} or check the data"
            )
        self.smoothed = loss if self.smoothed is None else SMOOTHING * self.smoothed + (1 - SMOOTHING) * loss
        if self.factor > 0 and self.smoothed > self.factor * self.best:
            raise TrainingDiverged(
                f"training diverged: the smoothed loss {self.smoothed:.4g} at step {step} exceeds train.divergence_factor = {self.factor:g} "
                f"x its best {self.best:.4g} (step {self.best_step}); the last checkpoint before it is kept in {self.where}/checkpoints and "
                f"no done.json is written; {self.fix}, or raise train.divergence_factor (0 = off) if this growth is expected"
            )
        if self.smoothed < self.best:
            self.best, self.best_step = self.smoothed, step


def resume_problems(config: Config, saved_config: Path, checkpoint_step: int) -> list[str]:
    """What differs between `config` and the config a run folder's checkpoints were trained with
    (its config.yaml), as "key: old -> new" lines; [] when it may resume. A checkpoint past
    train.steps is a problem too (the run cannot end at train.steps)."""
    problems = []
    if checkpoint_step > config.train.steps:
        problems.append(f"train.steps: its newest checkpoint is at step {checkpoint_step}, past train.steps = {config.train.steps}")
    if not saved_config.is_file():
        return problems
    try:
        saved = yaml.safe_load(saved_config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return problems
    current = config.to_dict()
    keys = [*RESUME_KEYS, *([("train", "steps")] if config.optim.schedule != "constant" else [])]
    for section, key in keys:
        old_section = saved.get(section) if isinstance(saved, dict) else None
        if not isinstance(old_section, dict) or key not in old_section:
            continue  # an older config without the key
        old, new = old_section[key], current[section][key]
        if _comparable(key, old) != _comparable(key, new):
            problems.append(f"{section}.{key}: {_short(old)} -> {_short(new)}")
    return problems


def check_resumable(config: Config, run_dir: Path, checkpoint_step: int | None) -> None:
    """ConfigError when the checkpoints in `run_dir` were trained with settings `config` changes (a
    resumed run would silently mix two trainings) or lie past train.steps; names the keys and the fix."""
    if checkpoint_step is None:
        return
    problems = resume_problems(config, run_dir / "config.yaml", checkpoint_step)
    if problems:
        raise ConfigError(
            f"train.output_dir {run_dir} holds checkpoints (newest step {checkpoint_step}) that this config cannot resume: {'; '.join(problems)}. "
            "Restore those values, or start over: set train.output_dir to a new folder or delete this one"
        )


def _comparable(key: str, value: Any) -> Any:
    """`value` with paths made absolute, so a folder named two ways compares equal."""
    if key == "init_from" and value:
        return os.path.abspath(str(value))
    if key == "domains" and isinstance(value, list):
        return [{**d, "paths": [p if "://" in str(p) else os.path.abspath(str(p)) for p in d.get("paths", [])]} if isinstance(d, dict) else d for d in value]
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
