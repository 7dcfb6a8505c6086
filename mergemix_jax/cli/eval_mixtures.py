"""`mergemix eval-mixtures`: score many merged mixtures of K experts into one resumable CSV."""

from __future__ import annotations

import argparse

from mergemix_jax.cli.errors import UsageError
from mergemix_jax.cli.main import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-mixtures",
        help="merge K experts with many weight vectors and score every merged model",
        description="Score merged mixtures on the held-out domains and tasks of the config. Examples:\n"
        "  mergemix eval-mixtures --config configs/demo.yaml --base runs/base --experts runs/code runs/web \\\n"
        "      --sample dirichlet:1000 --out results/mixtures.csv\n"
        "  mergemix eval-mixtures --config configs/demo.yaml --base runs/base --experts runs/code runs/web \\\n"
        "      --weights weights.csv --proxy quadratic --out results/proxy.csv eval.merge=ties\n"
        "A rerun with the same --out skips mixtures already scored.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument("--base", required=True, help="run folder of the base checkpoint")
    parser.add_argument("--experts", nargs="+", required=True, help="run folders of the K experts (named by folder)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="CSV of mixtures: a header naming the experts, one row per mixture")
    source.add_argument("--sample", help="dirichlet:N[:ALPHA] — N mixtures drawn from a Dirichlet (uniform at ALPHA=1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--normalize-weights", action="store_true", help="divide --weights rows that do not sum to 1 by their sum (default: refuse them)")
    parser.add_argument(
        "--proxy", choices=("exact", "quadratic", "ensemble"), default=None,
        help="exact merge+eval (default with eval.proxy=merged); ensemble: the experts' averaged next-token probabilities, "
        "held-out losses and exact-answer NLLs (default with eval.proxy=ensemble); quadratic: the second-order merge proxy (opt-in: see eval/quadratic.py)",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="results CSV (one per job; resumed if it exists)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def parse_sample(spec: str) -> tuple[int, float]:
    """'dirichlet:N[:ALPHA]' -> (N, ALPHA); UsageError naming --sample for anything else."""
    import math

    parts = spec.split(":")
    expected = "expected dirichlet:N or dirichlet:N:ALPHA with N >= 1 mixtures and ALPHA > 0, e.g. dirichlet:1000"
    if parts[0] != "dirichlet":
        raise UsageError(f"--sample {spec!r}: unknown sampler {parts[0]!r} (the only one is dirichlet); {expected}")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        count, alpha = int(parts[1]), float(parts[2]) if len(parts) == 3 else 1.0
    except ValueError:
        raise UsageError(f"--sample {spec!r}: {expected}") from None
    if count < 1 or not (math.isfinite(alpha) and alpha > 0):
        raise UsageError(f"--sample {spec!r}: {expected}")
    return count, alpha


def run(args: argparse.Namespace) -> int:
    from mergemix_jax.config import load_config
    from mergemix_jax.eval.weights_file import read_weights_file
    from mergemix_jax.merge import sample_dirichlet
    from mergemix_jax.reliability import oom_hint
    from mergemix_jax.runkit.engine import Engine

    sample = parse_sample(args.sample) if args.sample else None  # a wrong --sample fails before any checkpoint is read
    config = load_config(args.config, args.overrides)
    proxy = args.proxy or ("ensemble" if config.eval.proxy == "ensemble" else "exact")
    engine = Engine.from_checkpoints(config, args.base, args.experts)  # the configured mesh, stack placed on it
    stack = engine.stack
    if sample is None:
        weights = read_weights_file(args.weights, stack.names, normalize=args.normalize_weights)
    else:
        weights = sample_dirichlet(sample[0], stack.num_experts, sample[1], args.seed)
    fix = f"lower eval.mixtures_per_device (now {config.eval.mixtures_per_device}) or eval.micro_batch (now {config.eval.micro_batch}; 0 = whole domain)"
    with oom_hint(f"scoring {config.eval.mixtures_per_device} mixture(s) per device per chunk", fix):
        summary = engine.evaluate(weights, args.out, proxy, progress=not args.no_progress)
    print(f"{summary['scored']} mixtures scored, {summary['skipped']} already in {summary['out']}")
    if proxy == "quadratic" and summary["scored"]:
        print(f"quadratic proxy: {len(summary['centres'])} centre(s), {len(summary['checks'])} exact check(s), "
              f"{len(summary['exact_rows'])} mixture(s) outside the trust region (eval.quadratic_radius) scored exactly")
    return 0
