"""Load a `Config` from YAML plus `key.sub=value` command-line overrides, validated on load."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import typing
from pathlib import Path
from typing import Any

import dacite
import yaml

from mergemix_jax.config.overrides import apply_overrides, parse_override
from mergemix_jax.config.schema import Config
from mergemix_jax.config.validation import AMBIGUOUS_EXTENSIONS, FORMAT_BY_EXTENSION, validate


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key, the file and the fix."""


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `3e-4` as a float (YAML 1.1 insists on `3.0e-4`)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass: no arbitrary objects


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `["train.steps=10", "model.d_model=64"]` into a nested dict (values parsed as YAML).

    For reading overrides only; `load_config` applies them with `apply_overrides`, where a dict value
    replaces the file's (config/overrides.py)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        parsed = parse_override(item, _yaml_load, ConfigError)
        node = nested
        for key in parsed.keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parsed.keys[-1]] = parsed.value
    return nested


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `update` into a copy of `base`; dicts merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a `Config`; `source` names the file in error messages."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (model:, train:, ...), got a {type(raw).__name__}")
    raw = infer_domain_formats(raw, source)
    problems = structure_problems(Config, raw)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    try:
        config = dacite.from_dict(Config, raw, config=dacite.Config(strict=True, cast=[tuple]))
    except dacite.UnexpectedDataError as err:
        keys = ", ".join(sorted(err.keys))
        raise ConfigError(f"{source}: unknown key(s) {keys}; check the spelling against mergemix_jax/config/schema.py") from None
    except dacite.WrongTypeError as err:
        raise ConfigError(
            f"{source}: key '{err.field_path}' should be {_type_name(err.field_type)}, got {err.value!r}"
        ) from None
    except dacite.MissingValueError as err:
        raise ConfigError(f"{source}: key '{err.field_path}' is required") from None
    except dacite.DaciteError as err:
        raise ConfigError(f"{source}: {err}") from None
    problems = validate(config)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return config


def infer_domain_formats(raw: dict[str, Any], source: str = "<dict>") -> dict[str, Any]:
    """A copy of `raw` where every domain without `format:` has the format its paths' extension says
    (.jsonl -> jsonl, .parquet -> parquet, ...; other extensions stay text). Paths of different
    formats, or an extension with two readings (.json), are a ConfigError naming the domain and the fix."""
    data = raw.get("data")
    domains = data.get("domains") if isinstance(data, dict) else None
    if not isinstance(domains, list) or not any(isinstance(d, dict) and "format" not in d for d in domains):
        return raw
    raw = copy.deepcopy(raw)
    for i, domain in enumerate(raw["data"]["domains"]):
        if not isinstance(domain, dict) or "format" in domain or not isinstance(domain.get("paths"), list):
            continue
        where = f"{source}: domain '{domain.get('name', i)}' (data.domains[{i}]) has no format:"
        suffixes = {_suffix(str(p)) for p in domain["paths"]}
        ambiguous = sorted(suffixes & set(AMBIGUOUS_EXTENSIONS))
        if ambiguous:
            raise ConfigError(f"{where} and its files end in {ambiguous[0]}; {AMBIGUOUS_EXTENSIONS[ambiguous[0]]}")
        formats = {FORMAT_BY_EXTENSION.get(suffix, "text") for suffix in suffixes}
        if len(formats) > 1:
            raise ConfigError(f"{where} and its paths end in {sorted(suffixes)}, which are read as {sorted(formats)}; give files of one format per domain and set its format:")
        if formats:
            domain["format"] = formats.pop()
    return raw


def _suffix(path: str) -> str:
    return os.path.splitext(path.rstrip("/"))[1].lower()


def structure_problems(cls: type, raw: dict[str, Any], prefix: str = "") -> list[str]:
    """Unknown keys (with their full dotted path) and strings where a list or a section is expected."""
    hints = typing.get_type_hints(cls)
    problems = []
    unknown = [f"{prefix}{key}" for key in raw if key not in hints]
    if unknown:
        problems.append(f"unknown key(s) {', '.join(map(str, unknown))}; check the spelling against mergemix_jax/config/schema.py")
    for key, value in raw.items():
        if key not in hints:
            continue
        tp, where = hints[key], f"{prefix}{key}"
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            problems += structure_problems(tp, value, f"{where}.")
        elif dataclasses.is_dataclass(tp) and value is not None:
            problems.append(f"key '{where}' is a section of keys (e.g. {where}: {{...}}), got {value!r}")
        elif origin in (list, tuple) and isinstance(value, str):
            problems.append(f"key '{where}' should be a list, got the single string {value!r}; write {key}: [{value}]")
        elif origin is list and args and dataclasses.is_dataclass(args[0]) and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    problems += structure_problems(args[0], item, f"{where}[{i}].")
    return problems


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults when `path` is None) and apply overrides.

    Relative data paths, eval.task_dir and pipeline.base_dir in the file are resolved against the file's folder, so a
    config can be run from anywhere (overrides on the command line stay relative to the working directory).
    """
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = _yaml_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} cannot be read ({err}); check the path and its permissions") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections (model:, train:, ...), got a {type(raw).__name__}")
        raw = _resolve_relative_paths(raw, path.parent.resolve())
    if overrides:
        source = f"{source} with overrides {' '.join(overrides)}"
        parsed = [parse_override(item, _yaml_load, ConfigError) for item in overrides]
        raw = apply_overrides(raw, parsed, Config, ConfigError)
    return config_from_dict(raw, source)


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write a config as YAML that `load_config` reads back to an equal `Config` (atomically: a temp
    file in the same folder, fsynced, renamed over `path`; config is the lowest package, so it does not
    use reliability/atomic.py, and callers in a multi-host job write from process 0 only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(config_to_yaml(config))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def config_to_yaml(config: Config) -> str:
    """The YAML text `save_config` writes."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def is_absolute_location(path: str) -> bool:
    """True for absolute local paths and for URLs such as gs://bucket/x (never joined to a folder)."""
    return "://" in path or os.path.isabs(path)


def _resolve_relative_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    data = raw.get("data")
    if isinstance(data, dict):
        for domain in data.get("domains") or []:
            if isinstance(domain, dict) and isinstance(domain.get("paths"), list):
                domain["paths"] = [str(p) if is_absolute_location(str(p)) else str(base / str(p)) for p in domain["paths"]]
        tokenizer = data.get("tokenizer")
        if isinstance(tokenizer, str) and tokenizer not in ("byte", "") and not is_absolute_location(tokenizer):
            data["tokenizer"] = str(base / tokenizer)
    ev = raw.get("eval")
    if isinstance(ev, dict) and isinstance(ev.get("task_dir"), str) and ev["task_dir"] and not is_absolute_location(ev["task_dir"]):
        ev["task_dir"] = str(base / ev["task_dir"])
    pipeline = raw.get("pipeline")
    if isinstance(pipeline, dict) and isinstance(pipeline.get("base_dir"), str) and pipeline["base_dir"] and not is_absolute_location(pipeline["base_dir"]):
        pipeline["base_dir"] = str(base / pipeline["base_dir"])
    if isinstance(pipeline, dict) and isinstance(pipeline.get("expert_dirs"), dict):
        pipeline["expert_dirs"] = {k: str(v) if is_absolute_location(str(v)) else str(base / str(v)) for k, v in pipeline["expert_dirs"].items()}
    search = raw.get("search")
    surrogate = search.get("surrogate") if isinstance(search, dict) else None
    if isinstance(surrogate, dict) and isinstance(surrogate.get("swarm_csv"), str) and surrogate["swarm_csv"] and not is_absolute_location(surrogate["swarm_csv"]):
        surrogate["swarm_csv"] = str(base / surrogate["swarm_csv"])
    return raw


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))
