"""`mergemix search`: find a mixture with one or more search methods and write the mixture file."""

from __future__ import annotations

import argparse
from pathlib import Path

from mergemix_jax.cli.errors import UsageError
from mergemix_jax.cli.main import add_config_arguments
from mergemix_jax.config.validation import SEARCH_METHODS  # the method registry's names, without importing jax

EXAMPLES = """Examples:
  mergemix search --method gradient --synthetic quadratic:6 --out runs/search/mixture.json
  mergemix search --method all --synthetic quadratic:6:face --out runs/search/mixture.json
  mergemix search --method hierarchical --inner cmaes --synthetic quadratic:6 --clusters 'a=d0,d1,d2;b=d3,d4,d5'
  mergemix search --method gradient --config configs/demo.yaml --base runs/base --experts runs/web runs/code --out m.json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help=f"search the data mixture ({', '.join(SEARCH_METHODS)})",
        description=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--method", required=True, help=f"{'|'.join(SEARCH_METHODS)}, a comma list, or all")
    parser.add_argument("--synthetic", default="", help="quadratic:K[:interior|face|vertex]: a problem with a known optimum")
    add_config_arguments(parser, required=False)
    parser.add_argument("--base", default="", help="run folder of the base checkpoint (merged search)")
    parser.add_argument("--experts", nargs="+", default=[], help="run folders of the K experts, named by domain")
    parser.add_argument("--metrics", default="loss/mean", help="weighted metrics, e.g. loss/mean or loss/web=0.5,acc/qa=1")
    parser.add_argument("--groups", default="", help="gradient search: per-'layer' or per-'module' merge weights")
    parser.add_argument("--seed", type=int, default=None, help="search.seed (default 0)")
    parser.add_argument("--out", default="", help="mixture JSON (several methods: one file each, <stem>.<method>.json)")
    parser.add_argument("--grain-out", default="", help="also write train.mixture for the grain pipeline (.yaml/.json)")
    parser.add_argument("--cache", default="", help="JSONL of scored mixtures; a rerun with the same settings resumes from it")
    parser.add_argument("--tokens", default="", help="tokens per domain, comma separated: caps, the prior and the ratio report")
    parser.add_argument("--token-budget", type=float, default=0.0, help="tokens the final run trains on")
    parser.add_argument("--max-epochs", type=float, default=4.0, help="cap: at most this many passes over a domain")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    # every flag below overrides one key of the config's `search:` section (None = keep the config's value)
    for group_name, flags in FLAGS.items():
        group = parser.add_argument_group(group_name, f"override search.{group_name}.* of the config")
        for flag, (key, kind, text) in flags.items():
            group.add_argument(flag, type=kind, default=None, help=f"search.{group_name}.{key}: {text}")
    parser.set_defaults(func=run)


# flag -> (search.<method> key, type, help); the defaults live in config/schema.py SearchConfig
FLAGS = {
    "gradient": {
        "--parametrisation": ("parametrisation", str, "softmax | mirror | projected"),
        "--steps": ("steps", int, "steps per restart"),
        "--learning-rate": ("learning_rate", float, "optimiser step size"),
        "--restarts": ("restarts", int, "starting points searched at once"),
        "--kl-weight": ("kl_weight", float, "pull toward the prior mixture"),
    },
    "surrogate": {
        "--n-seeds": ("n_seeds", int, "mixtures scored in round 0"),
        "--rounds": ("rounds", int, "refinement rounds of n/2, n/4, ..."),
        "--regressor": ("regressor", str, "auto | lightgbm | ridge | gp"),
        "--preset": ("preset", str, "LightGBM hyperparameters: demix | regmix"),
        "--top-k": ("top_k", int, "predicted-best candidates averaged"),
        "--swarm-csv": ("swarm_csv", str, "CSV of trained-proxy results added to the fit"),
    },
    "cmaes": {
        "--generations": ("generations", int, "generations"),
        "--population-size": ("population_size", int, "mixtures per generation"),
        "--mapping": ("mapping", str, "project | softmax"),
    },
    "hierarchical": {
        "--inner": ("inner", str, "method solving each stage: gradient | surrogate | cmaes"),
        "--sweeps": ("sweeps", int, "top-down passes"),
        "--clusters": ("clusters", str, "'name=d0,d1;name2=d2,...' (every domain in one cluster; default: two halves)"),
    },
}


def search_overrides(args: argparse.Namespace) -> list[str]:
    """The flags the user gave, as `search.<method>.<key>=value` config overrides."""
    import json

    overrides = [] if args.seed is None else [f"search.seed={args.seed}"]
    overrides += [] if args.no_progress else ["search.progress=true"]
    for group_name, flags in FLAGS.items():
        for flag, (key, _, _) in flags.items():
            value = getattr(args, flag.lstrip("-").replace("-", "_"))
            if value is None:
                continue
            if key == "clusters":
                from mergemix_jax.search.registry import parse_clusters

                try:
                    value = parse_clusters(value)
                except ValueError as err:
                    raise UsageError(f"--clusters: {err}") from None
            overrides.append(f"search.{group_name}.{key}={json.dumps(value)}")
    return overrides


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from mergemix_jax.config import load_config
    from mergemix_jax.export import mixture_from_result, write_grain_mixture, write_mixture
    from mergemix_jax.pipeline.engine import build_problem
    from mergemix_jax.search.cache import CachedScorer, search_settings
    from mergemix_jax.search.problem import caps_from_tokens
    from mergemix_jax.search.ratios import weights_to_ratios
    from mergemix_jax.search.registry import METHODS, run_search

    methods = list(METHODS) if args.method == "all" else [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--method: unknown method(s) {unknown}; choose from {tuple(METHODS)} or all")
    check_problem_arguments(args)
    config = load_config(args.config or None, [*args.overrides, *search_overrides(args)])
    problem, optimum = build_problem(
        args.synthetic or None, seed=config.search.seed, config=None if args.synthetic else config, base_dir=args.base, expert_dirs=args.experts,
        metrics=args.metrics, groups=args.groups,
    )  # fmt: skip
    tokens = None
    if args.tokens:
        tokens = parse_tokens(args.tokens, problem.k, args.token_budget)
        caps = caps_from_tokens(tokens, args.token_budget, args.max_epochs)
        # the natural token proportions become the prior (seeds, restarts, the KL pull)
        problem = dataclasses.replace(problem, tokens=tokens, caps=caps, prior=tokens / tokens.sum())
    if args.cache and problem.score is not None:
        problem = dataclasses.replace(problem, score=CachedScorer(problem.score, args.cache, search_settings(config, problem.description, args.base, args.experts, args.synthetic)))
    half = problem.k // 2
    clusters = {"c0": list(problem.domains[:half]), "c1": list(problem.domains[half:])}  # when search.hierarchical.clusters is {}
    settings = dataclasses.asdict(config.search)

    rows = []
    for method in methods:
        result = run_search(problem, method, config.search, clusters=clusters)
        ratios = weights_to_ratios(result.weights, problem.domains, tokens, args.token_budget or None, args.max_epochs, correct=tokens is not None)
        error = None if optimum is None else float(np.abs(np.asarray(result.weights) - np.atleast_2d(optimum).mean(0)).max())
        rows.append((result, error, objective_at(problem, result.weights)))
        if args.out:
            out = Path(args.out)
            path = out if len(methods) == 1 else out.with_name(f"{out.stem}.{method}{out.suffix or '.json'}")
            job = {"method": method, "problem": problem.description, "settings": settings}
            write_mixture(mixture_from_result(result, job, ratios.to_dict(problem.domains)), path)
            print(f"wrote {path}")
        if args.grain_out and len(methods) == 1:
            data_ratios = dict(zip(problem.domains, ratios.ratios.tolist(), strict=True))  # = weights unless capped
            print(f"wrote {write_grain_mixture(data_ratios, args.grain_out)}")

    print(_table(rows, problem.domains, optimum))
    if isinstance(problem.score, CachedScorer):
        print(f"score cache {args.cache}: {problem.score.hits} mixtures reused, {problem.score.misses} scored")
    return 0


def check_problem_arguments(args: argparse.Namespace) -> None:
    """A merged search needs --config, --base and --experts (a synthetic one none of them): name what is missing."""
    if args.synthetic:
        return
    missing = [flag for flag, value in (("--config", args.config), ("--base", args.base), ("--experts", args.experts)) if not value]
    if missing:
        raise UsageError(
            f"{', '.join(missing[:-1]) + ' and ' if len(missing) > 1 else ''}{missing[-1]} {'is' if len(missing) == 1 else 'are'} required to search over merged experts "
            "(--config FILE --base RUN --experts RUN...); or use --synthetic quadratic:K for a synthetic problem"
        )


def parse_tokens(text: str, k: int, budget: float):
    """--tokens 'n1,n2,...' as a [K] array; needs K positive counts and a --token-budget > 0."""
    import numpy as np

    try:
        tokens = np.asarray([float(t) for t in text.split(",")])
    except ValueError:
        raise UsageError(f"--tokens {text!r}: expected {k} comma-separated token counts, e.g. {','.join(['1e6'] * k)}") from None
    if len(tokens) != k or not (tokens > 0).all():
        raise UsageError(f"--tokens {text!r}: expected {k} positive token counts (one per domain), got {len(tokens)}")
    if budget <= 0:
        raise UsageError(f"--tokens needs --token-budget > 0 (the tokens the final run trains on), got {budget:g}")
    return tokens


def objective_at(problem, weights) -> float | None:
    """The problem's differentiable objective at a [K] mixture (shared by all groups), for comparison."""
    import jax.numpy as jnp
    import numpy as np

    if problem.objective is None:
        return None
    w = np.broadcast_to(np.asarray(weights), problem.weight_shape)
    return float(problem.objective(jnp.asarray(w, jnp.float32)))


def _table(rows, domains, optimum) -> str:
    import numpy as np

    head = (
        f"{'method':<30} {'objective':>11} {'f(w)':>11} {'max|w-w*|':>10} {'evals':>6} {'time s':>7}  "
        f"weights ({', '.join(domains)})"
    )
    lines = [head, "-" * len(head)]
    for result, error, f_w in rows:
        err = "-" if error is None else f"{error:.4f}"
        f_text = "-" if f_w is None else f"{f_w:.6g}"
        w = " ".join(f"{x:.3f}" for x in np.asarray(result.weights))
        lines.append(
            f"{result.method:<30} {result.objective:>11.6g} {f_text:>11} {err:>10} {result.n_evaluations:>6} "
            f"{result.wall_time_s:>7.2f}  {w}"
        )
    if optimum is not None:
        w_star = " ".join(f"{x:.3f}" for x in np.atleast_2d(optimum).mean(0))
        lines.append(f"{'known optimum w*':<30} {'':>11} {'':>11} {'':>10} {'':>6} {'':>7}  {w_star}")
    lines.append(
        "objective: what the method minimised (lower is better; -utility for black-box methods); "
        "f(w): the differentiable objective at the chosen mixture, comparable across methods"
    )
    return "\n".join(lines)
