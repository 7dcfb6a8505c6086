"""`mergemix plan`: what a `mergemix run` of a config will cost, before anything runs."""

from __future__ import annotations

import argparse

EXAMPLES = """Examples:
  mergemix plan --config configs/demo.yaml                                  # this machine (cpu)
  mergemix plan --config configs/llama_1b_v5p.yaml --accelerator v5p-64 --target-tokens 1e11
  mergemix plan --config configs/llama_8b_v6e.yaml --accelerator v6e-64 --compiled   # compiled memory (minutes)
Per stage: runs, tokens, FLOPs, memory per chip (analytic, or --compiled), chip-hours at an MFU
(--mfu, assumed 0.4 unless --measured), best and worst case of the verification, and the whole
job against the target training run (--target-tokens; default this config's train budget).
`mergemix run` writes the same table to <run folder>/plan.md and plan.json.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from mergemix_jax.cli.main import add_config_arguments

    parser = subparsers.add_parser("plan", help="the run's cost per stage before it runs: runs, tokens, FLOPs, memory, chip-hours", description=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--accelerator", default="", help="Cloud TPU type (v5p-64, v6e-64, v4-32, v5litepod-16) or cpu; default this machine's")
    parser.add_argument("--target-tokens", type=float, default=0.0, help="tokens of the training run the mixture is for (default train.steps x batch x seq_len)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model-FLOPs utilisation for chip-hours (default 0.4, assumed)")
    parser.add_argument("--measured", action="store_true", help="--mfu was measured (e.g. benchmarks/train_throughput.py), not assumed")
    parser.add_argument("--compiled", action="store_true", help="memory from the compiled train step and evaluation chunk (fake CPU devices; minutes at pod scale)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from mergemix_jax.config import ConfigError, load_config
    from mergemix_jax.runkit.plan import default_accelerator, format_plan, job_plan

    accelerator = args.accelerator or default_accelerator()
    if not 0 < args.mfu <= 1:
        raise ConfigError(f"--mfu must be in (0, 1], got {args.mfu}")
    config = load_config(args.config, args.overrides)
    compiled = compiled_bytes(config, accelerator) if args.compiled else None
    plan = job_plan(config, accelerator, args.mfu, args.measured, args.target_tokens, compiled, bool(config.pipeline.expert_dirs))
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan, args.config))
    return 0


def compiled_bytes(config, accelerator: str) -> dict[str, float]:
    """{"train": bytes, "eval": bytes} per device from the compiled programs (runkit/compiled.py)."""
    import dataclasses

    from mergemix_jax.parallel.estimates import parse_accelerator_type
    from mergemix_jax.runkit.compiled import default_programs, request_fake_devices

    spec, chips = parse_accelerator_type(accelerator)
    request_fake_devices(chips)  # before jax starts its backend
    from mergemix_jax.runkit.compiled import plan

    shapes_only = dataclasses.replace(config, data=dataclasses.replace(config.data, tokenizer=""))
    rows = plan(shapes_only, chips, spec.hbm_bytes, default_programs(config))
    return {("train" if r["program"] == "train step" else "eval"): float(r["per_device_bytes"]) for r in rows}
