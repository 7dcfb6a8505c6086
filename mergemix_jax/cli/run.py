"""`mergemix run`: the whole pipeline from a config (base, experts, search, mixture file, report)."""

from __future__ import annotations

import argparse

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
    from mergemix_jax.api import run as run_api
    from mergemix_jax.pipeline import PipelineResult
    from mergemix_jax.pipeline.stages import STAGES

    if args.stop_after and args.stop_after not in STAGES:
        raise UsageError(f"--stop-after {args.stop_after!r} is not a stage; choose one of {', '.join(STAGES)}")
    result = run_api(args.config, args.overrides, stop_after=args.stop_after, progress=False if args.no_progress else None)  # records `mergemix run --config ...` in commands.txt
    if isinstance(result, PipelineResult):
        print(f"mixture ({result.method}): " + ", ".join(f"{d}={w:.3f}" for d, w in result.weights.items()))
        print(f"mixture file: {result.mixture_path}")
        print(f"report: {result.report_path}")
    else:
        print(f"stopped after {args.stop_after}; run folder: {result}")
    return 0


def enable_compilation_cache(output_root: str) -> None:
    """Persist compiled programs under <output_root>/.jax_cache (moved to mergemix_jax/api.py; kept for callers)."""
    from mergemix_jax.api import enable_compilation_cache as enable

    enable(output_root)
