"""Train configs of the pipeline's models, derived from one Config, and a train-unless-finished helper.

Base: `pipeline.base_steps` on the uniform mixture from scratch. Expert k and every reference:
`pipeline.expert_steps` (or `validate.reference_steps`) from the base at a constant learning rate
(the merged proxy ranks mixtures best with constant-LR, short-horizon experts; see the README's
Measurements), on domain k alone or on the reference's mixture.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from mergemix_jax.config import Config


def derive_train_config(
    config: Config,
    *,
    steps: int,
    output_dir: str | Path,
    mixture: dict[str, float] | None = None,
    init_from: str | Path = "",
    learning_rate: float = 0.0,
    constant_lr: bool = False,
    data_seed: int | None = None,
) -> Config:
    """A copy of `config` whose train/optim sections describe one pipeline model."""
    optim = config.optim
    warmup = min(optim.warmup_steps, steps // 5)
    optim = dataclasses.replace(optim, learning_rate=learning_rate or optim.learning_rate, warmup_steps=warmup)
    if constant_lr:
        optim = dataclasses.replace(optim, schedule="constant")
    train = dataclasses.replace(
        config.train,
        steps=steps,
        output_dir=str(output_dir),
        mixture=dict(mixture or {}),
        init_from=str(init_from),
        checkpoint_every=min(config.train.checkpoint_every, steps),
        data_seed=config.train.data_seed if data_seed is None else data_seed,
    )
    return dataclasses.replace(config, optim=optim, train=train)


def base_config(config: Config, run_dir: Path) -> Config:
    """The base model: uniform mixture, trained from scratch with the configured schedule."""
    return derive_train_config(config, steps=config.pipeline.base_steps, output_dir=run_dir / "base")


def base_dir(config: Config, run_dir: Path) -> Path:
    """Where the base lives: `pipeline.base_dir` when given, else <run>/base."""
    return Path(config.pipeline.base_dir) if config.pipeline.base_dir else run_dir / "base"


def short_run_config(config: Config, run_dir: Path, out: Path, mixture: dict[str, float], steps: int = 0, data_seed: int | None = None) -> Config:
    """An expert (one-hot mixture) or reference model: constant LR from the base for `steps` steps."""
    p = config.pipeline
    return derive_train_config(
        config,
        steps=steps or p.expert_steps,
        output_dir=out,
        mixture=mixture,
        init_from=base_dir(config, run_dir),
        learning_rate=p.expert_learning_rate,
        constant_lr=True,
        data_seed=data_seed,
    )


def expert_dirs(config: Config, run_dir: Path) -> list[Path]:
    """<run>/experts/<domain> in the order of data.domains."""
    return [run_dir / "experts" / d.name for d in config.data.domains]


def train_unless_finished(config: Config) -> float:
    """Train (resuming a partial run) unless the run folder is finished; returns seconds spent."""
    from mergemix_jax.train import is_finished, train

    if is_finished(config.train.output_dir):
        return 0.0
    start = time.perf_counter()
    train(config, resume=True, config_source=f"pipeline model {config.train.output_dir}")
    return time.perf_counter() - start
