"""`mergemix search`: find a mixture with one or more search methods and write the mixture file."""

from __future__ import annotations

import argparse
from pathlib import Path

from mergemix_jax.cli.main import add_config_arguments

EXAMPLES = """Examples:
  mergemix search --method gradient --synthetic quadratic:6 --out runs/search/mixture.json
  mergemix search --method all --synthetic quadratic:6:face --out runs/search/mixture.json
  mergemix search --method hierarchical --inner cmaes --synthetic quadratic:6 --clusters 'a=d0,d1,d2;b=d3,d4,d5'
  mergemix search --method gradient --config configs/demo.yaml --base runs/base --experts runs/web runs/code --out m.json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search the data mixture (gradient, surrogate, subsets, cmaes, hierarchical)",
        description=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--method", required=True, help="gradient|surrogate|subsets|cmaes|hierarchical, a comma list, or all")
    parser.add_argument("--synthetic", default="", help="quadratic:K[:interior|face|vertex]: a problem with a known optimum")
    add_config_arguments(parser, required=False)
    parser.add_argument("--base", default="", help="run folder of the base checkpoint (merged search)")
    parser.add_argument("--experts", nargs="+", default=[], help="run folders of the K experts, named by domain")
    parser.add_argument("--metrics", default="loss/mean", help="weighted metrics, e.g. loss/mean or loss/web=0.5,acc/qa=1")
    parser.add_argument("--groups", default="", help="gradient search: per-'layer' or per-'module' merge weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="mixture JSON (several methods: one file each, <stem>.<method>.json)")
    parser.add_argument("--grain-out", default="", help="also write train.mixture for the grain pipeline (.yaml/.json)")
    parser.add_argument("--cache", default="", help="JSONL of scored mixtures; a rerun with the same settings resumes from it")
    parser.add_argument("--tokens", default="", help="tokens per domain, comma separated: caps, the prior and the ratio report")
    parser.add_argument("--token-budget", type=float, default=0.0, help="tokens the final run trains on")
    parser.add_argument("--max-epochs", type=float, default=4.0, help="cap: at most this many passes over a domain")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g = parser.add_argument_group("gradient")
    g.add_argument("--parametrisation", default="softmax", help="softmax | mirror | projected")
    g.add_argument("--steps", type=int, default=500)
    g.add_argument("--learning-rate", type=float, default=0.1)
    g.add_argument("--restarts", type=int, default=4)
    g.add_argument("--kl-weight", type=float, default=0.0, help="pull toward the prior mixture")
    s = parser.add_argument_group("surrogate")
    s.add_argument("--n-seeds", type=int, default=64)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--regressor", default="auto", help="auto | lightgbm | ridge | gp")
    s.add_argument("--top-k", type=int, default=8)
    c = parser.add_argument_group("cmaes")
    c.add_argument("--generations", type=int, default=60)
    c.add_argument("--population-size", type=int, default=16)
    c.add_argument("--mapping", default="project", help="project | softmax")
    h = parser.add_argument_group("hierarchical")
    h.add_argument("--clusters", default="", help="'name=d0,d1;name2=d2,...' (every domain in one cluster; default: two halves)")
    h.add_argument("--inner", default="gradient", help="method solving each stage: gradient | surrogate | cmaes")
    h.add_argument("--sweeps", type=int, default=1)
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> dict:
    return {
        "seed": args.seed,
        "progress": not args.no_progress,
        "parametrisation": args.parametrisation,
        "steps": args.steps,
        "learning_rate": args.learning_rate,
        "restarts": args.restarts,
        "kl_weight": args.kl_weight,
        "n_seeds": args.n_seeds,
        "rounds": args.rounds,
        "regressor": args.regressor,
        "top_k": args.top_k,
        "generations": args.generations,
        "population_size": args.population_size,
        "mapping": args.mapping,
    }


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from mergemix_jax.export import mixture_from_result, write_grain_mixture, write_mixture
    from mergemix_jax.search.cache import CachedScorer
    from mergemix_jax.search.problem import build_problem, caps_from_tokens
    from mergemix_jax.search.ratios import weights_to_ratios
    from mergemix_jax.search.run import METHODS, parse_clusters, run_search

    methods = list(METHODS) if args.method == "all" else [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"mergemix search: unknown method(s) {unknown}; choose from {METHODS} or all")
    config = None
    if args.config and not args.synthetic:
        from mergemix_jax.config import load_config

        config = load_config(args.config, args.overrides)
    try:
        problem, optimum = build_problem(
            args.synthetic or None, seed=args.seed, config=config, base_dir=args.base, expert_dirs=args.experts, metrics=args.metrics,
            groups=args.groups,
        )
    except ValueError as err:
        raise SystemExit(f"mergemix search: {err}") from None
    tokens = None
    if args.tokens:
        tokens = np.asarray([float(t) for t in args.tokens.split(",")])
        if len(tokens) != problem.k or args.token_budget <= 0:
            raise SystemExit(f"mergemix search: --tokens needs {problem.k} counts and a --token-budget > 0")
        caps = caps_from_tokens(tokens, args.token_budget, args.max_epochs)
        # the natural token proportions become the prior (seeds, restarts, the KL pull)
        problem = dataclasses.replace(problem, tokens=tokens, caps=caps, prior=tokens / tokens.sum())
    if args.cache and problem.score is not None:
        problem = dataclasses.replace(problem, score=CachedScorer(problem.score, args.cache))
    clusters = parse_clusters(args.clusters) if args.clusters else None
    if "hierarchical" in methods and clusters is None:
        half = problem.k // 2
        clusters = {"c0": list(problem.domains[:half]), "c1": list(problem.domains[half:])}
    settings = _settings(args)

    rows = []
    for method in methods:
        result = run_search(problem, method, settings, clusters=clusters, inner=args.inner, sweeps=args.sweeps)
        ratios = weights_to_ratios(result.weights, problem.domains, tokens, args.token_budget or None, args.max_epochs, correct=tokens is not None)
        error = None if optimum is None else float(np.abs(np.asarray(result.weights) - np.atleast_2d(optimum).mean(0)).max())
        rows.append((result, error, objective_at(problem, result.weights)))
        if args.out:
            out = Path(args.out)
            path = out if len(methods) == 1 else out.with_name(f"{out.stem}.{method}{out.suffix or '.json'}")
            job = {"method": method, "problem": problem.description, "settings": settings, "clusters": clusters, "inner": args.inner}
            write_mixture(mixture_from_result(result, job, ratios.to_dict(problem.domains)), path)
            print(f"wrote {path}")
        if args.grain_out and len(methods) == 1:
            data_ratios = dict(zip(problem.domains, ratios.ratios.tolist(), strict=True))  # = weights unless capped
            print(f"wrote {write_grain_mixture(data_ratios, args.grain_out)}")

    print(_table(rows, problem.domains, optimum))
    if isinstance(problem.score, CachedScorer):
        print(f"score cache {args.cache}: {problem.score.hits} mixtures reused, {problem.score.misses} scored")
    return 0


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
