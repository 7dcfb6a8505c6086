"""Would training B random mixtures with the same real compute beat mergemix? (issue 21; docs/budget.md)

    python benchmarks/budget.py --config configs/demo.yaml --seeds 0 1 2 3 4 --budgets 4 6 8 12 16 \
        [--pool 12] [--eval-seeds 2] [--variant NAME="k=v k=v"]... [--out DIR] [--no-pipeline] [--smoke]

For each pipeline seed s (overrides `--seed-template`, default train/search seeds = s) and each budget
B (real runs of one expert's size): the regret of uniform, natural (B = 0), random search (B pool
mixtures from Dirichlet(K x natural), one run each on the selection data seed, keep the best measured),
each mergemix variant (its K experts + verification runs) and the oracle, every final mixture judged on
`--eval-seeds` fresh data seeds and held-out items the search never saw (as `mergemix validate`).
Writes budget.json, budget.md and budget.png to --out (default runs/budget/<config stem>-<hash8>);
every real run is cached there, so a killed run resumes and every strategy shares the runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_variant(text: str) -> tuple[str, list[str]]:
    """NAME="k=v k=v" -> (NAME, ["k=v", "k=v"])."""
    name, _, overrides = text.partition("=")
    return name.strip(), overrides.split()


def build_plan(argv: list[str] | None = None):
    """The checked Plan of the command line (ConfigError on bad input)."""
    from mergemix_jax.config import ConfigError, load_config
    from mergemix_jax.config.hashing import config_hash
    from mergemix_jax.runkit.run_dir import hashed_settings
    from mergemix_jax.validate.budget_runs import SEED_TEMPLATE, SMOKE, Plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="pipeline config (YAML)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="pipeline seeds")
    parser.add_argument("--budgets", type=int, nargs="+", required=True, help="real-run budgets B (runs of one expert's size)")
    parser.add_argument("--pool", type=int, default=12, help="random search's pool size P (default 12)")
    parser.add_argument("--eval-seeds", type=int, default=2, help="evaluation data seeds per final mixture (10000, 10001, ...; default 2)")
    parser.add_argument("--pool-seed", type=int, default=20_261_207, help="seed of the Dirichlet pool (independent of the pipeline seeds)")
    parser.add_argument("--seed-template", default=SEED_TEMPLATE, help=f"overrides of pipeline seed {{s}} (default {SEED_TEMPLATE!r})")
    parser.add_argument("--variant", action="append", default=[], metavar='NAME="k=v ..."', help="a mergemix variant besides 'shipped' (the config as it is; repeatable)")
    parser.add_argument("--out", default="", help="output and cache folder (default runs/budget/<config stem>-<hash8>)")
    parser.add_argument("--no-shipped", action="store_true", help="run only the --variant pipelines (the shipped defaults are still read where finished)")
    parser.add_argument("--no-pipeline", action="store_true", help="run no pipeline: measure random search and the baselines, read the variants' finished runs")
    parser.add_argument("--smoke", action="store_true", help="tiny models and suites, 1 seed, P = 3 (checks the plumbing, measures nothing)")
    args = parser.parse_args(argv)
    extra = list(SMOKE) if args.smoke else []
    seeds = args.seeds[:1] if args.smoke else args.seeds
    pool = 3 if args.smoke else args.pool
    given = [parse_variant(v) for v in args.variant]
    if len({name for name, _ in given}) != len(given):
        raise ConfigError("--variant: two variants share a name; give each its own NAME=")
    variants = ({} if args.no_shipped and given else {"shipped": []}) | dict(given)  # the shipped defaults run unless --no-shipped; a variant named "shipped" replaces them
    out = Path(args.out) if args.out else Path("runs") / "budget" / f"{Path(args.config).stem}-{config_hash(hashed_settings(load_config(args.config, extra)), 8)}"
    plan = Plan(Path(args.config), out, seeds, sorted(set(args.budgets)), pool, [10_000 + j for j in range(args.eval_seeds)], args.pool_seed, args.seed_template, variants, extra, not args.no_pipeline)
    return plan


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; bad input -> one line on stderr and exit 2."""
    from mergemix_jax.cli.errors import user_error_message

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every checkpoint read
    try:
        from mergemix_jax.validate.budget_runs import measure

        plan = build_plan(argv)
        payload = measure(plan)
    except Exception as err:  # user errors become one line, bugs keep their traceback
        message = user_error_message(err)
        if message is None:
            raise
        print(f"budget.py: {message}", file=sys.stderr)
        return 2
    print((plan.out / "budget.md").read_text())
    print(f"wrote {plan.out / 'budget.json'}, budget.md, budget.png")
    return 0 if payload else 1


if __name__ == "__main__":
    sys.exit(main())
