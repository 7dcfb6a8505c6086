"""`mergemix export-mixture`: a run's mixture as the data-mixture config of another trainer."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """Examples:
  mergemix export-mixture runs/demo-1a2b3c4d --format maxtext
  mergemix export-mixture runs/demo-1a2b3c4d --format levanter --target-tokens 2e11 --out data.yaml
Formats:
{formats}
With --target-tokens, each domain's epochs at that many training tokens are written as comments
(and fields in json), from the data accounting; a warning names every domain repeated more than
data.max_epochs times. Without --out the config is printed.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from mergemix_jax.export.formats import FORMATS

    parser = subparsers.add_parser(
        "export-mixture",
        help="write a run's mixture for MaxText, levanter, OLMo-core, torchtitan, grain, seqio or as JSON",
        description=EXAMPLES.format(formats="\n".join(f"  {name:<11} {f.summary}" for name, f in FORMATS.items())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", help="pipeline run folder (config.yaml and mixture.json)")
    parser.add_argument("--format", required=True, choices=tuple(FORMATS), help="the trainer's config format")
    parser.add_argument("--target-tokens", type=float, default=None, help="training tokens of the target run (e.g. 2e11): epochs per domain")
    parser.add_argument("--mixture", default="", help="mixture file to export (default: <run>/mixture.json; e.g. <run>/search/selected.json)")
    parser.add_argument("--out", default="", help="file to write (atomically); default: print")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mergemix_jax.export.formats import render
    from mergemix_jax.export.plan import export_plan
    from mergemix_jax.reliability.atomic import atomic_write_text

    target = None if args.target_tokens is None else int(args.target_tokens)
    plan = export_plan(args.run, target, mixture_file=args.mixture or None)
    text = render(plan, args.format)
    for warning in plan.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if args.out:
        print(f"wrote {atomic_write_text(args.out, text)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
