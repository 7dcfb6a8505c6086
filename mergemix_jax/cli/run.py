"""`mergemix run`: the whole pipeline from a config (base, experts, search, mixture file, report)."""

from __future__ import annotations

import argparse
import shlex

from mergemix_jax.cli.errors import UsageError

EXAMPLES = """Examples:
  mergemix run --config configs/demo.yaml
  mergemix run --config configs/demo.yaml pipeline.expert_steps=40 pipeline.methods=[gradient,subsets]
A second run with the same config reuses every finished stage (see <run folder>/stages.jsonl).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from mergemix_jax.cli.main import add_config_arguments

    parser = subparsers.add_parser(
        "run", help="run the whole pipeline: base, experts, merged search, mixture file, report", description=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser)
    parser.add_argument("--stop-after", default="", help="end after this stage: base|experts|probe|diagnostics|search|select|verify")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import PipelineResult, run_pipeline, with_overrides
    from mergemix_jax.pipeline.stages import STAGES

    if args.stop_after and args.stop_after not in STAGES:
        raise UsageError(f"--stop-after {args.stop_after!r} is not a stage; choose one of {', '.join(STAGES)}")
    config = load_config(args.config, args.overrides)
    enable_compilation_cache(config.pipeline.output_root)
    if args.no_progress:
        config = with_overrides(config, train={"progress": False})
    command = shlex.join(["mergemix", "run", "--config", args.config, *args.overrides])
    result = run_pipeline(config, args.config, command=command, stop_after=args.stop_after)
    if isinstance(result, PipelineResult):
        print(f"mixture ({result.method}): " + ", ".join(f"{d}={w:.3f}" for d, w in result.weights.items()))
        print(f"mixture file: {result.mixture_path}")
        print(f"report: {result.report_path}")
    else:
        print(f"stopped after {args.stop_after}; run folder: {result}")
    return 0


def enable_compilation_cache(output_root: str) -> None:
    """Persist compiled programs under <output_root>/.jax_cache: experts and references share one train step."""
    import os

    import jax

    from mergemix_jax.reliability import check_can_create

    cache = os.path.abspath(os.path.join(output_root, ".jax_cache"))
    check_can_create(cache)  # an unusable output_root fails here naming its path, not as a jax warning
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
