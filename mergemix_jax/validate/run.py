"""`run_validation`: does the merged proxy rank mixtures like real mixture training?

Steps (each resumable): finish the pipeline up to the verified recommendation; sample mixtures
(vertices, centre, Dirichlet draws); train a reference on each from the base (same steps as one
expert), and again with another data seed (the replicate: reliability and noise); train the
recommended mixture, the raw proxy's own pick and the natural proportions too (uniform = the
centre); score proxies (raw, and calibrated when the run has a calibration) and references on an
evaluation split disjoint from the one the search optimised (`validate.disjoint_heldout`); compute
rank statistics with bootstrap intervals against the replicate mean, the bound of a perfect
predictor, the two non-merging baselines, the mixtures indistinguishable from the best, regret with
an interval, ranks and compute. Outputs go to <run>/validate-<hash8>/validation.json (see stats.py
for the definitions) and the report is re-rendered.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import yaml

from mergemix_jax.config import Config
from mergemix_jax.merge.weights import weights_hash
from mergemix_jax.pipeline.stages import Engine, natural_prior, run_pipeline, with_overrides
from mergemix_jax.runkit import mixtures
from mergemix_jax.runkit.references import TIME_FILE, make_model_scorer, suite_key, train_and_score
from mergemix_jax.runkit.run_dir import config_hash, log_stage, write_json_atomic
from mergemix_jax.validate import baselines, stats

log = logging.getLogger(__name__)
BASELINE_NAMES = ("recommended", "proxy pick", "uniform", "natural")


def validation_dir(config: Config, run_dir: Path) -> Path:
    """<run>/validate-<hash8 of the mixture sample and the reference steps>; the noise-ceiling and
    baseline switches only add models, so turning them on later reuses the references."""
    v = config.validate
    key = {"n_dirichlet": v.n_dirichlet, "alpha": v.dirichlet_alpha, "seed": v.seed, "steps": v.reference_steps or config.pipeline.expert_steps}
    return run_dir / f"validate-{config_hash(key, 8)}"


def _metrics_table(records: list[dict], names: list[str]) -> dict[str, np.ndarray]:
    return {m: np.asarray([r["metrics"][m] for r in records]) for m in names}


def scoring_config(config: Config, run_dir: Path) -> Config:
    """The config whose evaluation suite validation scores on: with `validate.disjoint_heldout`, held-out
    sequences and task items the run's search never saw (eval.heldout_offset = the search suite's
    sequences, eval.task_offset = its eval.task_max_items, when the search scored a subset of every
    task: a task the search scored whole has no unseen items, so its items stay, with a warning);
    else the same suite."""
    if not config.validate.disjoint_heldout:
        return config
    saved = run_dir / "config.yaml"
    searched = (yaml.safe_load(saved.read_text()) or {}).get("eval", {}) if saved.is_file() else {}
    n_search = int(searched.get("heldout_sequences", config.eval.heldout_sequences))
    if int(searched.get("heldout_offset", 0)) or int(searched.get("task_offset", 0)):
        log.warning("the run's search already scored an offset held-out split; validation's split is drawn apart from the default one and may overlap it")
    overrides: dict = {"heldout_offset": n_search}
    n_items = int(searched.get("task_max_items", config.eval.task_max_items))
    if config.eval.task_dir and n_items and _tasks_have_more_than(config, n_items):
        overrides["task_offset"] = n_items
    elif config.eval.task_dir:
        log.warning("validation scores the same task items the search optimised (a task has no items beyond eval.task_max_items = %d): its benchmark scores are not out of sample", n_items)
    return with_overrides(config, eval=overrides)


def _tasks_have_more_than(config: Config, n_items: int) -> bool:
    from mergemix_jax.data import load_task_dir

    tasks = load_task_dir(config.eval.task_dir)
    return all(len(items) > n_items for name, items in tasks.items() if not config.eval.tasks or name in config.eval.tasks)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def baseline_mixtures(config: Config, run_dir: Path, domains: list[str]) -> dict[str, np.ndarray]:
    """{"recommended", "proxy pick", "natural": [K]}: mixture.json's top-level weights, the raw proxy's
    own pick (verification.proxy_pick, or the recommendation itself when unverified), natural proportions."""
    mixture = _read_json(run_dir / "mixture.json")
    if not mixture.get("weights"):
        raise FileNotFoundError(f"{run_dir / 'mixture.json'} is missing or has no weights; finish `mergemix run` first")
    out = {"recommended": np.asarray([mixture["weights"][d] for d in domains], np.float64)}
    verification = mixture.get("verification") or {}
    picked = [c for c in verification.get("candidates", []) if c.get("name") == verification.get("proxy_pick")]
    out["proxy pick"] = np.asarray([picked[0]["weights"][d] for d in domains], np.float64) if picked else out["recommended"]
    out["natural"] = np.asarray(natural_prior(config), np.float64)
    return out


def _verified_runs(config: Config, run_dir: Path, weights_K: np.ndarray) -> list[tuple[Path, int]]:
    """(folder, data seed) of the verification stage's finished runs of this mixture, when they used
    the same number of steps as these references (the same recipe); else none."""
    from mergemix_jax.verify.stage import VERIFICATION_FILE, run_key

    steps = _read_json(run_dir / VERIFICATION_FILE).get("steps")
    if steps != (config.validate.reference_steps or config.pipeline.expert_steps):
        return []
    found = sorted((run_dir / "verify" / "runs").glob(f"{run_key(weights_K)}-s*"))
    return [(f, int(f.name.rsplit("-s", 1)[1])) for f in found if f.name.rsplit("-s", 1)[1].isdigit() and (f / TIME_FILE).is_file()]


def _train_baselines(config, run_dir, vdir, extra, weights, refs, seed0, score, key) -> dict[str, dict]:
    """Each baseline mixture's real metrics, averaged over its runs: a reference with the same weights
    is reused, else the verification stage's runs of it (every seed, re-scored on this suite), else
    one new run in baselines/<hash8 of its weights>. Returns {name: {"weights", "metrics", "runs"}}."""
    out = {}
    for name, w in extra.items():
        same = [i for i, row in enumerate(weights) if np.allclose(row, w, atol=1e-9)]
        index = same[0] if same else None
        if same:
            records = [refs[index]]
        else:
            verified = _verified_runs(config, run_dir, w)
            records = [train_and_score(config, run_dir, folder, w, seed, score, key) for folder, seed in verified] or [
                train_and_score(config, run_dir, vdir / "baselines" / weights_hash(w)[:8], w, seed0, score, key)
            ]
        metrics = {m: float(np.mean([r["metrics"][m] for r in records])) for m in records[0]["metrics"]}
        out[name] = {"weights": np.asarray(w).tolist(), "metrics": metrics, "runs": len(records), "reference_index": index}
    return out


def run_validation(config: Config, config_path: str | os.PathLike | None = None, command: str = "", run_dir: Path | None = None) -> dict:
    """Run (or resume) the validation; returns the validation.json content (see module doc).

    `run_dir`: a finished pipeline folder to validate instead of the config's own (e.g. to re-score
    its references and proxies on a larger evaluation suite: eval.* overrides change the config hash).
    """
    if run_dir is None:
        run_dir = run_pipeline(config, config_path, command=command, stop_after="verify")
    vdir = validation_dir(config, run_dir)
    vdir.mkdir(parents=True, exist_ok=True)
    scoring = scoring_config(config, run_dir)
    engine = Engine(scoring, run_dir)
    domains, k = list(engine.domains), len(engine.domains)
    v = config.validate
    weights, kinds = mixtures.spread_mixtures(k, v.n_dirichlet, v.dirichlet_alpha, v.seed)
    extra = baseline_mixtures(config, run_dir, domains) if v.baselines else {}
    score = make_model_scorer(config, engine.suite)
    key = suite_key(scoring)
    seed0 = config.train.data_seed
    start = time.perf_counter()
    refs = [train_and_score(config, run_dir, vdir / "refs" / f"m{i:02d}", w, seed0, score, key) for i, w in enumerate(weights)]
    extra_refs = _train_baselines(config, run_dir, vdir, extra, weights, refs, seed0, score, key)
    noise = [train_and_score(config, run_dir, vdir / "refs_seed2" / f"m{i:02d}", w, seed0 + 1, score, key) for i, w in enumerate(weights)] if v.noise_ceiling else []
    log_stage(run_dir, "validate:references", "done", time.perf_counter() - start)

    all_weights = np.concatenate([weights, np.stack(list(extra.values()))]) if extra else weights
    t0 = time.perf_counter()
    proxy_all = engine.score_table(all_weights, vdir / f"proxy-{key}-{weights_hash(all_weights.ravel())[:8]}.csv")["metrics"]
    proxy_seconds = (time.perf_counter() - t0) / max(len(all_weights), 1)
    names = [m for m in engine.metrics if m in proxy_all]
    n = len(weights)
    proxy = {m: proxy_all[m][:n] for m in names}
    replicates = [_metrics_table(refs, names)] + ([_metrics_table(noise, names)] if noise else [])
    calibration = _calibration(run_dir)
    calibrated = None if calibration is None else calibration.apply(proxy)
    vertex_rows = [kinds.index("vertex") + i for i in range(k)]
    expert_metrics = {m: proxy[m][vertex_rows] for m in names}  # one-hot merge = the expert itself
    interp = baselines.loss_interpolation(weights, expert_metrics)
    outspace = baselines.output_space(engine.model_cfg, engine.stack, engine.suite, weights)

    result = {"table": _compare(engine, domains, kinds, proxy, replicates, calibrated, interp, outspace), "summary": {}}
    result["scatter_metrics"] = ["loss/mean", *[f"loss/{d}" for d in domains]]
    result.update(
        domains=domains,
        kinds=kinds,
        mixtures=weights.tolist(),
        proxy={m: proxy[m].tolist() for m in names},
        calibrated=None if calibrated is None else {m: np.asarray(calibrated[m]).tolist() for m in names},
        reference={m: replicates[0][m].tolist() for m in names},
        reference_seed2=None if len(replicates) < 2 else {m: replicates[1][m].tolist() for m in names},
        utility_weights=engine.weights,
    )
    calibrated_all = None if calibration is None else calibration.apply(proxy_all)
    outcome = compare_baselines(engine.utility, domains, kinds, weights, replicates, extra, extra_refs, proxy_all, calibrated_all)
    result.update(outcome)
    result["utility"] = {**engine.utility.to_json(), "is_loss": engine.utility.is_loss}
    result["rankings"] = rankings(result["table"], engine.utility)
    result["summary"].update(_rankings_summary(result["rankings"]))
    result["summary"].update(_baseline_summary(outcome, engine.utility.is_loss))
    result["summary"].update(_compute_summary(run_dir, refs, noise, extra_refs, proxy_seconds, n))
    result["suite"] = {"key": key, "heldout_sequences": scoring.eval.heldout_sequences, "heldout_offset": scoring.eval.heldout_offset, "task_offset": scoring.eval.task_offset, "seq_len": scoring.eval.seq_len}
    write_json_atomic(vdir / f"validation-{key}.json", result)
    write_json_atomic(vdir / "validation.json", result)  # the latest, which the report shows
    (vdir / f"table-{key}.md").write_text(stats.format_table(result["table"]) + "\n")
    from mergemix_jax.report import render_report

    result["report"] = str(render_report(run_dir))
    result["dir"] = str(vdir)
    return result


def _calibration(run_dir: Path):
    """The run's proxy calibration (fitted by the verification stage), or None."""
    from mergemix_jax.calibrate import load_calibration

    try:
        return load_calibration(run_dir)
    except ValueError as err:
        log.warning("calibrated proxy left out: %s", err)
        return None


def _compare(engine: Engine, domains, kinds, proxy, replicates, calibrated, interp, outspace) -> list[dict]:
    """Rank rows of the utility, the normalised utility and every metric (see stats.rank_rows)."""

    def util(table):  # the run's utility: the searches' normalisation, fitted once on the probe table
        return None if table is None or not all(m in table for m in engine.weights) else engine.utility(table)

    def norm(table):
        return None if table is None else stats.normalised_utility(table, domains)

    target = np.mean([util(r) for r in replicates], axis=0)
    masks = stats.subsets(kinds, target)

    def rows(metric, fn, pick=None):
        others = {"calibrated": fn(calibrated) if pick is None or pick.startswith("loss/") else None, "loss_interp": fn(interp), "output_space": fn(outspace)}
        return stats.rank_rows(metric, fn(proxy), [fn(r) for r in replicates], masks, others)

    out = rows("utility", util) + rows("utility (normalised)", norm)
    for m in proxy:
        out += rows(m, lambda t, m=m: None if t is None or m not in t else np.asarray(t[m]), pick=m)
    return out


def compare_baselines(utility, domains, kinds, weights_NxK, replicates, extra, extra_refs, proxy_all, calibrated_all) -> dict:
    """The references' best and the set indistinguishable from it, and per baseline (recommended, proxy
    pick, uniform = the centre, natural): real and proxy loss (= -utility), rank, regret with a 90% interval.
    `utility`: the run's RunUtility (or a {metric: weight} dict, the plain weighted sum).
    `proxy_all`/`calibrated_all` hold the N references' rows followed by one row per `extra` mixture."""
    from mergemix_jax.runkit.utility import RunUtility

    utility = utility if isinstance(utility, RunUtility) else RunUtility(dict(utility))
    n = len(kinds)
    reps = [utility(r) for r in replicates]
    ref_util, m = np.mean(reps, axis=0), len(reps)
    noise = stats.replicate_noise(reps[0], reps[1]) if m == 2 else float("nan")
    names = [f"m{i:02d} ({kind})" for i, kind in enumerate(kinds)]
    best, centre = int(np.argmax(ref_util)), kinds.index("centre")
    entries = {"uniform": (weights_NxK[centre], float(ref_util[centre]), m, centre, {}, centre)}
    for i, (name, record) in enumerate(extra_refs.items()):
        u = utility.of_record(record["metrics"])
        entries[name] = (extra[name], u, record["runs"], n + i, {k: float(record["metrics"][k]) for k in replicates[0]}, record["reference_index"])

    def loss_at(table, row):
        return None if table is None else -float(utility({k: np.asarray(table[k])[row : row + 1] for k in utility.weights})[0])

    out = {}
    for name in [b for b in BASELINE_NAMES if b in entries]:
        w, u, runs, row, real_metrics, index = entries[name]
        if index is not None:  # the baseline is a reference mixture: its real values are that reference's
            u, runs = float(ref_util[index]), m
            real_metrics = {k: float(np.mean([r[k][index] for r in replicates])) for k in replicates[0]}
        regret, lo, hi = stats.regret_interval(ref_util, u, noise, m, runs, index)
        margin = stats.Z_ONE_SIDED * noise * np.sqrt(1 / m + 1 / runs) if np.isfinite(noise) else 0.0
        population = ref_util if index is None else np.delete(ref_util, index)
        out[name] = {
            "weights": dict(zip(domains, np.asarray(w, np.float64).tolist(), strict=True)),
            "real_loss": -u,
            "real_runs": runs,
            "proxy_loss": loss_at(proxy_all, row),
            "calibrated_proxy_loss": loss_at(calibrated_all, row),
            "rank": stats.rank_of(u, population),
            "of": len(population) + 1,
            "regret": regret,
            "regret_lo": lo,
            "regret_hi": hi,
            "within_noise_of_best": bool(ref_util[best] - u <= margin),
            "real_metrics": real_metrics,
            "proxy_metrics": {k: float(np.asarray(proxy_all[k])[row]) for k in real_metrics if k in proxy_all},
        }
    return {
        "noise": None if not np.isfinite(noise) else noise,
        "best": {"name": names[best], "weights": dict(zip(domains, np.asarray(weights_NxK[best]).tolist(), strict=True)), "real_loss": -float(ref_util[best])},
        "indistinguishable": [names[i] for i in np.flatnonzero(stats.indistinguishable(ref_util, noise, m))],
        "reference_names": names,
        "real_loss": (-ref_util).tolist(),
        "baselines": out,
    }


def _baseline_summary(outcome: dict, is_loss: bool = True) -> dict:
    """Flat "quantity: value" lines for the console and the report (losses: lower is better; with a
    benchmark utility the "loss" is minus the utility, so lower is better too)."""
    loss = "real loss" if is_loss else "real -utility"
    out = {
        f"best reference ({loss}, lower is better)": f"{outcome['best']['name']}: {outcome['best']['real_loss']:.4f}",
        f"seed noise of one run ({'loss' if is_loss else 'utility'} sd, from the replicates)": outcome["noise"] if outcome["noise"] is not None else "– (no replicate)",
        "references indistinguishable from the best": ", ".join(outcome["indistinguishable"]),
    }
    for name, b in outcome["baselines"].items():
        interval = f" [{b['regret_lo']:.4f}, {b['regret_hi']:.4f}]" if np.isfinite(b["regret_lo"]) else ""
        out[f"{name}: {loss} / rank / regret [90%]"] = f"{b['real_loss']:.4f} / {b['rank']} of {b['of']} / {b['regret']:.4f}{interval}"
    return out


def rankings(table: list[dict], utility) -> dict:
    """The proxy's ranking quality by the run's utility and by held-out loss, side by side:
    {"utility": {subset: row}, "held-out loss": {subset: row}} (rows of `table`, Spearman with 90% intervals)."""
    out = {"utility": {r["subset"]: r for r in table if r["metric"] == "utility"}}
    out["held-out loss"] = {r["subset"]: r for r in table if r["metric"] == "loss/mean"}
    out["utility_description"] = utility.describe()
    return out


def _rankings_summary(ranks: dict) -> dict:
    """Console lines: proxy Spearman (all / interior, 90% intervals) for the utility and for held-out loss."""
    out = {}
    for name, label in (("utility", f"ranking by the utility ({ranks['utility_description']})"), ("held-out loss", "ranking by held-out loss (loss/mean)")):
        rows = ranks.get(name) or {}
        if rows:
            parts = [f"{subset} {stats.format_with_interval(rows[subset], 'spearman')}" for subset in ("all", "interior") if subset in rows]
            out[f"{label}: proxy Spearman [90%]"] = ", ".join(parts)
    return out


def _compute_summary(run_dir: Path, refs, noise, extra_refs, proxy_seconds: float, n: int) -> dict:
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").is_file() else {}
    expert_steps = sum(t["steps"] for name, t in timings.items() if name.startswith("expert:"))
    expert_seconds = sum(t["seconds"] for name, t in timings.items() if name.startswith("expert:"))
    ref_steps = sum(r["steps"] for r in refs)
    ref_seconds = sum(r["train_seconds"] for r in refs)
    return {
        "proxy train steps / reference train steps": expert_steps / max(ref_steps, 1),
        "proxy seconds / reference seconds (experts + merge-eval vs reference training)": (expert_seconds + proxy_seconds * n) / max(ref_seconds, 1e-9),
        "reference mixtures": n,
        "replicate references (second data seed)": len(noise),
        "baseline mixtures (distinct)": len({weights_hash(r["weights"]) for r in extra_refs.values()}),
    }
