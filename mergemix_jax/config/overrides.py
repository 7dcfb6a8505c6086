"""Command-line overrides `key.sub=value` and `key.sub+=value`, applied to a raw config dict.

Semantics (docs/configuration.md):
- `key=value` REPLACES the value, dicts included: `pipeline.utility={loss/mean: 1}` gives exactly
  that utility, whatever the file said. Only a config section (`model={d_model: 64}`) merges key by
  key, since its keys are fields, not data.
- `key+=value` merges: a mapping into the current mapping (`train.mixture+={web: 2}`), a list
  appended to the current list (`pipeline.methods+=[cmaes]`).
- `data.domains.<name>.<field>=value` sets one field of the domain called <name>; an unknown name is
  a ConfigError listing the names.
Overrides apply in order, so a later one wins.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Override:
    """One parsed `key.sub=value` (merge=False) or `key.sub+=value` (merge=True)."""

    keys: tuple[str, ...]
    value: Any
    merge: bool
    text: str


def parse_override(item: str, load_yaml, error: type[Exception]) -> Override:
    """Split `item` into its dotted key, operator and YAML value; `error` for anything malformed."""
    if "=" not in item:
        raise error(f"override {item!r} is not of the form key.sub=value")
    dotted, raw = item.split("=", 1)
    merge = dotted.endswith("+")
    dotted = dotted[:-1] if merge else dotted
    keys = tuple(dotted.strip().split("."))
    if not all(keys):
        raise error(f"override {item!r} has an empty key")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        problem = str(getattr(err, "problem", None) or err).strip()
        raise error(f"override {item!r}: the value is not valid YAML ({problem}); close its brackets or quotes (e.g. {dotted}=[1, 2])") from None
    return Override(keys, value, merge, item)


def apply_overrides(raw: dict[str, Any], overrides: list[Override], root: type, error: type[Exception]) -> dict[str, Any]:
    """A copy of `raw` with every override applied in order (see the module doc); `root` is the
    config dataclass whose field types say which keys are sections and which are named lists."""
    out = copy.deepcopy(raw)
    for override in overrides:
        _apply(out, override, root, error)
    return out


def _apply(raw: dict[str, Any], override: Override, root: type, error: type[Exception]) -> None:
    node, tp = raw, root
    path: list[str] = []
    for key in override.keys[:-1]:
        path.append(key)
        if isinstance(node, list):  # a named list (data.domains): the key is an element's name
            node, tp = _named_item(node, key, ".".join(path[:-1]), override, error), _item_type(tp)
            continue
        child = node.get(key)
        child_tp = _field_type(tp, key)
        if child is None:
            child = node[key] = [] if _is_named_list(child_tp) else {}
        if not isinstance(child, (dict, list)):
            raise error(f"override {override.text!r}: '{'.'.join(path)}' is a value ({child!r}), not a section")
        node, tp = child, child_tp
    last = override.keys[-1]
    if isinstance(node, list):
        raise error(f"override {override.text!r}: give a field of domain '{last}', e.g. {override.text.split('=')[0]}.text_field=body")
    current, last_tp = node.get(last), _field_type(tp, last)
    if override.merge:
        node[last] = _merged(current, override, last_tp, error)
    elif isinstance(override.value, dict) and dataclasses.is_dataclass(last_tp):  # a section: each key its own override
        for key, value in override.value.items():
            _apply(raw, dataclasses.replace(override, keys=(*override.keys, str(key)), value=value), root, error)
    else:
        node[last] = copy.deepcopy(override.value)


def _merged(current: Any, override: Override, tp: Any, error: type[Exception]) -> Any:
    value = override.value
    if current is None:
        current = [] if typing.get_origin(tp) is list else {} if isinstance(value, dict) else None
    if isinstance(current, dict) and isinstance(value, dict):
        return {**current, **copy.deepcopy(value)}
    if isinstance(current, list) and isinstance(value, list):
        return [*current, *copy.deepcopy(value)]
    raise error(f"override {override.text!r}: '+=' merges a mapping into a mapping or appends a list to a list; use '=' to replace the value")


def _named_item(items: list, name: str, where: str, override: Override, error: type[Exception]) -> dict:
    for item in items:
        if isinstance(item, dict) and str(item.get("name")) == name:
            return item
    names = [item.get("name") for item in items if isinstance(item, dict)]
    raise error(f"override {override.text!r}: no domain named '{name}' in {where} (known: {names})")


def _field_type(tp: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return typing.get_type_hints(tp).get(key)
    return None


def _is_named_list(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is list and bool(args) and dataclasses.is_dataclass(args[0]) and "name" in typing.get_type_hints(args[0])


def _item_type(tp: Any) -> Any:
    return typing.get_args(tp)[0] if _is_named_list(tp) else None
