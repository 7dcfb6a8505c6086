"""`run_validation`: does the merged proxy rank mixtures like real mixture training?

Steps (each resumable): finish the pipeline up to the chosen mixture; sample mixtures (vertices,
centre, Dirichlet draws); train a reference on each from the base (same steps as one expert), and
again with another data seed (the noise ceiling); train the searched mixture and the natural
proportions too (uniform = the centre); score proxies and references on the same suite; compute
rank statistics, the two non-merging baselines, regret, ranks and compute. Outputs go to
<run>/validate-<hash8 of the validate section>/validation.json and the report is re-rendered.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.pipeline import mixtures
from mergemix_jax.pipeline.problem import utility_of
from mergemix_jax.pipeline.run_dir import config_hash, log_stage, write_json_atomic
from mergemix_jax.pipeline.stages import Engine, natural_prior, run_pipeline
from mergemix_jax.validate import baselines, stats
from mergemix_jax.validate.references import make_model_scorer, train_and_score

log = logging.getLogger(__name__)


def validation_dir(config: Config, run_dir: Path) -> Path:
    """<run>/validate-<hash8 of the mixture sample and the reference steps>; the noise-ceiling and
    baseline switches only add models, so turning them on later reuses the references."""
    v = config.validate
    key = {"n_dirichlet": v.n_dirichlet, "alpha": v.dirichlet_alpha, "seed": v.seed, "steps": v.reference_steps or config.pipeline.expert_steps}
    return run_dir / f"validate-{config_hash(key)}"


def _metrics_table(records: list[dict], names: list[str]) -> dict[str, np.ndarray]:
    return {m: np.asarray([r["metrics"][m] for r in records]) for m in names}


def suite_key(config: Config) -> str:
    """Hash of what the evaluation suite scores: the eval section and the domains."""
    return config_hash({"eval": config.eval.__dict__, "domains": [d.__dict__ for d in config.data.domains], "split": [config.data.heldout_fraction, config.data.split_seed]})


def run_validation(config: Config, config_path: str | os.PathLike | None = None, command: str = "", run_dir: Path | None = None) -> dict:
    """Run (or resume) the validation; returns the validation.json content (see module doc).

    `run_dir`: a finished pipeline folder to validate instead of the config's own (e.g. to re-score
    its references and proxies on a larger evaluation suite: eval.* overrides change the config hash).
    """
    from mergemix_jax.export import read_mixture

    if run_dir is None:
        run_dir = run_pipeline(config, config_path, command=command, stop_after="verify")
    vdir = validation_dir(config, run_dir)
    vdir.mkdir(parents=True, exist_ok=True)
    engine = Engine(config, run_dir)
    domains, k = list(engine.domains), len(engine.domains)
    v = config.validate
    weights, kinds = mixtures.spread_mixtures(k, v.n_dirichlet, v.dirichlet_alpha, v.seed)
    searched = np.asarray([read_mixture(run_dir / "mixture.json").weights[d] for d in domains])
    natural = natural_prior(config)
    extra = {"searched": searched, "natural": natural} if v.baselines else {}
    score = make_model_scorer(config, engine.suite)
    key = suite_key(config)
    seed0 = config.train.data_seed
    start = time.perf_counter()
    refs = [train_and_score(config, run_dir, vdir / "refs" / f"m{i:02d}", w, seed0, score, key) for i, w in enumerate(weights)]
    extra_refs = {name: train_and_score(config, run_dir, vdir / "baselines" / name, w, seed0, score, key) for name, w in extra.items()}
    noise = [train_and_score(config, run_dir, vdir / "refs_seed2" / f"m{i:02d}", w, seed0 + 1, score, key) for i, w in enumerate(weights)] if v.noise_ceiling else []
    log_stage(run_dir, "validate:references", "done", time.perf_counter() - start)

    all_weights = np.concatenate([weights, np.stack(list(extra.values()))]) if extra else weights
    t0 = time.perf_counter()
    proxy_all = engine.score_table(all_weights, vdir / f"proxy-{key}.csv")["metrics"]
    proxy_seconds = (time.perf_counter() - t0) / max(len(all_weights), 1)
    names = [m for m in engine.metrics if m in proxy_all]
    n = len(weights)
    proxy = {m: proxy_all[m][:n] for m in names}
    reference = _metrics_table(refs, names)
    ceiling = _metrics_table(noise, names) if noise else None
    vertex_rows = [kinds.index("vertex") + i for i in range(k)]
    expert_metrics = {m: proxy[m][vertex_rows] for m in names}  # one-hot merge = the expert itself
    interp = baselines.loss_interpolation(weights, expert_metrics)
    outspace = baselines.output_space(engine.model_cfg, engine.stack, engine.suite, weights)

    result = _compare(engine, domains, kinds, proxy, reference, ceiling, interp, outspace)
    result.update(
        domains=domains,
        kinds=kinds,
        mixtures=weights.tolist(),
        proxy={m: proxy[m].tolist() for m in names},
        reference={m: reference[m].tolist() for m in names},
        reference_seed2=None if ceiling is None else {m: ceiling[m].tolist() for m in names},
        utility_weights=engine.weights,
    )
    result["summary"].update(_baseline_summary(engine, names, reference, extra, extra_refs, proxy_all, n, kinds))
    result["summary"].update(_compute_summary(run_dir, refs, noise, extra_refs, proxy_seconds, n))
    result["suite"] = {"key": key, "heldout_sequences": config.eval.heldout_sequences, "seq_len": config.eval.seq_len}
    write_json_atomic(vdir / f"validation-{key}.json", result)
    write_json_atomic(vdir / "validation.json", result)  # the latest, which the report shows
    (vdir / f"table-{key}.md").write_text(stats.format_table(result["table"]) + "\n")
    from mergemix_jax.report import render_report

    result["report"] = str(render_report(run_dir))
    result["dir"] = str(vdir)
    return result


def _compare(engine: Engine, domains, kinds, proxy, reference, ceiling, interp, outspace) -> dict:
    def util(table):
        return None if table is None else utility_of(engine.weights, table) if all(m in table for m in engine.weights) else None

    def norm(table):
        return None if table is None else stats.normalised_utility(table, domains)

    masks = stats.subsets(kinds, util(reference))
    rows = stats.rank_rows("utility", util(proxy), util(reference), masks, util(ceiling), util(interp), util(outspace))
    rows += stats.rank_rows("utility (normalised)", norm(proxy), norm(reference), masks, norm(ceiling), norm(interp), norm(outspace))
    for m in proxy:
        rows += stats.rank_rows(m, proxy[m], reference[m], masks, None if ceiling is None else ceiling[m], interp.get(m), outspace.get(m))
    return {"table": rows, "summary": {}, "scatter_metrics": ["loss/mean", *[f"loss/{d}" for d in domains]]}


def _baseline_summary(engine: Engine, names, reference, extra, extra_refs, proxy_all, n, kinds) -> dict:
    ref_util = utility_of(engine.weights, reference)
    centre = kinds.index("centre")
    out = {
        "best reference utility": float(ref_util.max()),
        "uniform (centre) reference utility": float(ref_util[centre]),
        "uniform rank among references": f"{stats.rank_of(ref_util[centre], np.delete(ref_util, centre))} of {n}",
    }
    for i, (name, record) in enumerate(extra_refs.items()):
        u = float(utility_of(engine.weights, {m: np.asarray([record["metrics"][m]]) for m in engine.weights})[0])
        rank = stats.rank_of(u, ref_util)
        out[f"{name} reference utility"] = u
        out[f"{name} rank among references"] = f"{rank} of {n + 1}"
        out[f"{name} percentile (share of references it beats)"] = float(np.mean(ref_util < u))
        out[f"{name} proxy utility"] = float(utility_of(engine.weights, {m: proxy_all[m][n + i : n + i + 1] for m in engine.weights})[0])
        if name == "searched":
            out["regret of the searched mixture (best reference - searched)"] = float(ref_util.max() - u)
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
        "noise-ceiling references": len(noise),
        "baseline references": len(extra_refs),
    }
