"""The cost of a whole `mergemix run` before anything runs: per stage the runs, tokens, FLOPs,
per-chip memory and chip-hours, best and worst case, and the job against the target training run.

Pure arithmetic over the config (no arrays, no data read). Conventions:
- training FLOPs: `estimates.flops_per_token` (6 N per token plus attention) x tokens;
- a merged evaluation: 2 N per token forward over the suite (held-out rows; task rows as at most
  `eval.task_max_items` x `eval.task_max_len` each) plus the merge (2 K N); a gradient-search step
  counts 3 forwards (forward + backward);
- search: each method's evaluation budget from its section (an upper bound: early stopping,
  caches and the quadratic proxy only lower it);
- verification, `pipeline.verify_strategy: acquisition` (verify/acquire_stage.py): exactly
  `verify_budget` runs (best case 1 when `verify_stop_ratio` > 0 may stop it early); its pool scores
  the draws around natural and the rounds pool (2 x `verify_pool` + K merged evaluations) and the
  ensemble's K expert passes over the suite;
- verification, `rounds` (verify/stage.py): best case = the two baselines and the first round on the
  screening seeds; worst case = every round's candidate brought to all `verify_seeds` plus every
  sequential-test round (`verify_extra_rounds` x `verify_extra_seeds` seeds of the leader and both baselines);
- chip-hours = FLOPs / (peak FLOP/s x MFU) / 3600, MFU assumed (default 0.4) or measured; on `cpu`
  the "chip" is one CPU-second of work and the rate a measured FLOP/s per CPU-second (docs/cost.md).
Memory per chip is the compiled plan's (`runkit/compiled.py`) when given, else the analytic
estimate (`estimates.estimate`, `estimates.eval_memory_bytes`); each row says which.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from mergemix_jax.config import Config
from mergemix_jax.parallel.estimates import (
    GIB,
    Accelerator,
    estimate,
    eval_memory_bytes,
    flops_per_token,
    param_counts,
    parse_accelerator_type,
)


@dataclass
class StageCost:
    """One row of the plan: a stage's runs (best, worst), tokens, FLOPs, memory and chip-hours (worst case)."""

    stage: str
    kind: str  # train | eval
    runs_best: float
    runs_worst: float
    tokens: float  # worst case
    flops_best: float
    flops_worst: float
    memory_gib: float
    memory_source: str  # compiled | analytic
    fits: bool
    chip_hours_best: float = 0.0
    chip_hours_worst: float = 0.0
    note: str = ""


def suite_tokens(config: Config) -> int:
    """Tokens one merged evaluation scores: held-out rows of every domain plus the task rows, one row
    of `eval.task_max_len` per item (items: `eval.task_max_items`, or the lines of the task file
    when 0; a multiple-choice task outside `eval.choice_as_answer` scores one row per choice: more)."""
    e = config.eval
    tokens = len(config.data.domains) * e.heldout_sequences * e.seq_len
    if not e.task_dir or not os.path.isdir(e.task_dir):
        return tokens
    names = e.tasks or sorted(f[: -len(".jsonl")] for f in os.listdir(e.task_dir) if f.endswith(".jsonl"))
    for name in names:
        path = os.path.join(e.task_dir, f"{name}.jsonl")
        items = e.task_max_items
        if not items and os.path.isfile(path):
            with open(path, "rb") as handle:
                items = max(0, sum(1 for line in handle if line.strip()) - e.task_offset)
        tokens += items * e.task_max_len
    return tokens


def probe_evaluations(config: Config) -> int:
    """Rows of the probe table (vertices, centre, Dirichlet draws, heatmap faces), as stage_probe scores."""
    from mergemix_jax.runkit.mixtures import probe_weights

    return len(probe_weights(config, len(config.data.domains))[0])


def search_evaluations(config: Config) -> dict[str, float]:
    """Upper bound of merged evaluations per configured search method (gradient steps count 3)."""
    s, k = config.search, len(config.data.domains)
    surrogate = s.surrogate.n_seeds * sum(0.5**r for r in range(s.surrogate.rounds + 1))
    budgets = {
        "gradient": 3.0 * s.gradient.steps * s.gradient.restarts,
        "surrogate": surrogate,
        "subsets": 2.0**k - 1,
        "cmaes": float(s.cmaes.population_size * s.cmaes.generations),
    }
    inner = budgets.get(s.hierarchical.inner, 0.0)
    clusters = len(s.hierarchical.clusters) or s.hierarchical.n_clusters or max(1, round(math.sqrt(k)))
    budgets["hierarchical"] = inner * (clusters + 1) * s.hierarchical.sweeps
    return {m: budgets[m] for m in config.pipeline.methods if m in budgets}


def verification_runs(config: Config) -> tuple[int, int]:
    """(best, worst) number of verification training runs (see the module doc)."""
    p = config.pipeline
    if p.verify_strategy == "acquisition":
        return (min(1, p.verify_budget) if p.verify_stop_ratio > 0 else p.verify_budget), p.verify_budget
    if p.verify_candidates == 0:
        return 0, 0
    screen = p.verify_screen_seeds or p.verify_seeds
    baselines = 2 * p.verify_seeds
    best = baselines + p.verify_candidates * screen
    worst = baselines + (p.verify_candidates + p.verify_rounds - 1) * p.verify_seeds + 3 * p.verify_extra_rounds * p.verify_extra_seeds
    return best, worst


VERIFY_NOTES = {
    "rounds": ("Dirichlet pool + drop-one", "best: first round on the screening seeds; worst: every round and sequential-test seed"),
    "acquisition": ("draws around natural + Dirichlet pool + drop-one (+ the ensemble's K expert passes)", "pipeline.verify_budget runs chosen one at a time by expected improvement"),
}


def verify_pool_evaluations(config: Config) -> float:
    """Merged evaluations of the verification pool (the acquisition adds its draws around natural and
    the ensemble's K expert passes over the suite, counted as K evaluations)."""
    p, k = config.pipeline, len(config.data.domains)
    rounds_pool = p.verify_pool + k
    return rounds_pool + p.verify_pool + k if p.verify_strategy == "acquisition" else rounds_pool


def reference_runs(config: Config) -> int:
    """Training runs of `mergemix validate` (optional): references (+ noise ceiling) and baselines."""
    v, k = config.validate, len(config.data.domains)
    refs = (v.n_dirichlet + k + 1) * (2 if v.noise_ceiling else 1)
    return refs + (3 if v.baselines else 0)


def job_plan(
    config: Config,
    accelerator: str,
    mfu: float = 0.4,
    mfu_measured: bool = False,
    target_tokens: float = 0.0,
    compiled_bytes: dict[str, float] | None = None,
    expert_dirs_given: bool = False,
) -> dict:
    """The plan as a dict (rows: `StageCost`s as dicts; totals best/worst; the target run's cost).

    `compiled_bytes` {"train": bytes, "eval": bytes} from the compiled plan replaces the analytic
    memory of those programs. `target_tokens` 0 = train.steps x batch x seq_len of this config."""
    spec, chips = parse_accelerator_type(accelerator)
    is_cpu = spec.name == "cpu"
    rate = spec.peak_flops * (1.0 if is_cpu else mfu) * chips  # FLOP/s of the whole slice
    t, p, m = config.train, config.pipeline, config.model
    tokens_per_step = t.batch_size * t.seq_len
    per_token = flops_per_token(m, t.seq_len)
    n_params = param_counts(m)["matmul"]
    k = len(config.data.domains)
    eval_flops = 2.0 * n_params * suite_tokens(config) + 2.0 * k * param_counts(m)["total"]
    memory = _memory(config, accelerator, spec, compiled_bytes or {})

    def train_row(stage: str, best: float, worst: float, steps: int, note: str = "") -> StageCost:
        tokens = steps * tokens_per_step
        return StageCost(stage, "train", best, worst, worst * tokens, best * tokens * per_token, worst * tokens * per_token, *memory["train"], note=note)

    def eval_row(stage: str, evaluations: float, note: str = "") -> StageCost:
        return StageCost(stage, "eval", evaluations, evaluations, evaluations * suite_tokens(config), evaluations * eval_flops, evaluations * eval_flops, *memory["eval"], note=note)

    base_runs = 0 if p.base_dir else 1
    expert_runs = 0 if expert_dirs_given else k
    verify_best, verify_worst = verification_runs(config)
    searches = search_evaluations(config)
    rows = [
        train_row("base", base_runs, base_runs, p.base_steps, "reused (pipeline.base_dir)" if p.base_dir else ""),
        train_row("experts", expert_runs, expert_runs, p.expert_steps, "reused (pipeline.expert_dirs)" if expert_dirs_given else f"{k} domains"),
        eval_row("probe", probe_evaluations(config), "vertices, centre, Dirichlet, heatmap faces"),
        eval_row("search", sum(searches.values()), ", ".join(f"{name} <= {n:.0f}" for name, n in searches.items())),
        eval_row("verify pool", verify_pool_evaluations(config) if verify_worst else 0, VERIFY_NOTES[p.verify_strategy][0]),
        train_row("verification", verify_best, verify_worst, config.validate.reference_steps or p.expert_steps, VERIFY_NOTES[p.verify_strategy][1]),
    ]
    optional = train_row("validate references (optional)", reference_runs(config), reference_runs(config), config.validate.reference_steps or p.expert_steps, "mergemix validate")
    for row in [*rows, optional]:
        row.chip_hours_best = row.flops_best / rate * chips / 3600
        row.chip_hours_worst = row.flops_worst / rate * chips / 3600
    target = target_tokens or t.steps * tokens_per_step
    target_flops = target * per_token
    total_best = sum(r.flops_best for r in rows)
    total_worst = sum(r.flops_worst for r in rows)
    return {
        "accelerator": accelerator,
        "chips": chips,
        "accelerator_spec": asdict(spec),
        "rate": {"mfu": None if is_cpu else mfu, "source": "measured" if (mfu_measured or is_cpu) else "assumed", "flops_per_second_per_chip": rate / chips},
        "params": param_counts(m),
        "rows": [asdict(r) for r in rows],
        "optional": [asdict(optional)],
        "total": {
            "flops_best": total_best,
            "flops_worst": total_worst,
            "chip_hours_best": sum(r.chip_hours_best for r in rows),
            "chip_hours_worst": sum(r.chip_hours_worst for r in rows),
            "wall_hours_worst": total_worst / rate / 3600,
            "fits": all(r.fits for r in rows if r.runs_worst),
        },
        "target": {
            "tokens": target,
            "flops": target_flops,
            "chip_hours": target_flops / rate * chips / 3600,
            "job_over_target_best": total_best / target_flops,
            "job_over_target_worst": total_worst / target_flops,
        },
    }


def _memory(config: Config, accelerator: str, spec: Accelerator, compiled: dict[str, float]) -> dict[str, tuple[float, str, bool]]:
    """(GiB per chip, source, fits) of the train step and of an evaluation chunk."""
    out = {}
    for program in ("train", "eval"):
        if program in compiled:
            used, source = compiled[program], "compiled"
        elif program == "train":
            used, source = estimate(config, accelerator)["memory_per_device_gib"]["total"] * GIB, "analytic"
        else:
            used, source = eval_memory_bytes(config, accelerator), "analytic"
        out[program] = (used / GIB, source, used < 0.9 * spec.hbm_bytes)
    return out


def _count(n: float) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _runs(row: dict) -> str:
    best, worst = row["runs_best"], row["runs_worst"]
    return f"{best:.0f}" if best == worst else f"{best:.0f}-{worst:.0f}"


def _range(best: float, worst: float, fmt: str) -> str:
    low, high = format(best, fmt), format(worst, fmt)
    return low if low == high else f"{low}-{high}"


def format_plan(plan: dict, title: str = "") -> str:
    """The plan as a markdown table plus its totals, the rate's provenance and the target comparison."""
    rate, total, target = plan["rate"], plan["total"], plan["target"]
    unit = "CPU-hours" if plan["accelerator_spec"]["name"] == "cpu" else "chip-hours"
    how = f"MFU {rate['mfu']} ({rate['source']})" if rate["mfu"] is not None else f"{rate['flops_per_second_per_chip']:.2e} FLOP per CPU-second (measured)"
    lines = [
        f"{title or 'mergemix run'} on {plan['accelerator']} ({plan['chips']} chip{'s' if plan['chips'] != 1 else ''}; {_count(plan['params']['total'])} parameters; {how})",
        "",
        f"| stage | runs / evaluations | tokens | FLOPs | memory per chip GiB (source) | fits | {unit} | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in [*plan["rows"], *plan["optional"]]:
        lines.append(
            f"| {row['stage']} | {_runs(row)} | {row['tokens']:.3g} | {_range(row['flops_best'], row['flops_worst'], '.3g')} "
            f"| {row['memory_gib']:.2f} ({row['memory_source']}) | {'yes' if row['fits'] else 'NO'} "
            f"| {_range(row['chip_hours_best'], row['chip_hours_worst'], '.3g')} | {row['note']} |"
        )
    lines += [
        "",
        f"whole job (without the optional row): {_range(total['flops_best'], total['flops_worst'], '.3g')} FLOPs, "
        f"{_range(total['chip_hours_best'], total['chip_hours_worst'], '.3g')} {unit}"
        + (f", {total['wall_hours_worst']:.3g} h on the {plan['chips']} chips at worst" if unit == "chip-hours" else ""),
        f"target training run: {target['tokens']:.3g} tokens, {target['flops']:.3g} FLOPs, {target['chip_hours']:.3g} {unit}; "
        f"the job costs {_range(target['job_over_target_best'], target['job_over_target_worst'], '.2f')} x the target run",
        f"fits: {'yes' if total['fits'] else 'NO'} (memory within 90% of {plan['accelerator_spec']['hbm_bytes'] / GIB:.0f} GiB per chip for every stage that runs)",
    ]
    return "\n".join(lines)


def write_plan(run_dir, plan: dict, title: str = "") -> None:
    """plan.json and plan.md into a run folder (atomically; multi-host: process 0 writes); an
    unchanged plan is left as it is, so a resumed run rewrites nothing."""
    from pathlib import Path

    from mergemix_jax.parallel.multihost import write_once
    from mergemix_jax.reliability.atomic import atomic_write_text
    from mergemix_jax.runkit.run_dir import write_json_atomic

    text, markdown = format_plan(plan, title) + "\n", Path(run_dir) / "plan.md"
    if markdown.is_file() and markdown.read_text() == text and (Path(run_dir) / "plan.json").is_file():
        return
    write_json_atomic(Path(run_dir) / "plan.json", plan)
    write_once(lambda: atomic_write_text(markdown, text), "write plan.md")


def default_accelerator() -> str:
    """This machine's accelerator name: the Cloud TPU VM's type (TPU_ACCELERATOR_TYPE) or cpu."""
    return os.environ.get("TPU_ACCELERATOR_TYPE", "") or "cpu"


def record_plan(config: Config, run_dir, title: str = "") -> dict | None:
    """`write_plan` of this machine's plan (default accelerator, assumed MFU) into a run folder; a
    config the estimate cannot size (e.g. a batch the pod's mesh does not divide) logs a warning."""
    import logging

    from mergemix_jax.config import ConfigError

    try:
        plan = job_plan(config, default_accelerator(), expert_dirs_given=bool(config.pipeline.expert_dirs))
    except ConfigError as err:
        logging.getLogger(__name__).warning("no cost plan for this run: %s", err)
        return None
    write_plan(run_dir, plan, title)
    return plan
