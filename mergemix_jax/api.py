"""The Python API: `load_config`, `run` and `validate`, the functions behind `mergemix run` / `validate`.

Exported from the package root (`import mergemix_jax as mm; mm.run("configs/demo.yaml")`). jax is
imported only when a function is called, so `import mergemix_jax` stays cheap.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from mergemix_jax.config import Config
    from mergemix_jax.pipeline import PipelineResult

Overrides = Union[Mapping[str, Any], list[str], tuple[str, ...], None]  # noqa: UP007 (evaluated at runtime by help())


def _override_strings(overrides: Overrides, dotted: Mapping[str, Any]) -> list[str]:
    """`["key.sub=value", ...]` from a list of such strings, a {dotted key: value} dict and keyword
    arguments; dict values are written as JSON (which YAML reads back unchanged), so both go through
    the one parser the command line uses."""
    from mergemix_jax.config import ConfigError

    if overrides is None:
        items: list[str] = []
    elif isinstance(overrides, Mapping):
        items = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    elif isinstance(overrides, (list, tuple)) and all(isinstance(o, str) for o in overrides):
        items = list(overrides)
    else:
        raise ConfigError(f"overrides must be a dict {{'train.steps': 10}} or a list ['train.steps=10'], got {overrides!r}")
    for key in dotted:
        if "." not in key:
            raise ConfigError(f"keyword {key!r} is not a config override; overrides are dotted keys such as **{{'train.steps': 10}}")
    return items + [f"{key}={json.dumps(value)}" for key, value in dotted.items()]


def load_config(path: str | os.PathLike | None = None, overrides: Overrides = None, **dotted: Any) -> Config:
    """Read a YAML config and apply overrides; the same `Config` `mergemix run --config PATH ...` builds.

    Args:
        path: a YAML file (relative data paths in it are resolved against its folder), or None
            for the defaults.
        overrides: {"pipeline.expert_steps": 10, "data.tokenizer": "tok.json"} (Python values), or
            the command line's ["pipeline.expert_steps=10", ...] (YAML values).
        **dotted: more overrides, e.g. **{"train.steps": 100}.

    Returns a validated `mergemix_jax.config.Config`; a bad key or value raises ConfigError naming it.

    Example:
        >>> cfg = load_config("configs/demo.yaml", {"pipeline.expert_steps": 10})
        >>> cfg.pipeline.expert_steps
        10
    """
    from mergemix_jax.config import loading

    return loading.load_config(path, _override_strings(overrides, dotted))


def _resolve(config_or_path: Config | str | os.PathLike, overrides: Overrides, dotted: Mapping[str, Any]) -> tuple[Config, str | None, list[str]]:
    """(config, its file or None, the override strings) for run/validate."""
    from mergemix_jax.config import Config, ConfigError

    items = _override_strings(overrides, dotted)
    if isinstance(config_or_path, Config):
        if items:
            from mergemix_jax.config.loading import config_from_dict, deep_merge, parse_overrides

            config = config_from_dict(deep_merge(config_or_path.to_dict(), parse_overrides(items)), "<Config> with overrides")
        else:
            config = config_or_path
        return config, None, items
    if not isinstance(config_or_path, (str, os.PathLike)):
        raise ConfigError(f"config_or_path must be a Config or a YAML file path, got {type(config_or_path).__name__}")
    return load_config(config_or_path, items), str(config_or_path), items


def _prepare(config: Config, progress: bool | None) -> Config:
    from mergemix_jax.pipeline import with_overrides

    enable_compilation_cache(config.pipeline.output_root)
    return config if progress is None else with_overrides(config, train={"progress": bool(progress)})


def _command(name: str, path: str | None, items: list[str]) -> str:
    """The shell command that reproduces this call (recorded in the run folder's commands.txt)."""
    return shlex.join(["mergemix", name, "--config", path, *items]) if path else ""


def run(
    config_or_path: Config | str | os.PathLike,
    overrides: Overrides = None,
    *,
    stop_after: str = "",
    progress: bool | None = None,
    command: str | None = None,
    **dotted: Any,
) -> PipelineResult | Path:
    """Run (or resume) the whole pipeline: base, experts, merged probe, search, verification, report.

    The same as `mergemix run --config PATH [overrides]`, and it finds the same run folder
    (<pipeline.output_root>/<config file stem or pipeline.name>-<hash of the settings>): a second
    call with the same config reuses every finished stage.

    Args:
        config_or_path: a YAML file, or a `Config` (from `load_config`; its run folder is named
            after pipeline.name, else "run").
        overrides: {"pipeline.expert_steps": 10} or ["pipeline.expert_steps=10"].
        stop_after: end after this stage (base, experts, probe, diagnostics, search, select,
            verify, report); the run folder is returned.
        progress: show progress bars (None: the config's train.progress).
        command: the command line recorded in commands.txt (default: the equivalent `mergemix run`).
        **dotted: more overrides, e.g. **{"pipeline.methods": ["subsets"]}.

    Returns a `PipelineResult` (run_dir, mixture_path, report_path, weights {domain: share},
    method), or the run folder when stopped early. Errors the user can fix (config, data,
    checkpoints) raise ConfigError / DataError / CheckpointError / InteropError naming the key.

    Example:
        >>> import mergemix_jax as mm
        >>> result = mm.run("configs/demo.yaml", {"pipeline.expert_steps": 10}, progress=False)
        >>> result.weights                 # {'prose': 0.31, 'code': 0.12, ...}
        >>> result.report_path             # runs/demo-<hash>/report/index.html
    """
    from mergemix_jax.config import ConfigError
    from mergemix_jax.pipeline import STAGES, run_pipeline

    if stop_after and stop_after not in STAGES:
        raise ConfigError(f"stop_after (--stop-after) must be one of {', '.join(STAGES)}, got {stop_after!r}")
    config, path, items = _resolve(config_or_path, overrides, dotted)
    config = _prepare(config, progress)
    return run_pipeline(config, path, command=_command("run", path, items) if command is None else command, stop_after=stop_after)


def validate(
    config_or_path: Config | str | os.PathLike,
    overrides: Overrides = None,
    *,
    progress: bool | None = None,
    command: str | None = None,
    **dotted: Any,
) -> dict:
    """Train reference models on sampled mixtures and rank the merged proxy against them.

    The same as `mergemix validate --config PATH [overrides]`: runs (or reuses) the pipeline of
    `run` up to verification, then trains the validate.* references in <run folder>/validate-<hash>/.

    Args: as `run` (config_or_path, overrides, progress, command, **dotted).

    Returns the validation.json content: "table" (per reference mixture: proxy and real scores),
    "summary" ({console line: value}: the proxy's rank correlation, regret, cost), "dir" (the
    validation folder) and "report" (the report with the validation section).

    Example:
        >>> out = mm.validate("configs/demo.yaml", {"validate.n_dirichlet": 4})
        >>> for line, value in out["summary"].items(): print(line, value)
    """
    from mergemix_jax.validate.run import run_validation

    config, path, items = _resolve(config_or_path, overrides, dotted)
    config = _prepare(config, progress)
    return run_validation(config, path, command=_command("validate", path, items) if command is None else command)


def enable_compilation_cache(output_root: str) -> None:
    """Persist compiled programs under <output_root>/.jax_cache: experts and references share one train step."""
    import jax

    from mergemix_jax.reliability import check_can_create

    cache = os.path.abspath(os.path.join(output_root, ".jax_cache"))
    check_can_create(cache)  # an unusable output_root fails here naming its path, not as a jax warning
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
