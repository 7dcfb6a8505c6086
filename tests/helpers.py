"""Small shared builders for tests: tiny configs and in-memory grain datasets."""

from __future__ import annotations

import inspect
import json

import grain
import numpy as np

from mergemix_jax.config import Config, config_from_dict
from mergemix_jax.data.batches import batch_from_sequences

TINY_MODEL = {"vocab_size": 64, "d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 64, "max_seq_len": 64}


def tiny_config(output_dir: str = "", **sections) -> Config:
    """A ~20k-parameter model config; `sections` update the raw dict (e.g. train={"steps": 4})."""
    raw = {"model": dict(TINY_MODEL), "train": {"batch_size": 8, "seq_len": 16, "log_every": 1, "progress": False}}
    if output_dir:
        raw["train"]["output_dir"] = output_dir
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(json.loads(json.dumps(raw)), "tests")


def windows_dataset(tokens: np.ndarray, batch_size: int, seq_len: int, seed: int = 0):
    """Shuffled fixed windows of a 1-D token array as a grain dataset of batches (batch format)."""
    starts = np.arange(0, len(tokens) - seq_len - 1, seq_len)

    def window(start):
        one_row = batch_from_sequences(tokens[None, start : start + seq_len + 1])
        return {key: value[0] for key, value in one_row.items()}

    return grain.MapDataset.source(starts).shuffle(seed=seed).repeat().map(window).to_iter_dataset().batch(batch_size)


def random_dataset(vocab: int, batch_size: int, seq_len: int, seed: int = 0):
    """Uniform random tokens in [1, vocab), as a grain dataset of batches."""
    rng = np.random.default_rng(seed)
    return windows_dataset(rng.integers(1, vocab, 64 * seq_len * batch_size), batch_size, seq_len, seed)


def real_text_tokens(vocab: int = 64) -> np.ndarray:
    """Real English-and-Python text (the stdlib `inspect` module's source) as tokens < vocab."""
    data = np.frombuffer(inspect.getsource(inspect).encode(), dtype=np.uint8)
    return (data % (vocab - 1) + 1).astype(np.int32)
