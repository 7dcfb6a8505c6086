"""`mergemix` command line: a thin dispatcher over the Python API.

Each command lives in its own module under `mergemix_jax/cli/` exposing
`register(subparsers)`, which adds a sub-parser whose `func(args) -> int` does the work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mergemix_jax.config import ConfigError

# module name under mergemix_jax.cli, in the order `mergemix --help` lists them
COMMAND_MODULES = ("data", "train", "eval_mixtures", "search", "base", "run", "validate")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command."""
    parser = argparse.ArgumentParser(prog="mergemix", description="Find a data mixture by merging per-domain experts.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"mergemix_jax.cli.{name}").register(subparsers)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """`--config FILE` plus trailing `key.sub=value` overrides, shared by every command."""
    parser.add_argument("--config", required=required, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=100 model.d_model=256")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mergemix` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.DEBUG if args.verbose else logging.WARNING)  # orbax's per-save chatter
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"mergemix: config error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
