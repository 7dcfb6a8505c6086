"""`mergemix` command line: a thin dispatcher over the Python API.

Each command lives in its own module under `mergemix_jax/cli/` exposing
`register(subparsers)`, which adds a sub-parser whose `func(args) -> int` does the work.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import logging
import sys
import traceback

from mergemix_jax.cli.errors import is_shutdown_noise, user_error_message

# module name under mergemix_jax.cli, in the order `mergemix --help` lists them
COMMAND_MODULES = ("data", "train", "eval_mixtures", "search", "base", "export_mergekit", "export_mixture", "tensorboard", "plan", "run", "validate")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the option and where the help is (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command (their sub-parsers are `Parser`s too)."""
    parser = Parser(prog="mergemix", description="Find a data mixture by merging per-domain experts.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error (and of the libraries' clean-up noise)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"mergemix_jax.cli.{name}").register(subparsers)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """`--config FILE` plus trailing `key.sub=value` overrides, shared by every command."""
    parser.add_argument("--config", required=required, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=100 model.d_model=256")


def package_version() -> str:
    """The installed mergemix-jax version (from the package metadata)."""
    try:
        return importlib.metadata.version("mergemix-jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mergemix` console script.

    Errors the user can fix (config, checkpoints, paths, options: see cli/errors.py) end as one
    line on stderr and exit code 2 (with `--debug`, after their traceback); anything else is a bug
    and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet = logging.DEBUG if args.verbose else logging.WARNING
    logging.getLogger("absl").setLevel(quiet)  # orbax's per-save chatter
    logging.getLogger("jax._src.xla_bridge").setLevel(quiet)  # "Unable to initialize backend 'tpu'" on every CPU machine
    with contextlib.ExitStack() if args.debug else quiet_unraisable():
        try:
            return int(args.func(args) or 0)
        except Exception as err:
            message = user_error_message(err, args)
            if message is None:
                raise
            if args.debug:
                traceback.print_exc()
            command = " ".join(str(part) for part in (args.command, getattr(args, "data_command", None)) if part)
            print(f"mergemix {command}: {message}", file=sys.stderr)
            return 2


@contextlib.contextmanager
def quiet_unraisable():
    """Drop the libraries' clean-up noise (cli/errors.py is_shutdown_noise) while a command runs;
    every other unraisable error is still printed."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None if is_shutdown_noise(unraisable) else previous(unraisable)
    try:
        yield
    finally:
        sys.unraisablehook = previous


if __name__ == "__main__":
    sys.exit(main())
