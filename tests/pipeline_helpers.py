"""A tiny three-domain corpus and pipeline config for the pipeline, validate and report tests."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

WORDS = ["the", "nation", "people", "union", "state", "war", "peace", "law", "year", "government", "congress", "world"]


def _doc(domain: str, rng: np.random.Generator) -> str:
    if domain == "prose":
        return " ".join(rng.choice(WORDS, size=40)).capitalize() + "."
    if domain == "code":
        return "\n".join(f"def f{i}(x):\n    return x * {int(rng.integers(9))} + {int(rng.integers(9))}" for i in range(4))
    return " ".join(f"{a}+{b}={a + b}" for a, b in rng.integers(0, 50, size=(12, 2)))


def write_corpus(folder: Path, domains: tuple[str, ...] = ("prose", "code", "math"), docs: int = 40) -> list[dict]:
    """One JSONL file per domain of generated documents; returns the data.domains config entries."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for name in domains:
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": _doc(name, rng)}) + "\n" for _ in range(docs)))
        entries.append({"name": name, "paths": [str(path)], "format": "jsonl"})
    return entries


def tiny_pipeline_raw(folder: Path, **pipeline) -> dict:
    """A raw config dict: ~30k-parameter byte model, a few steps per stage, cheap searches."""
    return {
        "data": {"domains": write_corpus(folder / "corpus"), "heldout_fraction": 0.2, "shuffle_buffer": 16},
        "model": {"vocab_size": 320, "d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 64, "max_seq_len": 32},
        "optim": {"learning_rate": 3e-3, "warmup_steps": 0},
        "train": {"batch_size": 8, "seq_len": 32, "log_every": 1, "checkpoint_every": 4, "progress": False},
        "eval": {"heldout_sequences": 2, "seq_len": 32, "mixtures_per_device": 8},
        "pipeline": {
            "output_root": str(folder / "runs"),
            "base_steps": 6,
            "expert_steps": 3,
            "methods": ["subsets", "surrogate"],
            "probe_mixtures": 1,
            "heatmap_resolution": 3,
            "verify_strategy": "rounds",  # the tests of the rounds rule; test_verify_acquisition.py runs the default
            "verify_candidates": 1,
            "verify_pool": 4,
            **pipeline,
        },
        "search": {"surrogate": {"n_seeds": 6}},
        "validate": {"n_dirichlet": 1, "noise_ceiling": True, "baselines": True},
    }


def write_config(folder: Path, raw: dict, name: str = "tiny.yaml") -> Path:
    """Write `raw` as a YAML config file."""
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


@dataclass
class TinyRun:
    """A tiny pipeline run made in two goes: stopped after the experts (as if killed), then finished by the CLI."""

    config_path: Path
    run_dir: Path
    trained_mtimes: dict[str, int]  # base/ and experts/ files after the first go
    first_go_events: int  # stage-log lines written by the first go
    cli_output: str


def file_mtimes(folder: Path) -> dict[str, int]:
    """{path: mtime_ns} of every file under `folder`."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@functools.lru_cache(maxsize=1)
def finished_tiny_run() -> TinyRun:
    """Built once per test process and shared by the pipeline, report and validate tests."""
    from mergemix_jax.cli.main import main
    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import read_stage_log, run_pipeline

    folder = Path(tempfile.mkdtemp(prefix="mergemix-tiny-run-"))
    path = write_config(folder, tiny_pipeline_raw(folder))
    run_dir = run_pipeline(load_config(path), path, stop_after="experts")
    trained = file_mtimes(run_dir / "base") | file_mtimes(run_dir / "experts")
    events = len(read_stage_log(run_dir))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["run", "--config", str(path)]) == 0
    return TinyRun(path, run_dir, trained, events, buffer.getvalue())
