"""`mergemix search`: find a mixture with one or more search methods and write the mixture file.

Over merged experts the problem is the config's one search assembly (pipeline/assembly.py), the
same `mergemix run` solves: with `--run RUN` exactly the run's (its config, experts, utility, probe
table); with `--base/--experts` the same minus what needs a probe table."""

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
  mergemix search --method surrogate --run runs/demo-1a2b3c4d --out m.json   (the run's own problem)
  mergemix search --method gradient --config configs/demo.yaml --base runs/base --experts runs/web runs/code --out m.json

--run RUN searches exactly the problem `mergemix run` searched in RUN (its config.yaml, experts, utility
with search.normalise fitted on its probe table, caps, trust region, clusters from task-vector cosines);
search.* flags and overrides still apply. --base/--experts build the same problem from --config, minus
what needs a probe table: search.normalise must be none, and the surrogate has no earlier observations.
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
    parser.add_argument("--run", default="", help="a `mergemix run` folder: search its problem exactly as the pipeline does (no --config/--base/--experts)")
    parser.add_argument("--base", default="", help="run folder of the base checkpoint (merged search)")
    parser.add_argument("--experts", nargs="+", default=[], help="run folders of the K experts, named by domain")
    parser.add_argument("--metrics", default=None, help="pipeline.utility: weighted metrics, e.g. loss/mean or loss/web=0.5,acc/qa=1 (default: the config's)")
    parser.add_argument("--groups", default="", help="gradient search: per-'layer' or per-'module' merge weights")
    parser.add_argument("--seed", type=int, default=None, help="search.seed (default 0)")
    parser.add_argument("--out", default="", help="mixture JSON (several methods: one file each, <stem>.<method>.json)")
    parser.add_argument("--grain-out", default="", help="also write train.mixture for the grain pipeline (.yaml/.json)")
    parser.add_argument("--cache", default="", help="JSONL of scored mixtures; a rerun with the same settings resumes from it")
    parser.add_argument("--tokens", default="", help="tokens per domain, comma separated: caps, the prior and the ratio report")
    parser.add_argument("--token-budget", type=float, default=None, help="search.token_budget: tokens the final run trains on")
    parser.add_argument("--max-epochs", type=float, default=None, help="data.max_epochs: cap of passes over a domain")
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
        "--clusters": ("clusters", str, "'name=d0,d1;name2=d2,...' (every domain in one cluster; default: cut from task-vector cosines, synthetic: two halves)"),
    },
}


def search_overrides(args: argparse.Namespace) -> list[str]:
    """The flags the user gave, as `search.<method>.<key>=value` config overrides."""
    import json

    overrides = [] if args.seed is None else [f"search.seed={args.seed}"]
    overrides += [] if args.token_budget is None else [f"search.token_budget={args.token_budget}"]
    overrides += [] if args.max_epochs is None else [f"data.max_epochs={args.max_epochs}"]
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
    """Search the mixture with each method of --method and write the mixture file(s) and a table."""
    import dataclasses

    import numpy as np

    from mergemix_jax.export import mixture_from_result, write_grain_mixture, write_mixture
    from mergemix_jax.search.cache import CachedScorer
    from mergemix_jax.search.ratios import weights_to_ratios
    from mergemix_jax.search.registry import METHODS

    methods = list(METHODS) if args.method == "all" else [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--method: unknown method(s) {unknown}; choose from {tuple(METHODS)} or all")
    check_problem_arguments(args)
    config, assembly, optimum = build_assembly(args, methods)
    problem = assembly.problem
    tokens, budget = problem.tokens, assembly.note.get("token_budget")
    settings = dataclasses.asdict(config.search)

    rows = []
    for method in methods:
        result = assembly.run(method, config.search)
        ratios = weights_to_ratios(result.weights, problem.domains, tokens, budget if tokens is not None else None, config.data.max_epochs, correct=tokens is not None)
        error = None if optimum is None else float(np.abs(np.asarray(result.weights) - np.atleast_2d(optimum).mean(0)).max())
        rows.append((result, error, objective_at(problem, result.weights)))
        if args.out:
            out = Path(args.out)
            path = out if len(methods) == 1 else out.with_name(f"{out.stem}.{method}{out.suffix or '.json'}")
            job = {"method": method, "problem": problem.description, "settings": settings, "inputs": assembly.note, "clusters": assembly.clusters}
            write_mixture(mixture_from_result(result, job, ratios.to_dict(problem.domains)), path)
            print(f"wrote {path}")
        if args.grain_out and len(methods) == 1:
            data_ratios = dict(zip(problem.domains, ratios.ratios.tolist(), strict=True))  # = weights unless capped
            print(f"wrote {write_grain_mixture(data_ratios, args.grain_out)}")

    print(_table(rows, problem.domains, optimum))
    if isinstance(problem.score, CachedScorer):
        print(f"score cache {args.cache}: {problem.score.hits} mixtures reused, {problem.score.misses} scored")
    return 0


def build_assembly(args: argparse.Namespace, methods: list[str]):
    """(config, the search assembly, the known optimum or None): a run folder's own problem (--run),
    merged checkpoints (--base/--experts) or a synthetic problem, all through pipeline/assembly.py."""
    import dataclasses
    import json

    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline.assembly import assemble, search_assembly, with_caps
    from mergemix_jax.search.cache import CachedScorer, search_settings
    from mergemix_jax.search.merged import parse_metric_weights
    from mergemix_jax.search.problem import parse_synthetic, synthetic_quadratic

    overrides = [*args.overrides, *search_overrides(args)]
    if args.metrics is not None:
        try:
            overrides.append(f"pipeline.utility={json.dumps(parse_metric_weights(args.metrics))}")
        except ValueError as err:
            raise UsageError(f"--metrics {args.metrics!r}: {err}") from None
    if args.run:
        config = load_config(Path(args.run) / "config.yaml", overrides)
    else:
        config = load_config(args.config or None, overrides)
    tokens = parse_tokens(args.tokens, len(args.experts) or None, config.search.token_budget) if args.tokens else None

    def cache(problem):
        if not args.cache or problem.score is None:
            return problem
        base, experts = _checkpoints(args, config)
        return dataclasses.replace(problem, score=CachedScorer(problem.score, args.cache, search_settings(config, problem.description, base, experts, args.synthetic)))

    if args.synthetic:
        try:
            problem, optimum = synthetic_quadratic(seed=config.search.seed, **parse_synthetic(args.synthetic))
        except ValueError as err:
            raise UsageError(str(err)) from None
        if tokens is not None:
            if len(tokens) != problem.k:
                raise UsageError(f"--tokens: expected {problem.k} token counts (one per domain), got {len(tokens)}")
            problem = dataclasses.replace(problem, prior=tokens / tokens.sum())  # natural proportions: seeds, restarts, the KL pull
        note: dict = {}
        problem = with_caps(cache(problem), tokens, dataclasses.replace(config, search=dataclasses.replace(config.search, caps=tokens is not None)), note)
        return config, assemble(problem, config, note, methods), optimum

    from mergemix_jax.runkit.engine import Engine

    if args.run:
        engine = Engine(config, Path(args.run))
    else:
        if config.search.normalise != "none":
            raise UsageError(
                f"search.normalise={config.search.normalise} fits its maps on a run's probe table, which --base/--experts have not; "
                "give --run RUN (a `mergemix run` folder) or set search.normalise=none"
            )
        engine = Engine.from_checkpoints(config, args.base, args.experts)
    return config, search_assembly(engine, methods, tokens=tokens, groups=args.groups, wrap=cache), None


def _checkpoints(args: argparse.Namespace, config) -> tuple[str, list[str]]:
    """The base and expert folders the search merges (a run folder's own with --run)."""
    if not args.run:
        return args.base, list(args.experts)
    from mergemix_jax.runkit import training

    run_dir = Path(args.run)
    return str(training.base_dir(config, run_dir)), [str(d) for d in training.expert_dirs(config, run_dir)]


def check_problem_arguments(args: argparse.Namespace) -> None:
    """One source of experts: --run RUN, or --config with --base and --experts, or --synthetic; name what is missing or clashes."""
    if args.run:
        given = {"--config": args.config, "--base": args.base, "--experts": args.experts, "--synthetic": args.synthetic, "--groups": args.groups,
                 "--tokens": args.tokens, "--metrics": args.metrics, "--token-budget": args.token_budget, "--max-epochs": args.max_epochs}  # fmt: skip
        clashes = [flag for flag, value in given.items() if value not in (None, "", [])]
        if clashes:
            raise UsageError(f"--run RUN searches the run's own problem (its config.yaml, experts, utility and token counts); drop {', '.join(clashes)}")
        foreign = [o for o in args.overrides if not o.startswith("search.") or o.startswith("search.normalise")]
        if foreign:
            raise UsageError(
                f"--run RUN: override(s) {foreign} would change the run's problem (or refit its saved utility); only search.* options "
                "may change here: rerun `mergemix run` with them instead"
            )
        if not (Path(args.run) / "config.yaml").is_file():
            raise UsageError(f"--run {args.run}: no config.yaml there; give a `mergemix run` folder (runs/<name>-<hash>)")
        return
    if args.synthetic:
        return
    missing = [flag for flag, value in (("--config", args.config), ("--base", args.base), ("--experts", args.experts)) if not value]
    if missing:
        raise UsageError(
            f"{', '.join(missing[:-1]) + ' and ' if len(missing) > 1 else ''}{missing[-1]} {'is' if len(missing) == 1 else 'are'} required to search over merged experts "
            "(--config FILE --base RUN --experts RUN...); or give --run RUN (a `mergemix run` folder), or --synthetic quadratic:K for a synthetic problem"
        )


def parse_tokens(text: str, k: int | None, budget: float):
    """--tokens 'n1,n2,...' as a [K] array (K = len(--experts) when known); needs positive counts and a --token-budget > 0."""
    import numpy as np

    try:
        tokens = np.asarray([float(t) for t in text.split(",")])
    except ValueError:
        raise UsageError(f"--tokens {text!r}: expected {k or 'K'} comma-separated token counts, e.g. {','.join(['1e6'] * (k or 3))}") from None
    if (k is not None and len(tokens) != k) or not (tokens > 0).all():
        raise UsageError(f"--tokens {text!r}: expected {k or 'K'} positive token counts (one per domain), got {len(tokens)}")
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
