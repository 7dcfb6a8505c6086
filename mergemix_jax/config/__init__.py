"""Typed configs loaded from YAML with command-line overrides."""

from mergemix_jax.config.loading import ConfigError, config_from_dict, load_config, parse_overrides, save_config
from mergemix_jax.config.schema import (
    Config,
    DataConfig,
    DomainConfig,
    EvalConfig,
    MeshConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "DomainConfig",
    "EvalConfig",
    "MeshConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]
