"""`mergemix tensorboard`: a run's training and search logs as TensorBoard event files."""

from __future__ import annotations

import argparse

from mergemix_jax.cli.errors import UsageError

EXAMPLES = """Examples:
  mergemix tensorboard runs/demo-1a2b3c4d            # then: tensorboard --logdir runs/demo-1a2b3c4d/tensorboard
  mergemix tensorboard runs/base --logdir tb/base     # any train run folder works too
Needs the optional extra: pip install mergemix-jax[tensorboard]
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tensorboard", help="write a run's training and search logs as TensorBoard event files", description=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a pipeline run folder or a train run folder")
    parser.add_argument("--logdir", default="", help="where to write (default: <run>/tensorboard)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mergemix_jax.export.tensorboard import write_tensorboard

    if not Path(args.run).is_dir():
        raise UsageError(f"RUN {args.run} is not a folder; give a `mergemix run` or `mergemix train` run folder")
    try:
        written = write_tensorboard(args.run, args.logdir or None)
    except RuntimeError as err:  # the optional extra is missing
        raise UsageError(str(err)) from None
    if not written:
        raise UsageError(f"no metrics.jsonl or search/*.json under {args.run}; give a `mergemix run` or `mergemix train` run folder")
    for name, points in written.items():
        print(f"{name}: {points} points")
    print(f"tensorboard --logdir {args.logdir or Path(args.run) / 'tensorboard'}")
    return 0
