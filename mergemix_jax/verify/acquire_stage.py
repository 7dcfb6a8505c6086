"""The verification stage with `pipeline.verify_strategy: acquisition`: a predictor fitted on every real
run chooses each next run (verify.acquisition), for `pipeline.verify_budget` runs after the experts.

The pool: uniform and natural proportions, `pipeline.verify_pool` draws from a Dirichlet centred on the
natural proportions (concentration K x natural: the draws a careful random search would train), every
search method's pick, the probe table, a Dirichlet(1) pool and natural-without-one-domain, each scored by
the proxies of `pipeline.verify_features` (the predictor's features: the merged proxy; the merged proxy
calibrated on the vertices and every run so far, refitted after each run; the output-space ensemble where
it defines the utility's metrics). Every run is one mixture on the first verification data seed, cached like the rounds
strategy's (verify/runs/<hash>-s<seed>), so a killed job resumes and a rerun trains nothing twice.

The block written to verify/verification.json has the rounds strategy's keys (candidates with real and
proxy utilities, chosen, noise, message, ...) plus `strategy`, `trajectory` (the recommendation after each
real run: what the budget benchmark reads), `predictor` (hyperparameters and how much it leans on each
proxy) and `fidelity` (how well each proxy, and the predictor out of sample, ranked the real runs).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mergemix_jax.verify.acquisition import Acquisition, acquire, proxy_fidelity, proxy_reliance
from mergemix_jax.verify.candidates import Candidate, pool_from_tables
from mergemix_jax.verify.stage import (
    Verified,
    baseline_candidates,
    candidate_pool,
    ensemble_utilities,
    proxy_utilities,
    refit_calibration,
    train_candidate,
    utility_unit,
    verification_seeds,
    vertex_metrics,
)

log = logging.getLogger(__name__)


def around_natural(natural_K: np.ndarray, n: int, seed: int) -> np.ndarray:
    """[n, K] draws from Dirichlet(K x natural): centred on the natural proportions, as spread as
    Dirichlet(1) when they are uniform (zero-weight domains stay at zero)."""
    natural = np.asarray(natural_K, np.float64)
    alpha = np.maximum(len(natural) * natural, 1e-3)
    return np.random.default_rng(seed).dirichlet(alpha, size=n)


def acquisition_pool(engine: Any) -> list[Candidate]:
    """uniform, natural, the draws around natural and the rounds strategy's pool (module doc), unique,
    named uniform / natural / a0, a1, ... and scored by the merged proxy."""
    from mergemix_jax.runkit.mixtures import natural_prior

    natural = natural_prior(engine.config)
    baselines = baseline_candidates(engine, natural, len(natural))
    draws = around_natural(natural, engine.config.pipeline.verify_pool, engine.config.pipeline.search_seed + 104729)
    scored = engine.score_table(draws, engine.run_dir / "eval" / "verify_around_natural.csv")
    tables = [(b.name, b.weights_K[None], {m: np.asarray([v]) for m, v in b.proxy_metrics.items()}) for b in baselines]
    tables.append(("around-natural", scored["weights"], scored["metrics"]))
    tables += [(c.sources[0], c.weights_K[None], {m: np.asarray([v]) for m, v in c.proxy_metrics.items()}) for c in candidate_pool(engine)]
    pool = pool_from_tables(tables)
    for i, c in enumerate(pool):
        c.name = next((b for b in ("uniform", "natural") if b in c.sources), f"a{i}")
    return pool


class ProxyFeatures:
    """The predictor's features of a pool, in `pipeline.verify_features` order: the merged proxy's utility,
    the merged proxy calibrated on every real run so far (the vertices and the job's runs:
    verify.stage.refit_calibration; recomputed after each run) and the output-space ensemble's (dropped,
    with a log line, where it does not define the utility's metrics)."""

    def __init__(self, engine: Any, pool: list[Candidate], names: list[str]):
        self.engine, self.pool = engine, pool
        self.columns: dict[str, np.ndarray] = {}
        if "merged" in names:
            self.columns["merged"] = proxy_utilities(engine, pool)
        if "ensemble" in names:
            ensemble = ensemble_utilities(engine, pool)
            if ensemble is None:
                log.info("the output-space ensemble does not define this utility's metrics: the predictor goes without it")
            else:
                self.columns["ensemble"] = ensemble
                for c, u in zip(pool, ensemble, strict=True):
                    c.proxy_metrics["ensemble_utility"] = float(u)
        self.vertices = vertex_metrics(engine) if "calibrated" in names else {}
        self.names = [n for n in names if n in self.columns or n == "calibrated"]
        if not self.names:  # only the ensemble was asked for, and it does not define this utility
            log.info("the predictor uses the merged proxy instead")
            self.columns["merged"], self.names = proxy_utilities(engine, pool), ["merged"]

    def after(self, verified: list[Verified]) -> np.ndarray:
        """[N, P] with the calibrated column refitted on the vertices and `verified`. A trained mixture's
        calibrated value comes from the calibration fitted without its own run (leave-one-out), so the
        predictor judges the calibrated proxy on predictions, not on the runs it was fitted to."""
        columns = dict(self.columns)
        if "calibrated" in self.names:
            calibration, _ = refit_calibration(self.engine, self.vertices, verified)
            column = proxy_utilities(self.engine, self.pool, calibration)
            index = {id(c): i for i, c in enumerate(self.pool)}
            for j, v in enumerate(verified):
                without, _ = refit_calibration(self.engine, self.vertices, verified[:j] + verified[j + 1 :])
                column[index[id(v.candidate)]] = proxy_utilities(self.engine, [v.candidate], without)[0]
            columns["calibrated"] = column
        return np.stack([columns[n] for n in self.names], axis=1)


def run_acquisition(engine: Any) -> dict:
    """Run (or resume) the acquisition; returns the verification block (module doc)."""
    from mergemix_jax.runkit.references import make_model_scorer

    cfg, p = engine.config, engine.config.pipeline
    score = make_model_scorer(cfg, engine.suite)
    pool = acquisition_pool(engine)
    proxies = ProxyFeatures(engine, pool, p.verify_features)
    weights = np.stack([c.weights_K for c in pool])
    trained: dict[int, Verified] = {}

    def train(i: int, seed: int) -> float:
        trained[i] = train_candidate(engine, pool[i], len(trained) + 1, score, seeds=[seed])
        return trained[i].real_utility[0]

    seed = verification_seeds(cfg)[0]
    refeature = (lambda runs: proxies.after([trained[i] for i in dict.fromkeys(r.index for r in runs)])) if "calibrated" in proxies.names else None
    opening = [i for i, c in enumerate(pool) if c.name in ("uniform", "natural")] if p.verify_baselines_first else []
    result = acquire(weights, proxies.after([]), train, p.verify_budget, seeds=[seed], min_distance=p.verify_min_distance, stop_ratio=p.verify_stop_ratio, refeature=refeature, first=opening)
    for run in result.runs:
        trained[run.index].predicted_utility = run.predicted
    return acquisition_block(engine, pool, proxies.names, trained, result)


def acquisition_block(engine: Any, pool: list[Candidate], feature_names: list[str], trained: dict[int, Verified], result: Acquisition) -> dict:
    """The verification block of an acquisition run (module doc). Each proxy's fidelity is judged on its
    value for each run before that run trained (out of sample for the calibrated proxy too)."""
    order = [r.index for r in result.runs]
    chosen = pool[result.chosen]
    unit = utility_unit(engine)
    features = result.features
    mean, sd = result.predictor.predict(np.stack([c.weights_K for c in pool]), features) if result.predictor else (features[:, 0], np.zeros(len(pool)))
    real = np.asarray([trained[i].real_utility[0] for i in order])
    before = np.asarray([r.features for r in result.runs]).reshape(len(order), len(feature_names))
    fidelity = {name: proxy_fidelity(before[:, j], real) for j, name in enumerate(feature_names)}
    fidelity["predictor (before each run)"] = proxy_fidelity(np.asarray([r.predicted for r in result.runs]), real)
    raw = proxy_utilities(engine, pool)
    proxy_pick = pool[int(np.argmax(raw))].name
    noise = None if result.predictor is None else result.predictor.hyper.noise * result.predictor.hyper.scale
    calibrated = before[:, feature_names.index("calibrated")] if "calibrated" in feature_names else [None] * len(order)
    entries = [_entry(engine, trained[i], float(raw[i]), cal, float(mean[i]), float(sd[i])) for i, cal in zip(order, calibrated, strict=True)]
    message = (
        f"Chosen by the predictor after {len(result.runs)} real run(s) ({result.stopped}): {chosen.name} has the best posterior "
        f"real utility among the trained mixtures, {mean[result.chosen]:.4f} ± {sd[result.chosen]:.4f} {unit}. "
        + proxy_reliance(fidelity, feature_names)
    )
    log.info("%s", message)
    coefficients = result.predictor.coefficients() if result.predictor else np.zeros(len(feature_names))
    return {
        "strategy": "acquisition",
        "candidates": entries,
        "chosen": chosen.name,
        "proxy_pick": proxy_pick if any(e["name"] == proxy_pick for e in entries) else None,
        "noise": noise,
        "noise_dof": 0,
        "margin": 0.0,
        "verdict": "acquisition",
        "message": message,
        "indistinguishable": [e["name"] for e in entries if e["name"] != chosen.name and mean[result.chosen] - e["posterior_mean"] <= sd[result.chosen]],
        "seeds": [r.seed for r in result.runs[:1]],
        "steps": engine.config.validate.reference_steps or engine.config.pipeline.expert_steps,
        "real_runs": len(result.runs),
        "real_steps_total": len(result.runs) * (engine.config.validate.reference_steps or engine.config.pipeline.expert_steps),
        "confidence": engine.config.pipeline.verify_confidence,
        "utility": engine.utility.describe(),
        "extra_seeds_used": False,
        "extra_rounds": 0,
        "screen_seeds": 1,
        "trajectory": [
            {"runs": s.runs, "chosen": pool[s.chosen].name, "weights": dict(zip(engine.domains, pool[s.chosen].weights_K.tolist(), strict=True)), "mean": s.mean, "sd": s.sd}
            for s in result.trajectory
        ],
        "predictor": {
            **({} if result.predictor is None else result.predictor.hyper.to_json()),
            "features": feature_names,
            "coefficients": dict(zip(feature_names, np.asarray(coefficients).tolist(), strict=True)),
        },
        "fidelity": fidelity,
        "stopped": result.stopped,
    }


def _entry(engine: Any, v: Verified, proxy_utility: float, calibrated_utility: float | None, posterior_mean: float, posterior_sd: float) -> dict:
    c = v.candidate
    return {
        "name": c.name,
        "sources": c.sources,
        "weights": dict(zip(engine.domains, c.weights_K.tolist(), strict=True)),
        "proxy_utility": proxy_utility,  # the raw merged proxy's utility
        "calibrated_utility": None if calibrated_utility is None else float(calibrated_utility),  # before this run trained
        "ensemble_utility": c.proxy_metrics.get("ensemble_utility"),
        "real_utility": v.real_utility,
        "real_mean": float(np.mean(v.real_utility)),
        "adjusted_mean": posterior_mean,
        "posterior_mean": posterior_mean,
        "posterior_sd": posterior_sd,
        "real_metrics": v.real_metrics,
        "proxy_metrics": {m: x for m, x in c.proxy_metrics.items() if m != "ensemble_utility"},
        "round": v.round,
        "seeds": len(v.real_utility),
        "predicted_utility": v.predicted_utility,
    }
