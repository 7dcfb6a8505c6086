"""`mergemix validate`: train reference models on sampled mixtures and rank the merged proxy against them."""

from __future__ import annotations

import argparse

EXAMPLES = """Examples:
  mergemix validate --config configs/demo.yaml
  mergemix validate --config configs/demo.yaml validate.n_dirichlet=20 validate.noise_ceiling=false
Reuses the run folder of `mergemix run` with the same config (base, experts, chosen mixture).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from mergemix_jax.cli.main import add_config_arguments

    parser = subparsers.add_parser(
        "validate", help="train reference mixtures for real and compare them with the merged proxies", description=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mergemix_jax.api import validate
    from mergemix_jax.validate.stats import format_table

    result = validate(args.config, args.overrides, progress=False if args.no_progress else None)  # records `mergemix validate --config ...` in commands.txt
    print(format_table(result["table"]))
    for key, value in result["summary"].items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"validation: {result['dir']}/validation.json")
    print(f"report: {result['report']}")
    return 0
