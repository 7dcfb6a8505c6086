"""`mergemix train`: a base from scratch, an expert from a base, or a reference on a mixture."""

from __future__ import annotations

import argparse

from mergemix_jax.cli.main import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a base, a domain expert (train.init_from + train.mixture) or a mixture reference",
        description="Train one model. Examples:\n"
        "  mergemix train --config configs/demo.yaml train.output_dir=runs/base\n"
        "  mergemix train --config configs/demo.yaml train.init_from=runs/base train.mixture.code=1 train.output_dir=runs/code",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument("--no-resume", action="store_true", help="start over even if the output folder has checkpoints")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mergemix_jax.config import load_config
    from mergemix_jax.train import train

    config = load_config(args.config, args.overrides)
    result = train(config, resume=not args.no_resume, config_source=args.config)
    print(f"trained {result.steps} steps -> {result.run_dir} (final loss {result.final_loss:.4f}, {result.tokens_per_second:,.0f} tokens/s)")
    return 0
