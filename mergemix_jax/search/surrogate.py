"""Surrogate search (MergeMix / DeMix / RegMix): score seed mixtures, fit a regressor per metric,
maximise the predicted utility over a candidate pool drawn around the prior, refine in rounds,
verify the predicted optimum.

Round 0 scores n0 seeds (a simplex grid share, the prior, and draws from the candidate pool);
refinement round r scores n0 / 2^r mixtures drawn around the current top predictions (DeMix's
n0, n0/2, n0/4 with rounds = 2). The pool is RegMix's: Dirichlet(prior^p * s) with s drawn from a
log-spaced range, rows that exceed a repetition cap rejected. The answer is the mean of the top-k
predicted candidates, scored once by the real scorer; if a mixture scored along the way did better,
that one is returned instead (both are reported). Mixtures scored before the search (the pipeline's
probe table, an imported swarm CSV) join every fit when `use_observed` is on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

from mergemix_jax.config.schema import SurrogateSearchConfig
from mergemix_jax.search.batching import score_batches
from mergemix_jax.search.problem import SearchProblem, black_box
from mergemix_jax.search.regressors import fit_regressor, lightgbm_params, resolve_kind
from mergemix_jax.search.simplex import grid_resolution_for, project_rows_np, simplex_grid
from mergemix_jax.search.types import SearchResult

log = logging.getLogger(__name__)


def prior_pool(problem: SearchProblem, n: int, options: SurrogateSearchConfig, rng: np.random.Generator, max_tries: int = 50) -> np.ndarray:
    """[n, K] RegMix-style pool: Dirichlet(prior^p / sum * s), s uniform over log-spaced strengths.

    Rows above a repetition cap are rejected and redrawn; if the caps leave too little room after
    `max_tries` batches, the missing rows are projected onto the capped simplex (with a warning).
    """
    base = problem.prior**options.prior_power
    base = base / base.sum()
    strengths = np.geomspace(options.strength_min, options.strength_max, options.strength_steps)
    kept: list[np.ndarray] = []
    have = 0
    for _ in range(max_tries):
        counts = np.bincount(rng.integers(len(strengths), size=max(n - have, 1) * 2), minlength=len(strengths))
        draws = np.concatenate([rng.dirichlet(np.maximum(base * s, 1e-3), c) for s, c in zip(strengths, counts, strict=True) if c])
        draws = draws[rng.permutation(len(draws))]
        if problem.caps is not None:
            draws = draws[np.all(draws <= problem.caps + 1e-12, axis=1)]
        kept.append(draws)
        have += len(draws)
        if have >= n:
            break
    pool = np.concatenate(kept)[:n] if kept else np.zeros((0, problem.k))
    if len(pool) < n:
        log.warning("only %d of %d pool mixtures fit the repetition caps by rejection; projecting %d more onto the caps", len(pool), n, n - len(pool))
        extra = rng.dirichlet(np.maximum(base * options.strength_max, 1e-3), n - len(pool))
        pool = np.concatenate([pool, project_rows_np(extra, problem.caps)])
    return pool


def seed_mixtures(problem: SearchProblem, options: SurrogateSearchConfig, rng: np.random.Generator) -> np.ndarray:
    """[n_seeds, K] seeds: a simplex grid share, the prior, then pool draws, all inside the caps."""
    n_grid = int(options.n_seeds * options.grid_fraction)
    grid = simplex_grid(problem.k, grid_resolution_for(problem.k, n_grid)) if n_grid >= problem.k else np.zeros((0, problem.k))
    grid = grid[rng.permutation(len(grid))[:n_grid]]
    n_random = max(options.n_seeds - len(grid) - 1, 0)
    seeds = np.concatenate([grid, problem.prior[None], prior_pool(problem, n_random, options, rng)])
    return _inside_caps(seeds, problem)


def _inside_caps(w: np.ndarray, problem: SearchProblem) -> np.ndarray:
    return w if problem.caps is None else project_rows_np(w, problem.caps)


def local_mixtures(centres: np.ndarray, n: int, concentration: float, rng: np.random.Generator) -> np.ndarray:
    """[n, K] Dirichlet draws centred on rows of `centres` (round-robin), for the refinement rounds."""
    picks = centres[np.arange(n) % len(centres)]
    return np.stack([rng.dirichlet(concentration * c + 1e-2) for c in picks])


def prior_observations(problem: SearchProblem, options: SurrogateSearchConfig) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Mixtures scored before the search (problem.observed, the swarm CSV) to add to every fit, or None."""
    from mergemix_jax.search.swarm import read_swarm_csv

    parts = []
    if options.use_observed and problem.observed is not None:
        parts.append(problem.observed)
    if options.swarm_csv:
        parts.append(read_swarm_csv(options.swarm_csv, problem.domains))
    if not parts:
        return None
    names = set.intersection(*(set(m) for _, m in parts))
    return np.concatenate([x for x, _ in parts]), {n: np.concatenate([np.asarray(m[n], np.float64) for _, m in parts]) for n in sorted(names)}


def _with_prior(x: np.ndarray, metrics: dict[str, np.ndarray], prior: tuple[np.ndarray, dict[str, np.ndarray]] | None):
    """The fit's rows: the scored ones plus the earlier observations (only metrics both have)."""
    if prior is None:
        return x, metrics
    px, pm = prior
    missing = sorted(set(metrics) - set(pm))
    if missing:
        log.warning("earlier observations lack metric(s) %s the scorer returns; fitting on the scored mixtures only", missing)
        return x, metrics
    return np.concatenate([px, x]), {n: np.concatenate([pm[n], v]) for n, v in metrics.items()}


def fit_utility(utility, x: np.ndarray, metrics: dict[str, np.ndarray], options: SurrogateSearchConfig, seed: int = 0):
    """Fit one regressor per metric on (x [N, K], metrics) -> (predicted utility: [M, K] -> [M], kinds used).

    Mixtures with a non-finite metric (flagged by the utility) are left out of the fit.
    """
    finite = np.all([np.isfinite(np.asarray(y, np.float64)) for y in metrics.values()], axis=0)
    if not finite.any():
        raise ValueError("every scored mixture has a NaN/inf metric; check the experts before searching")
    x, metrics = x[finite], {name: np.asarray(y)[finite] for name, y in metrics.items()}
    params = lightgbm_params(options.preset, options.learning_rate, options.n_estimators, options.num_leaves)
    predictors, kinds = {}, {}
    for name, y in metrics.items():
        kinds[name], predictors[name] = fit_regressor(options.regressor, x, y, seed, options.min_lightgbm_samples, params)

    def predict_u(candidates: np.ndarray) -> np.ndarray:
        return np.asarray(utility({name: f(candidates) for name, f in predictors.items()}), np.float64)

    return predict_u, kinds


def maximise_predicted(problem: SearchProblem, predict_u, x: np.ndarray, options: SurrogateSearchConfig, rng: np.random.Generator, kinds: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The top-k mixtures [k, K] of the predicted utility and their predicted utilities [k].

    The candidate pool (plus the scored mixtures), then zooms: local samples around the current
    top-k at rising concentration. The zooms only query the surrogate, so they cost no scoring; they
    are skipped for LightGBM, whose piecewise-constant surface they would only over-fit.
    """
    candidates = np.concatenate([prior_pool(problem, options.n_candidates, options, rng), x])
    pred_u = predict_u(candidates)
    order = np.argsort(-pred_u)[: options.top_k]
    top, top_u = candidates[order], pred_u[order]
    for concentration in () if "lightgbm" in kinds.values() else (100.0, 1_000.0, 10_000.0):
        local = _inside_caps(local_mixtures(top, options.n_candidates // 4, concentration, rng), problem)
        candidates = np.concatenate([top, local])
        pred_u = predict_u(candidates)
        order = np.argsort(-pred_u)[: options.top_k]
        top, top_u = candidates[order], pred_u[order]
    return top, top_u


def surrogate_search(problem: SearchProblem, options: SurrogateSearchConfig | None = None, *, seed: int = 0, progress: bool = False) -> SearchResult:
    """MergeMix/DeMix surrogate search (options: the `search.surrogate` section); the answer is
    verified by one more scorer call."""
    options = options or SurrogateSearchConfig()
    start = time.perf_counter()
    score, utility = black_box(problem)
    rng = np.random.default_rng(seed)
    earlier = prior_observations(problem, options)
    x = seed_mixtures(problem, options, rng)
    metrics = score_batches(score, x, options.batch_size, progress, "surrogate seeds")
    trace = [float(-np.max(utility(metrics)))]
    rounds_log = []
    with tqdm(total=options.rounds + 1, desc="surrogate", disable=not progress) as bar:
        for round_index in range(options.rounds + 1):
            fit_x, fit_metrics = _with_prior(x, metrics, earlier)
            _, why = resolve_kind(options.regressor, len(fit_x), options.min_lightgbm_samples)
            predict_u, kinds = fit_utility(utility, fit_x, fit_metrics, options, seed)
            top, pred_u = maximise_predicted(problem, predict_u, x, options, rng, kinds)
            rounds_log.append({"round": round_index, "scored": len(x), "fit_rows": len(fit_x), "regressors": kinds, "why": why, "best_predicted": float(pred_u.max())})
            (log.warning if "not lightgbm" in why else log.info)("surrogate round %d: %s", round_index, why)
            bar.update(1)
            if round_index == options.rounds:
                break
            n_new = max(options.n_seeds // 2 ** (round_index + 1), 1)
            new = _inside_caps(local_mixtures(top, n_new, options.local_concentration, rng), problem)
            new_metrics = score_batches(score, new, options.batch_size, progress, f"surrogate round {round_index + 1}")
            x = np.concatenate([x, new])
            metrics = {name: np.concatenate([metrics[name], new_metrics[name]]) for name in metrics}
            trace.append(min(trace[-1], float(-np.max(utility(new_metrics)))))

    answer = _inside_caps(top.mean(0, keepdims=True), problem)
    verified = score(answer)
    verified_u = float(np.asarray(utility(verified), np.float64)[0])
    observed_u = np.asarray(utility(metrics))
    best_seen = int(np.argmax(observed_u))
    # the verified prediction is the answer unless a mixture already scored did better
    use_observed = observed_u[best_seen] > verified_u
    chosen = x[best_seen] if use_observed else answer[0]
    chosen_metrics = {n: float(v[best_seen]) for n, v in metrics.items()} if use_observed else {
        n: float(np.asarray(v).reshape(-1)[0]) for n, v in verified.items()
    }
    chosen_u = float(observed_u[best_seen]) if use_observed else verified_u
    trace.append(min(trace[-1], -verified_u))
    return SearchResult(
        method="surrogate",
        domains=problem.domains,
        weights=chosen,
        objective=-chosen_u,
        wall_time_s=time.perf_counter() - start,
        n_evaluations=len(x) + 1,
        trace=np.asarray(trace),
        metrics=chosen_metrics,
        extras={
            "chosen": "best_observed" if use_observed else "predicted",
            "predicted_weights": answer[0].tolist(),
            "predicted_utility": float(predict_u(answer)[0]),
            "verified_utility": verified_u,
            "best_observed_weights": x[best_seen].tolist(),
            "best_observed_utility": float(observed_u[best_seen]),
            "earlier_observations": 0 if earlier is None else len(earlier[0]),
            "lightgbm": asdict(lightgbm_params(options.preset, options.learning_rate, options.n_estimators, options.num_leaves)),
            "rounds": rounds_log,
            "options": asdict(options),
            "seed": seed,
        },
    )
