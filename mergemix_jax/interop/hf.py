"""Read and write Hugging Face Llama checkpoints (config.json + *.safetensors).

Exported folders load with `transformers.LlamaForCausalLM.from_pretrained(out_dir)`, so merged
models can be evaluated with the tools users already have.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from mergemix_jax.config import ModelConfig
from mergemix_jax.interop.llama_layout import (
    InteropError,
    check_hf_tensors,
    hf_config_from_model,
    hf_from_params,
    model_config_from_hf,
    params_from_hf,
)
from mergemix_jax.reliability.atomic import atomic_write_json

EXPORT_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


SHARD_INDEX = "model.safetensors.index.json"


def _checkpoint_files(path: Path) -> tuple[Path, list[Path]]:
    """(config.json, safetensors files) for a checkpoint folder or a single .safetensors file.

    A folder holds one .safetensors file, or a sharded set named by model.safetensors.index.json;
    several files without an index (e.g. two exported models side by side) are refused, naming them.
    """
    if path.is_file():
        files, folder = [path], path.parent
    elif path.is_dir():
        files, folder = _folder_weights(path), path
    else:
        raise InteropError(f"{path}: no such file or folder; pass a Hugging Face checkpoint folder or .safetensors file")
    config = folder / "config.json"
    if not config.is_file():
        raise InteropError(f"{config}: missing; a Hugging Face checkpoint needs its config.json beside the weights")
    return config, files


def _folder_weights(folder: Path) -> list[Path]:
    """The .safetensors files of a checkpoint folder: the one there, or the shards its index lists."""
    found = sorted(folder.glob("*.safetensors"))
    index = folder / SHARD_INDEX
    if not index.is_file():
        if not found:
            raise InteropError(f"{folder}: no *.safetensors files; convert .bin checkpoints to safetensors first")
        if len(found) > 1:
            names = ", ".join(f.name for f in found)
            raise InteropError(
                f"{folder} holds {len(found)} .safetensors files ({names}) and no {SHARD_INDEX}, so which one is the model is ambiguous; "
                "pass the file itself (mergemix import-base FOLDER/NAME.safetensors) or move the others away"
            )
        return found
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted({folder / str(name) for name in weight_map.values()})
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise InteropError(f"{index}: not a safetensors index (a JSON object with a 'weight_map'): {err!r}") from None
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise InteropError(f"{index} lists shard(s) {missing} that are not in {folder}; download the whole checkpoint")
    if stray := [f.name for f in found if f not in shards]:
        raise InteropError(f"{folder}: {stray} are .safetensors files that {index.name} does not list; move them away so the checkpoint is unambiguous")
    return shards


def _leaf_placer(cfg: ModelConfig, dtype: Any, mesh: jax.sharding.Mesh | None) -> Callable:
    """convert(array, path): cast to `dtype` and, with a mesh, build the sharded global array.

    Every process reads the file and keeps only its own shards, so this works multi-host.
    """
    if mesh is None:
        return lambda arr, path: np.asarray(arr, dtype=dtype)
    from mergemix_jax.model import param_shardings

    shardings = param_shardings(cfg, mesh)

    def place(arr: np.ndarray, path: tuple) -> jax.Array:
        sharding = shardings
        for key in path:
            sharding = sharding[key]
        arr = np.asarray(arr, dtype=dtype)
        return jax.make_array_from_callback(arr.shape, sharding, lambda index: arr[index])

    return place


def import_hf_safetensors(
    path: str | os.PathLike,
    *,
    dtype: Any = np.float32,
    mesh: jax.sharding.Mesh | None = None,
    **model_overrides: Any,
) -> tuple[ModelConfig, dict]:
    """(ModelConfig, params) from a Hugging Face Llama checkpoint folder or .safetensors file.

    `model_overrides` set our own ModelConfig fields (e.g. compute_dtype="bfloat16", remat=True,
    max_seq_len=4096). Params are numpy `dtype` arrays, or sharded jax arrays when `mesh` is given.
    """
    config_path, files = _checkpoint_files(Path(path))
    try:
        hf_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise InteropError(f"{config_path}: not valid JSON ({err})") from None
    cfg = model_config_from_hf(hf_config, str(config_path), **model_overrides)
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(f), framework="np")) for f in files]
        owner = {name: h for h in handles for name in h.keys()}  # noqa: SIM118 (safe_open is not iterable)
        shapes = {name: tuple(h.get_slice(name).get_shape()) for name, h in owner.items()}
        check_hf_tensors(shapes, cfg, str(path))
        params = params_from_hf(lambda name: owner[name].get_tensor(name), cfg, _leaf_placer(cfg, dtype, mesh))
    return cfg, params


def _host_numpy(x: Any) -> np.ndarray:
    """A whole array on this host, gathering shards from every process when needed."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def export_hf_safetensors(
    params: dict, model_cfg: ModelConfig, out_dir: str | os.PathLike, *, dtype: str = "float32", token_ids: dict[str, int | None] | None = None
) -> Path:
    """Write `out_dir/model.safetensors` + `config.json` in `LlamaForCausalLM` naming.

    `token_ids` (see `tokenizer_token_ids`) go into config.json so generation uses the run's bos/eos/pad.
    Each file is written to a temporary name and renamed, config.json last. On a multi-host
    job every process must call this (sharded leaves are gathered); only process 0 writes.
    """
    if dtype not in EXPORT_DTYPES:
        raise InteropError(f"export dtype {dtype!r} is not one of {sorted(EXPORT_DTYPES)}")
    np_dtype = EXPORT_DTYPES[dtype]
    tensors = hf_from_params(params, model_cfg, to_numpy=lambda x: _host_numpy(x).astype(np_dtype))
    out = Path(out_dir)
    if jax.process_index() != 0:
        return out
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "model.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write_json(out / "config.json", hf_config_from_model(model_cfg, torch_dtype=dtype, token_ids=token_ids), allow_nan=True)
    return out


def tokenizer_token_ids(tokenizer) -> dict[str, int | None]:
    """{"bos_token_id", "eos_token_id", "pad_token_id"} of a project tokenizer (data/tokenizer.py), for config.json."""
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
