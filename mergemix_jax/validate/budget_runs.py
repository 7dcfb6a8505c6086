"""The budget benchmark's real side (benchmarks/budget.py; docs/budget.md): one base, the shared
cache of real runs, the pipeline runs of every variant and seed, the judge's utility, the outputs.

Folder layout under `out`:
  base/                       the base, when the config names no `pipeline.base_dir` (trained once)
  runs/<recipe8>/<key>-s<seed>/  every real run of the benchmark (runkit/references.py recipe),
                              scored once per suite (eval-<suite hash>.json); <recipe8> hashes
                              everything but the mixture and the data seed, so a changed recipe or
                              base never reuses a run
  pipeline/<name>-<hash8>/    the mergemix runs (pipeline.output_root), one per variant and seed
  budget.json, budget.md, budget.png
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mergemix_jax.config import Config, ConfigError, load_config
from mergemix_jax.config.hashing import config_hash
from mergemix_jax.runkit import training
from mergemix_jax.runkit.run_dir import hashed_settings, run_dir_for, write_json_atomic
from mergemix_jax.validate import budget
from mergemix_jax.validate.budget import EVAL, SELECT, RealRuns, Strategies, TrajectoryPoint

log = logging.getLogger(__name__)
SEED_TEMPLATE = "train.seed={s} train.data_seed={s} search.seed={s} pipeline.search_seed={s}"
SMOKE = [
    "pipeline.expert_steps=2", "pipeline.base_steps=2", "eval.heldout_sequences=2", "eval.task_max_items=2",
    "pipeline.probe_mixtures=1", "pipeline.heatmap_resolution=3", "pipeline.methods=[subsets]",
    "pipeline.verify_candidates=1", "pipeline.verify_rounds=1", "pipeline.verify_pool=4", "pipeline.verify_extra_rounds=0",
    "pipeline.verify_budget=2",
]  # fmt: skip


@dataclass
class Plan:
    """What one benchmark run measures (the CLI's arguments, checked)."""

    config_path: Path
    out: Path
    seeds: list[int]
    budgets: list[int]
    pool: int = 12
    eval_seeds: list[int] = field(default_factory=lambda: [10_000, 10_001])
    pool_seed: int = 20_261_207
    template: str = SEED_TEMPLATE
    variants: dict[str, list[str]] = field(default_factory=lambda: {"shipped": []})
    extra: list[str] = field(default_factory=list)  # overrides of every model (e.g. --smoke's)
    run_pipelines: bool = True


def load(plan: Plan, *more: str) -> Config:
    """The config with the plan's overrides and `more` (load_config's errors name the key)."""
    return load_config(plan.config_path, [*plan.extra, *more])


def check_plan(plan: Plan) -> None:
    """Refuse a plan that cannot measure what it claims (ConfigError naming the option and the fix)."""
    if not plan.seeds or not plan.budgets:
        raise ConfigError("--seeds and --budgets need at least one value each")
    if min(plan.budgets) < 1 or plan.pool < 1:
        raise ConfigError("--budgets and --pool must be positive (real runs)")
    if len(plan.eval_seeds) < 2:
        raise ConfigError("--eval-seeds must be >= 2: one run's noise needs a replicate")
    for name, overrides in plan.variants.items():
        if not name or any("=" not in o for o in overrides):
            raise ConfigError(f"--variant {name}=...: give NAME=\"key=value key=value\" (e.g. acq=\"pipeline.verify_budget=12\")")
    try:
        sample = [o.format(s=plan.seeds[0]) for o in plan.template.split()]
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"--seed-template {plan.template!r}: use {{s}} for the pipeline seed ({err})") from None
    if not sample or any("=" not in o for o in sample):
        raise ConfigError(f"--seed-template {plan.template!r}: give key=value overrides with {{s}}, e.g. {SEED_TEMPLATE!r}")
    config = load(plan)
    top = max(plan.seeds) + config.pipeline.verify_seeds + config.pipeline.verify_extra_seeds * (config.pipeline.verify_extra_rounds + 1)
    if set(plan.eval_seeds) & ({config.train.data_seed} | set(range(min(plan.seeds), top + 1))):
        raise ConfigError(f"--eval-seeds {plan.eval_seeds} overlap the selection data seeds (train.data_seed {config.train.data_seed}, pipeline seeds {min(plan.seeds)}..{top}); use fresh ones (default 10000 10001)")
    for overrides in plan.variants.values():
        load(plan, *overrides)  # a bad key fails now, before anything is trained


def seed_overrides(plan: Plan, seed: int) -> list[str]:
    """The overrides that make pipeline seed `seed` (the template with {s} = seed)."""
    return [o.format(s=seed) for o in plan.template.split()]


def ensure_base(plan: Plan) -> str:
    """The one base every model starts from: the config's `pipeline.base_dir`, else a base trained
    once by the config's own recipe into <out>/base. Returns its path."""
    from mergemix_jax.train import is_finished

    config = load(plan)
    if config.pipeline.base_dir:
        if not is_finished(config.pipeline.base_dir):
            raise ConfigError(f"pipeline.base_dir {config.pipeline.base_dir} is not a finished train run (no done.json)")
        return str(Path(config.pipeline.base_dir).resolve())
    cfg = training.base_config(config, plan.out)
    log.info("the config names no pipeline.base_dir: training one base for the whole benchmark in %s", cfg.train.output_dir)
    training.train_unless_finished(cfg)
    return str(Path(cfg.train.output_dir).resolve())


def recipe_key(config: Config) -> str:
    """Hash of what a real run depends on besides its mixture and data seed (model, data, optimiser,
    train settings, steps, learning rate and base)."""
    from mergemix_jax.runkit.references import reference_config

    cfg = reference_config(config, Path("."), Path("."), np.full(len(config.data.domains), 1.0 / len(config.data.domains)), 0)
    raw = hashed_settings(cfg)
    for key in ("mixture", "data_seed", "output_dir", "checkpoint_every"):
        raw["train"].pop(key, None)
    return config_hash({k: raw[k] for k in ("model", "data", "optim", "train")} | {"base": config.pipeline.base_dir}, 8)


class ReferenceRunner:
    """budget.Runner over runkit/references.py: trains with the reference recipe into
    <root>/<run key>-s<seed> and scores on the selection suite (the run's own, as verification
    does) or the evaluation suite (validate's held-out items the search never saw)."""

    def __init__(self, config: Config, scoring: Config, root: Path):
        from mergemix_jax.eval import build_suite
        from mergemix_jax.runkit.references import make_model_scorer, suite_key

        self.config, self.root = config, root
        self.suites = {}
        for name, cfg in ((SELECT, config), (EVAL, scoring)):
            suite = build_suite(cfg)
            self.suites[name] = (suite_key(cfg), make_model_scorer(cfg, suite))
        self.seconds: dict[str, float] = {}

    def run(self, weights_K: np.ndarray, data_seed: int, suite: str) -> dict[str, float]:
        from mergemix_jax.runkit.references import train_and_score
        from mergemix_jax.verify.stage import run_key

        folder = self.root / f"{run_key(weights_K)}-s{data_seed}"
        key, score = self.suites[suite]
        record = train_and_score(self.config, self.root, folder, weights_K, data_seed, score, key)
        self.seconds[folder.name] = record["train_seconds"]
        return record["metrics"]


def variant_config(plan: Plan, variant: str, seed: int, base: str) -> Config:
    """Pipeline seed `seed` of `variant` on the benchmark's base, its run folder under <out>/pipeline."""
    return load(plan, *seed_overrides(plan, seed), *plan.variants[variant], f"pipeline.base_dir={base}", f"pipeline.output_root={plan.out / 'pipeline'}")


def check_same_base(config: Config, run_dir: Path, base: str, what: str) -> None:
    """Refuse a pipeline run whose models did not start from the benchmark's base, or whose real runs
    are not the benchmark's size: its picks could not be judged on the same footing."""
    import yaml

    saved = run_dir / "config.yaml"
    recorded = (yaml.safe_load(saved.read_text()) or {}).get("pipeline", {}).get("base_dir", "") if saved.is_file() else config.pipeline.base_dir
    if str(Path(recorded).resolve()) != base:
        raise ConfigError(f"{what}: its run folder {run_dir} used base {recorded!r}, the benchmark evaluates on {base}; drop pipeline.base_dir from the variant (every model must start from one base)")


def check_disjoint(scoring: Config, config: Config, what: str) -> None:
    """Refuse a variant whose search scored held-out sequences or task items the evaluation scores."""
    e, s = config.eval, scoring.eval
    if scoring.validate.disjoint_heldout and (e.heldout_sequences + e.heldout_offset > s.heldout_offset or (s.task_offset and e.task_max_items + e.task_offset > s.task_offset)):
        raise ConfigError(f"{what}: its eval.* overrides make the search score held-out sequences or task items the evaluation scores; drop them from the variant")


def pipeline_points(plan: Plan, base: str, scoring: Config, domains: list[str]) -> tuple[dict[str, dict[int, list[TrajectoryPoint]]], dict]:
    """Every variant's trajectory per seed (running the pipeline up to verify when `plan.run_pipelines`);
    a seed whose run has no verification yet is left out. Also {variant: {seed: run folder}}."""
    from mergemix_jax.pipeline.stages import run_pipeline
    from mergemix_jax.verify.stage import keyed_verification_file

    points: dict[str, dict[int, list[TrajectoryPoint]]] = {}
    folders: dict = {}
    for variant in plan.variants:
        points[variant], folders[variant] = {}, {}
    for seed in plan.seeds:  # seeds outer: a stopped benchmark has every variant of its first seeds
        for variant in plan.variants:
            cfg = variant_config(plan, variant, seed, base)
            what = f"variant {variant} seed {seed}"
            check_disjoint(scoring, cfg, what)
            if (cfg.validate.reference_steps or cfg.pipeline.expert_steps) != (scoring.validate.reference_steps or scoring.pipeline.expert_steps):
                raise ConfigError(f"{what}: its real runs have another number of steps than the benchmark's; drop pipeline.expert_steps / validate.reference_steps from the variant")
            run_dir = run_dir_for(cfg, plan.config_path)
            if plan.run_pipelines:
                start = time.perf_counter()
                run_dir = run_pipeline(cfg, plan.config_path, command=f"benchmarks/budget.py {what}", stop_after="verify")
                log.info("%s: pipeline done in %.0f s (%s)", what, time.perf_counter() - start, run_dir)
            folders[variant][seed] = str(run_dir)
            path = keyed_verification_file(run_dir, cfg)  # this variant's record (variants may share a run folder)
            if path.is_file():
                check_same_base(cfg, run_dir, base, what)
                points[variant][seed] = budget.read_trajectory(json.loads(path.read_text()), domains)
            else:
                log.warning("%s: no %s yet (run without --no-pipeline to train it); left out", what, path)
    return points, folders


def judge_utility(plan: Plan, base: str, weights: dict[str, float]):
    """The one utility every pick is judged by: the run's utility (runkit/utility.py); a normalised
    one fits its maps on the probe table of pipeline seed seeds[0] of the first variant (run up to the probe)."""
    from mergemix_jax.pipeline.stages import run_pipeline
    from mergemix_jax.runkit.utility import run_utility

    variant = next(iter(plan.variants))
    cfg = variant_config(plan, variant, plan.seeds[0], base)
    if cfg.search.normalise == "none":
        return run_utility(cfg, None, weights), None
    run_dir = run_pipeline(cfg, plan.config_path, command="benchmarks/budget.py judge utility", stop_after="probe")
    return run_utility(cfg, run_dir, weights), str(run_dir)


def measure(plan: Plan) -> dict:
    """Run (or resume) the whole benchmark; returns budget.json's content and writes the outputs."""
    from mergemix_jax.eval import build_suite, metric_names
    from mergemix_jax.runkit.mixtures import natural_prior
    from mergemix_jax.runkit.problem import utility_weights
    from mergemix_jax.validate.run import scoring_config
    from mergemix_jax.verify.stage import run_key

    check_plan(plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    base = ensure_base(plan)
    config = load(plan, f"pipeline.base_dir={base}")
    domains = [d.name for d in config.data.domains]
    first_run = run_dir_for(variant_config(plan, next(iter(plan.variants)), plan.seeds[0], base), plan.config_path)
    scoring = scoring_config(config, first_run)
    runs = RealRuns(ReferenceRunner(config, scoring, plan.out / "runs" / recipe_key(config)))
    select_seed = config.train.data_seed
    natural = natural_prior(config)
    pool = budget.dirichlet_pool(natural, plan.pool, plan.pool_seed)
    mixtures = {"uniform": np.full(len(domains), 1.0 / len(domains)), "natural": natural} | {f"pool{i}": w for i, w in enumerate(pool)}
    select = budget.select_runs(runs, pool, select_seed)
    budget.evaluate(runs, mixtures, plan.eval_seeds)
    points, folders = pipeline_points(plan, base, scoring, domains)
    picks = budget.pick_mixtures(points, domains)
    budget.evaluate(runs, {f"pick {key}": w for key, w in picks.items()}, plan.eval_seeds)
    utility, judge_run = judge_utility(plan, base, utility_weights(config.pipeline.utility, metric_names(build_suite(config))))
    keys = {run_key(w): w for w in mixtures.values()} | picks
    evaluation = budget.evaluation_table(runs, list(keys), plan.eval_seeds, utility.of_record)
    strategies = Strategies(
        domains, plan.seeds, plan.budgets, [run_key(w) for w in pool], np.asarray([utility.of_record(m) for m in select]), select_seed,
        {"uniform": run_key(mixtures["uniform"]), "natural": run_key(natural)}, points,
    )  # fmt: skip
    result = budget.analyse(strategies, evaluation)
    unit = "nats of loss" if utility.is_loss else f"utility points ({config.search.normalise}-normalised)"
    seconds = runs.runner.seconds
    payload = {
        "config": str(plan.config_path), "overrides": plan.extra, "seed_template": plan.template, "seeds": plan.seeds, "budgets": plan.budgets,
        "base": base, "select_seed": select_seed, "eval_seeds": plan.eval_seeds, "unit": unit, "utility": utility.to_json(), "judge_run": judge_run,
        "pool": {"seed": plan.pool_seed, "natural": natural.tolist(), "weights": pool.tolist(), "keys": strategies.pool_keys, "select_utility": strategies.select_utility.tolist()},
        "variants": {v: {"overrides": plan.variants[v], "runs": folders[v], "trajectories": {s: [p.__dict__ for p in pts] for s, pts in points[v].items()}} for v in plan.variants},
        "mixtures": {key: dict(zip(domains, np.asarray(w, np.float64).tolist(), strict=True)) for key, w in keys.items()},
        "evaluation": evaluation.utility,
        "runs": [{**e, "train_seconds": seconds.get(f"{e['key']}-s{e['data_seed']}"), "metrics": {s: runs.metrics.get((e["key"], e["data_seed"], s)) for s in (SELECT, EVAL)}} for e in runs.log],
        "seconds_per_run_median": float(np.median([v for v in seconds.values() if v])) if any(seconds.values()) else None,
        **result,
    }  # fmt: skip
    write_outputs(plan.out, payload)
    return payload


def write_outputs(out: Path, payload: dict) -> None:
    """budget.json, budget.md (the table) and budget.png (regret vs B, 90% intervals)."""
    from mergemix_jax.reliability.atomic import atomic_write_text

    write_json_atomic(out / "budget.json", payload)
    oracle = payload["oracle"]
    head = (
        f"# Budget benchmark: {payload['config']}\n\nPipeline seeds {payload['seeds']}; pool of {len(payload['pool']['keys'])} Dirichlet mixtures around "
        f"the natural proportions, each trained once on data seed {payload['select_seed']}; every final mixture evaluated on data seeds {payload['eval_seeds']}. "
        f"One real run took {payload['seconds_per_run_median'] or float('nan'):.1f} s (median). "
        f"Oracle (best evaluation mean): {_describe(payload['mixtures'][oracle['key']])}, utility {oracle['eval_mean']:.4f}.\n\n"
    )
    atomic_write_text(out / "budget.md", head + budget.format_table(payload, payload["unit"]) + "\n")
    plot(payload, out / "budget.png")


def _describe(weights: dict[str, float]) -> str:
    return ", ".join(f"{d} {w:.2f}" for d, w in weights.items())


def plot(payload: dict, path: Path) -> None:
    """Regret vs B per strategy with 90% intervals; B = 0 strategies as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    strategies = list(dict.fromkeys(r["strategy"] for r in payload["rows"]))
    for i, name in enumerate(strategies):
        rows = [r for r in payload["rows"] if r["strategy"] == name]
        if rows[0]["B"] == 0:
            ax.axhline(rows[0]["mean"], ls=":", color=f"C{i}", label=f"{name} (B = 0; band: evaluation noise, 90%)")
            if np.isfinite(rows[0]["lo"]):
                ax.axhspan(rows[0]["lo"], rows[0]["hi"], color=f"C{i}", alpha=0.08)
            continue
        b = np.asarray([r["B"] for r in rows], np.float64) + 0.08 * (i - len(strategies) / 2)
        mean = np.asarray([r["mean"] for r in rows])
        err = np.asarray([[r["mean"] - r["lo"], r["hi"] - r["mean"]] for r in rows]).T
        ax.errorbar(b, mean, yerr=np.nan_to_num(err), marker="o", capsize=3, color=f"C{i}", label=f"{name} (seeds, 90%)")
        if name == "random":
            ax.plot([r["B"] for r in rows], [r["expected"] for r in rows], ls="--", color=f"C{i}", label="random (expectation over subsets)")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("real runs B (one expert's size each)")
    ax.set_ylabel(f"regret to the best evaluated mixture\n{payload['unit']}, lower is better", fontsize=8)
    ax.set_title(f"{Path(payload['config']).name}: {len(payload['seeds'])} pipeline seed(s), one run's noise {payload['noise'] or float('nan'):.4f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
