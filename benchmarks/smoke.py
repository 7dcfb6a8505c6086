"""Shared `--smoke` settings of the benchmark scripts: tiny sizes so each script runs in seconds to a
minute and a config or API change that breaks one fails the suite (tests/test_benchmarks_smoke.py).
Not a benchmark itself: the scripts import it (their own folder is on sys.path when run)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"

# A ~10k-parameter byte model at a 32-token context (the demo's domains and tasks, cut to fit).
TINY_MODEL = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.d_ff=64", "model.max_seq_len=32"]


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    """`--smoke`: the script's tiny mode (checks that it runs, measures nothing)."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script still runs (tests/test_benchmarks_smoke.py)")


def apply_smoke(args: argparse.Namespace, **tiny) -> argparse.Namespace:
    """With `args.smoke`, replace the named arguments by their tiny values; `args` unchanged otherwise."""
    if args.smoke:
        for name, value in tiny.items():
            setattr(args, name, value)
    return args


def tiny_run_overrides(output_root: str | Path) -> list[str]:
    """configs/demo.yaml overrides for a tiny pipeline under `output_root`: it trains its own tiny base
    (the shipped base has the demo model's shape), 2-step experts, one search method, cheap verification."""
    return [
        *TINY_MODEL, "train.seq_len=32", "train.batch_size=4", "train.log_every=1", "train.progress=false",
        "optim.warmup_steps=0", "eval.seq_len=32", "eval.heldout_sequences=2", "eval.task_max_items=2", "eval.task_max_len=32",
        f"pipeline.output_root={output_root}", "pipeline.base_dir=", "pipeline.base_steps=4", "pipeline.expert_steps=2",
        "pipeline.methods=[subsets]", "pipeline.probe_mixtures=1", "pipeline.heatmap_resolution=3",
        "pipeline.verify_candidates=1", "pipeline.verify_budget=2", "pipeline.verify_pool=4", "search.surrogate.n_seeds=6",
        "validate.n_dirichlet=1", "validate.noise_ceiling=false",
    ]  # fmt: skip


def tiny_run(stop_after: str, extra: list[str] = ()) -> tuple[str, list[str], Path]:
    """(config path, overrides, run folder) of a tiny demo pipeline run up to the stage `stop_after`, in a
    fresh temporary folder."""
    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import run_pipeline

    overrides = [*tiny_run_overrides(tempfile.mkdtemp(prefix="mergemix-smoke-")), *extra]
    result = run_pipeline(load_config(DEMO_CONFIG, overrides), DEMO_CONFIG, stop_after=stop_after)
    return str(DEMO_CONFIG), overrides, Path(getattr(result, "run_dir", result))
